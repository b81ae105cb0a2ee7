using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Faults;

/// <summary>
/// Decision F24: a fault's service time runs from the record's device cycle to the moment its response is sent (CYCLES
/// read just before the FAULT_RESP write), not to whenever the thread next gets to read the clock after the write.
/// </summary>
public class FaultServiceTimeTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    [Test]
    public async Task ServiceTimeEndsWhenTheResponseIsSent()
    {
        // The FAULT_RESP write returns 200 ms late, as if the thread lost its core right after it: a clock read after the
        // write would count those 200 ms; the service time must not.
        var backend = new SlowResponseBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Wall }), TimeSpan.FromMilliseconds(200));
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 64, FaultAroundPages = 1 });
        using var buffer = HostBuffer.Allocate(PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();
        using var service = device.StartFaultService();

        // One page, one fault (a second fault would rightly count the time the service spent in the first one's write).
        var result = await queue.FillAsync(context, (ulong)buffer.Address, 64, 7).AsTask().WaitAsync(s_bound);
        Assert.That(result.Status, Is.EqualTo(CompletionStatus.Ok));
        // The service thread records a fault's time once its (slow) write has returned: wait for every one.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var times = service.Metrics.RecentServiceTimes();
        while (times.Length < backend.SlowResponses && watch.Elapsed < s_bound)
        {
            await Task.Delay(10);
            times = service.Metrics.RecentServiceTimes();
        }

        Assert.That(backend.SlowResponses, Is.EqualTo(1));
        Assert.That(times, Has.Length.EqualTo(1), "one service time per response");
        Assert.That(times, Has.All.LessThan(100_000.0), "the service times (us) counted the time after the response was sent");
    }

    /// <summary>Returns from every FAULT_RESP write only after a delay (the write itself reaches the device at once).</summary>
    private sealed class SlowResponseBackend(IDeviceBackend inner, TimeSpan delay) : FpgaAccel.Tests.Support.DelegatingBackend(inner)
    {
        private int _slow;

        public int SlowResponses => Volatile.Read(ref _slow);

        public override void Write64(uint offset, ulong value)
        {
            base.Write64(offset, value);
            if (offset == Fa1Registers.FaultResp)
            {
                Interlocked.Increment(ref _slow);
                Thread.Sleep(delay);
            }
        }
    }
}
