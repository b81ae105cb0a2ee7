using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Faults;

/// <summary>
/// Issue 11, defect 6: stopping the fault service detaches its ring from the device first (FQ_LOG2 = 0 and FQ_BASE = 0:
/// with no ring, faults abort at once, decision D25), gives back its interrupt vector or handler, and lets a new
/// service start.
/// </summary>
public class FaultServiceLifecycleTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    [TestCase(3)]
    [TestCase(1)]
    public async Task StoppedServiceDetachesItsRingAndANewOneCanStart(int vectors)
    {
        var backend = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual, MsixVectors = vectors });
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 64, FaultAroundPages = 1 }); // one page per fault: this test counts faults page by page (fault-around has its own tests)
        using var buffer = HostBuffer.Allocate(4 * PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();
        var address = (ulong)buffer.Address;

        var first = device.StartFaultService();
        Assert.That((await queue.FillAsync(context, address, 64, 1).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        first.Dispose();

        Assert.That(backend.Model.Read64(Fa1Registers.FqLog2), Is.Zero, "the device still points at the freed ring's size");
        Assert.That(backend.Model.Read64(Fa1Registers.FqBase), Is.Zero, "the device still points at the freed ring");
        Assert.That(device.Faults, Is.Null, "the device still holds the stopped service");
        Assert.That(first.IsRunning, Is.False);
        Assert.That(device.Interrupts.IsClaimed(InterruptCauses.Fault) || device.Interrupts.IsSubscribed(InterruptCauses.Fault), Is.False,
            "the stopped service still holds the FAULT vector or handler");

        // No ring: a fault aborts its command at once, and the device stays healthy.
        var unserviced = await queue.FillAsync(context, address + PageTableFormat.PageSize, 64, 2).AsTask().WaitAsync(s_bound);
        Assert.That(unserviced.Status, Is.EqualTo(CompletionStatus.Fault));
        Assert.That(device.FatalError, Is.Null, "a fault record went to the freed ring");

        // A new service starts and services faults.
        var second = device.StartFaultService();
        Assert.That(device.Faults, Is.SameAs(second));
        var serviced = await queue.FillAsync(context, address + (2 * PageTableFormat.PageSize), 64, 3).AsTask().WaitAsync(s_bound);
        Assert.That(serviced.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(second.Metrics.Faults, Is.GreaterThan(0));
        second.Dispose();
        Assert.That(device.Faults, Is.Null);
    }

    // A record the device wrote just before the ring was detached still gets its answer: nothing stays stalled.
    [Test]
    public async Task StoppingWithAFaultInTheRingAnswersIt()
    {
        var model = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        var backend = new TailHidingBackend(model);
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 64 });
        using var buffer = HostBuffer.Allocate(PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();
        var service = device.StartFaultService();

        // The service never sees FQ_TAIL move: the record waits in the ring until the service stops.
        backend.HideTail = true;
        var fill = queue.FillAsync(context, (ulong)buffer.Address, 64, 1).AsTask();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (model.Model.Read64(Fa1Registers.FqTail) == 0 && watch.Elapsed < s_bound)
        {
            Thread.Sleep(1);
        }

        Assert.That(model.Model.Read64(Fa1Registers.FqTail), Is.EqualTo(1UL), "the fault record is in the ring");
        service.Dispose();
        Assert.That(await Task.WhenAny(fill, Task.Delay(s_bound)), Is.SameAs(fill), "the stalled access was never answered");
        Assert.That((await fill).Status, Is.EqualTo(CompletionStatus.Fault), "a fault left in the ring at stop is aborted");
        Assert.That(device.Oracle!.Read().LostFaults, Is.Zero);
        Assert.That(device.FatalError, Is.Null);
    }
}
