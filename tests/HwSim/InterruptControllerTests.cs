using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>
/// MSI-X delivery held during a deferral (an engine raising a cause under the register lock): the status latches at
/// once, the eventfd is written only when the caller delivers, once per vector, and lost-message injection and masks
/// apply as for a message sent at once.
/// </summary>
public class InterruptControllerTests
{
    [Test]
    public void DeferredMessagesAreWrittenOnlyWhenDelivered()
    {
        using var fault = EventFd.Create();
        using var completion = EventFd.Create();
        using var error = EventFd.Create();
        var irq = new InterruptController(Fa1Identity.MsixVectors);
        Assert.That(irq.Connect([fault, completion, error]), Is.EqualTo(3));

        PendingMessages messages = default;
        irq.BeginDeferral();
        irq.Raise(InterruptCauses.Fault);
        irq.Raise(InterruptCauses.Fault | InterruptCauses.Completion);
        Assert.That(irq.Status, Is.EqualTo((ulong)(InterruptCauses.Fault | InterruptCauses.Completion)), "the causes latch at once");
        Assert.That(fault.TryRead(out _), Is.False, "no eventfd is written during the deferral");
        Assert.That(irq.Messages, Is.Zero);

        var count = irq.EndDeferral(ref messages);
        Assert.That(count, Is.EqualTo(2), "one message per vector, however many raises");
        Assert.That(completion.TryRead(out _), Is.False, "ending the deferral hands the messages back, it does not send them");

        irq.Deliver(ref messages, count);
        Assert.That(fault.TryRead(out var faults), Is.True);
        Assert.That(faults, Is.EqualTo(1UL));
        Assert.That(completion.TryRead(out _), Is.True);
        Assert.That(error.TryRead(out _), Is.False);
        Assert.That(irq.Messages, Is.EqualTo(2));
    }

    [Test]
    public void NestedDeferralsHandTheMessagesToTheOutermost()
    {
        using var vector = EventFd.Create();
        var irq = new InterruptController(1);
        irq.Connect([vector]);
        PendingMessages messages = default;
        irq.BeginDeferral();
        irq.BeginDeferral();
        irq.Raise(InterruptCauses.Completion);
        Assert.That(irq.EndDeferral(ref messages), Is.Zero, "the inner end keeps them");
        Assert.That(irq.EndDeferral(ref messages), Is.EqualTo(1), "the outer end hands them over");
        irq.Deliver(ref messages, 1);
        Assert.That(vector.TryRead(out _), Is.True);

        irq.Raise(InterruptCauses.Error);
        Assert.That(vector.TryRead(out _), Is.True, "outside a deferral a message is written at once");
    }

    [Test]
    public void MaskedAndLostMessagesAreNotDeferredEither()
    {
        using var fault = EventFd.Create();
        using var completion = EventFd.Create();
        using var error = EventFd.Create();
        var irq = new InterruptController(Fa1Identity.MsixVectors);
        irq.Connect([fault, completion, error]);
        irq.Mask = (ulong)InterruptCauses.Completion;
        irq.LoseNext(1);
        PendingMessages messages = default;
        irq.BeginDeferral();
        irq.Raise(InterruptCauses.Fault);
        irq.Raise(InterruptCauses.Completion);
        irq.Raise(InterruptCauses.Error);
        var count = irq.EndDeferral(ref messages);
        irq.Deliver(ref messages, count);
        Assert.Multiple(() =>
        {
            Assert.That(count, Is.EqualTo(1), "FAULT lost, COMPLETION masked, ERROR sent");
            Assert.That(fault.TryRead(out _), Is.False);
            Assert.That(completion.TryRead(out _), Is.False);
            Assert.That(error.TryRead(out _), Is.True);
            Assert.That(irq.Lost, Is.EqualTo(1));
            Assert.That(irq.Status & (ulong)InterruptCauses.All, Is.EqualTo((ulong)InterruptCauses.All), "every cause latched");
        });
    }

    [Test]
    public void LaneSignalLatchesAndReleasesOneWaitForSeveralSets()
    {
        using var signal = new LaneSignal();
        signal.Set();
        signal.Set();
        var waiter = new Thread(signal.WaitOne) { IsBackground = true };
        waiter.Start();
        Assert.That(waiter.Join(TimeSpan.FromSeconds(5)), Is.True, "a latched set releases the next wait at once");

        // The two sets were taken together: the next wait sleeps until a new set.
        var second = new Thread(signal.WaitOne) { IsBackground = true };
        second.Start();
        Assert.That(second.Join(TimeSpan.FromMilliseconds(200)), Is.False, "nothing latched any more");
        signal.Set();
        Assert.That(second.Join(TimeSpan.FromSeconds(5)), Is.True);
    }
}
