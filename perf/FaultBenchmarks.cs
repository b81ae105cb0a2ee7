using BenchmarkDotNet.Attributes;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;

namespace FpgaAccel.Perf;

/// <summary>
/// One device page fault serviced end to end on the model (virtual clock): a 4 KiB FILL to an
/// on-demand page that was evicted, so the device faults, the service thread wakes on the eventfd,
/// pins the page, installs the leaf and answers DROPIN, and the command completes. Baseline: the same
/// FILL to a pinned page (no fault).
/// </summary>
[MemoryDiagnoser]
public class FaultBenchmarks
{
    private FpgaDevice _device = null!;
    private DeviceContext _onDemandContext = null!;
    private DeviceContext _pinnedContext = null!;
    private FpgaAccel.Driver.Queues.CommandQueue _queue = null!;
    private HostBuffer _onDemand = null!;
    private HostBuffer _pinned = null!;
    private int _page;

    [GlobalSetup]
    public void Setup()
    {
        // Budget 2 (the least one queue may have): every touch of a new page evicts an older one, and fault-around is
        // off, so each FILL faults once.
        _device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 2, FaultAroundPages = 1 });
        _device.StartFaultService();
        _onDemand = HostBuffer.Allocate(64 * 4096);
        _pinned = HostBuffer.Allocate(4096);
        _onDemandContext = _device.CreateContext();
        _pinnedContext = _device.CreateContext(new ContextOptions { NoFault = true });
        _onDemandContext.RegisterOnDemand(_onDemand, DmaAccess.ReadWrite);
        _pinnedContext.Pin(_pinned, DmaAccess.ReadWrite);
        _queue = _device.OpenQueue(0, 64, FpgaAccel.Driver.Queues.CompletionMode.Poll);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _device.Dispose();
        _onDemand.Dispose();
        _pinned.Dispose();
    }

    [Benchmark(Baseline = true)]
    public ushort FillPinned() =>
        _queue.FillAsync(_pinnedContext, (ulong)_pinned.Address, 4096, 1).AsTask().GetAwaiter().GetResult().Faults;

    [Benchmark]
    public ushort FillFaultingPage()
    {
        var offset = (ulong)(_page++ & 63) * 4096;
        return _queue.FillAsync(_onDemandContext, (ulong)_onDemand.Address + offset, 4096, 1).AsTask().GetAwaiter().GetResult().Faults;
    }
}
