using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Faults;

/// <summary>
/// Issue 11, defect 2: a failure while servicing one fault aborts that fault, is counted and logged, and the service
/// goes on; the memlock limit reached on the on-demand path is the common case (a lab's 8 MiB RLIMIT_MEMLOCK is below
/// the default budget), so the budget is clamped to what the limit allows and a full limit evicts before it fails.
/// </summary>
public class FaultServiceFailureTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(30);

    [Test]
    public async Task OnDemandFillUnderASmallMemlockLimitCompletes()
    {
        var logs = new CapturingLoggerFactory();
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }),
            new FpgaDeviceOptions { MemlockLimitBytes = 1UL << 20, LoggerFactory = logs });
        var service = device.StartFaultService();
        using var buffer = HostBuffer.Allocate(4UL << 20);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();

        var fill = queue.FillAsync(context, (ulong)buffer.Address, 4UL << 20, 0x5A5A_5A5A_5A5A_5A5A).AsTask();
        Assert.That(await Task.WhenAny(fill, Task.Delay(s_bound)), Is.SameAs(fill),
            $"the fill did not complete: service running {service.IsRunning}, {service.Metrics.Faults} faults serviced");
        Assert.That((await fill).Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(buffer.Span.ToArray().All(b => b == 0x5A), Is.True);
        Assert.That(service.IsRunning, Is.True);
        Assert.That(device.OnDemand.Budget * 4096L, Is.LessThanOrEqualTo(1L << 19), "the budget was clamped to half the memlock limit");
        Assert.That(logs.Entries.Any(e => e.Level == LogLevel.Warning && e.Message.Contains("budget", StringComparison.Ordinal)), Is.True, "the clamp is logged");
    }

    // The budget fits the limit, but pins hold most of it: on-demand pages meet the limit before the budget, and the
    // fault path gives back its oldest pages instead of failing.
    [Test]
    public async Task MemlockLimitReachedOnTheFaultPathEvictsInsteadOfFailing()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }),
            new FpgaDeviceOptions { MemlockLimitBytes = 1UL << 20, OnDemandBudgetPages = 120 });
        var service = device.StartFaultService();
        using var pinned = HostBuffer.Allocate(640UL << 10);
        using var buffer = HostBuffer.Allocate(2UL << 20);
        using var context = device.CreateContext();
        using var pin = context.Pin(pinned, DmaAccess.DeviceRead);
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();

        var fill = await queue.FillAsync(context, (ulong)buffer.Address, 2UL << 20, 0x3C3C_3C3C_3C3C_3C3C).AsTask().WaitAsync(s_bound);
        Assert.That(fill.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(buffer.Span.ToArray().All(b => b == 0x3C), Is.True);
        Assert.That(service.Metrics.Failures, Is.Zero);
        Assert.That(device.OnDemand.Pinned, Is.LessThan(120), "the limit, not the budget, bounded the pages present");
        Assert.That(device.PinnedBytes, Is.LessThanOrEqualTo(1UL << 20));
    }

    [Test]
    public async Task OneFailingFaultIsAbortedCountedLoggedAndTheServiceGoesOn()
    {
        var logs = new CapturingLoggerFactory();
        var backend = new RefusingBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 64, LoggerFactory = logs, FaultAroundPages = 1 }); // one page per fault: this test counts faults page by page (fault-around has its own tests)
        var service = device.StartFaultService();
        using var buffer = HostBuffer.Allocate(8 * PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();

        // Build the page tables with a first fault elsewhere, then refuse the IOMMU map of page 3.
        Assert.That((await queue.FillAsync(context, (ulong)buffer.Address, 64, 1).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        backend.RefuseHost = (ulong)buffer.Address + (3 * PageTableFormat.PageSize);

        var refused = queue.FillAsync(context, (ulong)buffer.Address + (3 * PageTableFormat.PageSize), 64, 2).AsTask();
        Assert.That(await Task.WhenAny(refused, Task.Delay(s_bound)), Is.SameAs(refused), "the fault whose service failed was never answered");
        Assert.That((await refused).Status, Is.EqualTo(CompletionStatus.Fault), "a fault that cannot be serviced is aborted");
        Assert.That(service.IsRunning, Is.True, "one failure stopped the service");
        Assert.That(service.Metrics.Failures, Is.EqualTo(1));
        Assert.That(logs.Entries.Any(e => e.Level >= LogLevel.Warning && e.Message.Contains("0x" + backend.RefuseHost.Value.ToString("X", System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)),
            Is.True, "the failure is logged with the faulting address");

        // The next fault is serviced as usual.
        backend.RefuseHost = null;
        var after = await queue.FillAsync(context, (ulong)buffer.Address + (5 * PageTableFormat.PageSize), 64, 3).AsTask().WaitAsync(s_bound);
        Assert.That(after.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(context.PresentOnDemandPages, Is.EqualTo(2), "pages 0 and 5; page 3 left nothing behind");
    }

    /// <summary>Refuses the IOMMU map of one host page, as the kernel refuses one it cannot pin.</summary>
    private sealed class RefusingBackend(IDeviceBackend inner) : DelegatingBackend(inner)
    {
        public ulong? RefuseHost { get; set; }

        public override void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
        {
            if (RefuseHost is { } refuse && refuse >= (ulong)hostAddress && refuse < (ulong)hostAddress + length)
            {
                throw new DmaMappingException(iova, length, "EFAULT", "refused for the test.");
            }

            base.MapDma(iova, hostAddress, length, access);
        }
    }
}
