using BenchmarkDotNet.Attributes;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;

namespace FpgaAccel.Perf;

/// <summary>
/// The fault service against the machine's wake-up floor, in one run (issue 15). Baseline: an eventfd ping-pong between
/// two threads through epoll (two wake-ups a round trip: the device's MSI-X eventfd waking the service, and the answer
/// waking the device's stalled lane). Against it, on the model's wall clock: a 4 KiB FILL to a pinned page, and the same
/// FILL to an on-demand page that was evicted (one fault, one wake-up of the service, pin, install, DROPIN), with
/// fault-around off so each FILL is one fault. The ratio column is each to the floor; the fault's own cost is
/// FillFaultingPage - FillPinned.
/// </summary>
[MemoryDiagnoser]
public class WakeupFloorBenchmarks
{
    private EventFd _ping = null!;
    private EventFd _pong = null!;
    private Epoll _epoll = null!;
    private Thread _partner = null!;
    private volatile bool _stop;
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
        _ping = EventFd.Create();
        _pong = EventFd.Create();
        _epoll = Epoll.Create();
        _epoll.Add(_pong.Handle, EpollEvents.In, 1);
        _partner = new Thread(Echo) { IsBackground = true, Name = "floor-echo" };
        _partner.Start();

        // Budget 2 (one queue): every FILL to a new page evicts, so each faults once.
        _device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Wall }), new FpgaDeviceOptions { OnDemandBudgetPages = 2, FaultAroundPages = 1 });
        _device.StartFaultService();
        _onDemand = HostBuffer.Allocate(64 * 4096);
        _pinned = HostBuffer.Allocate(4096);
        _onDemandContext = _device.CreateContext();
        _pinnedContext = _device.CreateContext(new ContextOptions { NoFault = true });
        _onDemandContext.RegisterOnDemand(_onDemand, DmaAccess.ReadWrite);
        _pinnedContext.Pin(_pinned, DmaAccess.ReadWrite);
        _queue = _device.OpenQueue(0, 64, FpgaAccel.Driver.Queues.CompletionMode.Interrupt);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop = true;
        _ping.Signal();
        _partner.Join(TimeSpan.FromSeconds(2));
        _epoll.Dispose();
        _ping.Dispose();
        _pong.Dispose();
        _device.Dispose();
        _onDemand.Dispose();
        _pinned.Dispose();
    }

    /// <summary>One round trip: two wake-ups through epoll.</summary>
    [Benchmark(Baseline = true)]
    public int EventFdPingPong()
    {
        Span<EpollReady> ready = stackalloc EpollReady[1];
        _ping.Signal();
        var n = _epoll.Wait(ready, 1000);
        _pong.TryRead(out _);
        return n;
    }

    [Benchmark]
    public ushort FillPinned() =>
        _queue.FillAsync(_pinnedContext, (ulong)_pinned.Address, 4096, 1).AsTask().GetAwaiter().GetResult().Faults;

    [Benchmark]
    public ushort FillFaultingPage()
    {
        var offset = (ulong)(_page++ & 63) * 4096;
        return _queue.FillAsync(_onDemandContext, (ulong)_onDemand.Address + offset, 4096, 1).AsTask().GetAwaiter().GetResult().Faults;
    }

    private void Echo()
    {
        using var epoll = Epoll.Create();
        epoll.Add(_ping.Handle, EpollEvents.In, 1);
        Span<EpollReady> ready = stackalloc EpollReady[1];
        while (!_stop)
        {
            if (epoll.Wait(ready, 100) > 0)
            {
                _ping.TryRead(out _);
                _pong.Signal();
            }
        }
    }
}
