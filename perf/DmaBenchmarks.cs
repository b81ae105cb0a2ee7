using BenchmarkDotNet.Attributes;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;

namespace FpgaAccel.Perf;

/// <summary>
/// A command's round trip through the driver and the model (virtual clock: no modelled cost takes
/// real time, so this is the software path), and COPY against a plain <c>Buffer.MemoryCopy</c>
/// of the same size in the same run.
/// </summary>
[MemoryDiagnoser]
public class DmaBenchmarks
{
    private FpgaDevice _device = null!;
    private DeviceContext _context = null!;
    private CommandQueue _interruptQueue = null!;
    private CommandQueue _pollQueue = null!;
    private HostBuffer _source = null!;
    private HostBuffer _destination = null!;

    [Params(4096, 1 << 20)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        _context = _device.CreateContext(new ContextOptions { NoFault = true });
        _source = HostBuffer.Allocate((ulong)Size);
        _destination = HostBuffer.Allocate((ulong)Size);
        new Random(1).NextBytes(_source.Span);
        _context.Pin(_source, DmaAccess.DeviceRead);
        _context.Pin(_destination, DmaAccess.DeviceWrite);
        _interruptQueue = _device.OpenQueue(0, 64, CompletionMode.Interrupt);
        _pollQueue = _device.OpenQueue(1, 64, CompletionMode.Poll);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _device.Dispose();
        _source.Dispose();
        _destination.Dispose();
    }

    [Benchmark(Baseline = true)]
    public unsafe void CpuMemoryCopy() =>
        Buffer.MemoryCopy((void*)_source.Address, (void*)_destination.Address, Size, Size);

    [Benchmark]
    public ulong ModelCopyPolled() =>
        _pollQueue.CopyAsync(_context, (ulong)_source.Address, (ulong)_destination.Address, (ulong)Size).AsTask().GetAwaiter().GetResult().EndCycle;

    [Benchmark]
    public ulong ModelCopyInterrupt() =>
        _interruptQueue.CopyAsync(_context, (ulong)_source.Address, (ulong)_destination.Address, (ulong)Size).AsTask().GetAwaiter().GetResult().EndCycle;

    [Benchmark]
    public ulong NopRoundTripPolled() =>
        _pollQueue.NopAsync(_context).AsTask().GetAwaiter().GetResult().EndCycle;

    [Benchmark]
    public ulong NopRoundTripInterrupt() =>
        _interruptQueue.NopAsync(_context).AsTask().GetAwaiter().GetResult().EndCycle;
}
