using BenchmarkDotNet.Attributes;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;

namespace FpgaAccel.Perf;

/// <summary>
/// Cost of one register access through the model and through the backend seam, against a plain
/// volatile load of host memory (what a mapped BAR read costs the CPU before the bus).
/// </summary>
[MemoryDiagnoser]
public class RegisterAccessBenchmarks
{
    private readonly ulong[] _memory = new ulong[8192];
    private Fa1Model _model = null!;
    private IDeviceBackend _backend = null!;
    private VfioMappedRegion _window = null!;

    [GlobalSetup]
    public void Setup()
    {
        _model = new Fa1Model(new ModelOptions { Clock = ClockMode.Wall });
        _backend = new ModelBackend(new Fa1Model(new ModelOptions { Clock = ClockMode.Wall }));
        // The board's register window over ordinary memory: the bounds check and volatile load, without the bus.
        _window = VfioMappedRegion.Over(MemoryMapping.Anonymous(Fa1Identity.Bar0Size));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _model.Dispose();
        _backend.Dispose();
        _window.Dispose();
    }

    [Benchmark(Baseline = true)]
    public ulong VolatileLoad() => Volatile.Read(ref _memory[Fa1Registers.Scratch / 8]);

    [Benchmark]
    public ulong ModelRead() => _model.Read64(Fa1Registers.Scratch);

    [Benchmark]
    public ulong BackendSeamRead() => _backend.Read64(Fa1Registers.Scratch);

    [Benchmark]
    public ulong MappedWindowRead() => _window.Read64(Fa1Registers.Scratch);

    [Benchmark]
    public void ModelWrite() => _model.Write64(Fa1Registers.Scratch, 0x55AA);
}
