using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim.VfioUser;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim.VfioUser;

/// <summary>SET_IRQS wiring eventfds to the model's MSI-X vectors, gated by the function's MSI-X enable bit.</summary>
public class MsixVectorsTests : VfioUserFixture
{
    private const uint EventFdTrigger = (uint)(VfioIrqSetFlags.DataEventFd | VfioIrqSetFlags.ActionTrigger);
    private const uint NoneTrigger = (uint)(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger);
    private const uint BoolTrigger = (uint)(VfioIrqSetFlags.DataBool | VfioIrqSetFlags.ActionTrigger);

    private int MsixControl => Server.Function.MsixCapability + PciConfigRegisters.MsixControl;

    [Test]
    public void EachCauseSignalsItsVectorsEventFdWhileMsixIsEnabled()
    {
        using var v0 = EventFd.Create();
        using var v1 = EventFd.Create();
        using var v2 = EventFd.Create();
        Assert.That(Client.SetIrqs(EventFdTrigger, VfioPciIrq.Msix, 0, 3, fds: [v0.Handle, v1.Handle, v2.Handle]).Failed, Is.False);
        Model.RaiseInterrupt(InterruptCauses.Completion);
        Assert.That(v1.TryRead(out _), Is.False, "MSI-X is not enabled in config space yet: no message");

        Client.WriteConfig16(MsixControl, PciConfigRegisters.MsixControlEnable);
        Assert.That(Server.Function.Vectors.Delivering, Is.True);
        Model.RaiseInterrupt(InterruptCauses.Completion);
        Model.RaiseInterrupt(InterruptCauses.Error);
        Assert.That(v0.TryRead(out _), Is.False);
        Assert.That(v1.TryRead(out var completions), Is.True);
        Assert.That(completions, Is.EqualTo(1UL));
        Assert.That(v2.TryRead(out _), Is.True);

        Client.WriteConfig16(MsixControl, 0);
        Model.RaiseInterrupt(InterruptCauses.Completion);
        Assert.That(v1.TryRead(out _), Is.False, "MSI-X disabled again");
    }

    [Test]
    public void WithOnlyVectorZeroWiredEveryCauseArrivesThere()
    {
        using var v0 = EventFd.Create();
        Client.SetIrqs(EventFdTrigger, VfioPciIrq.Msix, 0, 1, fds: [v0.Handle]);
        Client.WriteConfig16(MsixControl, PciConfigRegisters.MsixControlEnable);
        Model.RaiseInterrupt(InterruptCauses.Completion);
        Model.RaiseInterrupt(InterruptCauses.Fault);
        Assert.That(v0.TryRead(out var messages), Is.True);
        Assert.That(messages, Is.EqualTo(2UL), "spec 1: a host that granted one vector gets every cause on vector 0");
    }

    [Test]
    public void UnwiringClosesTheServersCopiesAndStopsMessages()
    {
        using var v0 = EventFd.Create();
        using var v1 = EventFd.Create();
        using var v2 = EventFd.Create();
        var baseline = FdCount.Now();
        Client.SetIrqs(EventFdTrigger, VfioPciIrq.Msix, 0, 3, fds: [v0.Handle, v1.Handle, v2.Handle]);
        Client.WriteConfig16(MsixControl, PciConfigRegisters.MsixControlEnable);
        Assert.That(Server.Function.Vectors.Wired, Is.EqualTo(3));

        // Count 2 with one fd: vector 1 gets the fd, vector 2 is unwired.
        Assert.That(Client.SetIrqs(EventFdTrigger, VfioPciIrq.Msix, 1, 2, fds: [v1.Handle]).Failed, Is.False);
        Assert.That(Server.Function.Vectors.Wired, Is.EqualTo(2));
        Assert.That(Client.SetIrqs(EventFdTrigger, VfioPciIrq.Msix, 0, 1).Failed, Is.False, "no fd: unwire vector 0");
        Assert.That(Server.Function.Vectors.Wired, Is.EqualTo(1));
        Assert.That(Client.SetIrqs(NoneTrigger, VfioPciIrq.Msix, 0, 0).Failed, Is.False, "DATA_NONE, count 0: disable the index");
        Assert.That(Server.Function.Vectors.Wired, Is.Zero);
        Assert.That(Server.Function.Vectors.Delivering, Is.False);
        Model.RaiseInterrupt(InterruptCauses.All);
        Assert.That(v0.TryRead(out _) || v1.TryRead(out _) || v2.TryRead(out _), Is.False);
        Assert.That(FdCount.SettledAtMost(baseline), Is.LessThanOrEqualTo(baseline), "every received eventfd was closed");
    }

    [Test]
    public void TheClientCanTriggerWiredVectors()
    {
        using var v0 = EventFd.Create();
        using var v1 = EventFd.Create();
        Client.SetIrqs(EventFdTrigger, VfioPciIrq.Msix, 0, 2, fds: [v0.Handle, v1.Handle]);
        Assert.That(Client.SetIrqs(BoolTrigger, VfioPciIrq.Msix, 0, 2, data: [0, 1]).Failed, Is.False);
        Assert.That(v0.TryRead(out _), Is.False);
        Assert.That(v1.TryRead(out _), Is.True);
        Assert.That(Client.SetIrqs(NoneTrigger, VfioPciIrq.Msix, 0, 1).Failed, Is.False);
        Assert.That(v0.TryRead(out _), Is.True);
    }

    [Test]
    public void BadSetIrqsAreRefusedAndLeaveTheWiringAlone()
    {
        using var v0 = EventFd.Create();
        using var v1 = EventFd.Create();
        Client.SetIrqs(EventFdTrigger, VfioPciIrq.Msix, 0, 1, fds: [v0.Handle]);
        var (a, b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        {
            Assert.Multiple(() =>
            {
                Assert.That(Client.SetIrqs(EventFdTrigger, VfioPciIrq.Msix, 0, 1, fds: [v0.Handle, v1.Handle]).Errno, Is.EqualTo(Errno.EINVAL), "more fds than vectors");
                Assert.That(Client.SetIrqs(EventFdTrigger, VfioPciIrq.Msix, 0, 1, fds: [a.Handle]).Errno, Is.EqualTo(Errno.EINVAL), "a socket is no eventfd");
                Assert.That(Client.SetIrqs(EventFdTrigger, VfioPciIrq.Msix, 2, 2, fds: [v1.Handle]).Errno, Is.EqualTo(Errno.EINVAL), "vectors 2..3 of 3");
                Assert.That(Client.SetIrqs((uint)(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionMask), VfioPciIrq.Msix, 0, 1).Errno, Is.EqualTo(Errno.EINVAL), "not maskable");
                Assert.That(Client.SetIrqs((uint)(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.DataBool | VfioIrqSetFlags.ActionTrigger), VfioPciIrq.Msix, 0, 1).Errno,
                    Is.EqualTo(Errno.EINVAL), "two data kinds");
                Assert.That(Client.SetIrqs(BoolTrigger, VfioPciIrq.Msix, 0, 2, data: [1]).Errno, Is.EqualTo(Errno.EINVAL), "one bool for two vectors");
                Assert.That(Client.SetIrqs(NoneTrigger, VfioPciIrq.Msix, 0, 1, fds: [v1.Handle]).Errno, Is.EqualTo(Errno.EINVAL), "fds with DATA_NONE");
                Assert.That(Client.SetIrqs(EventFdTrigger, VfioPciIrq.Intx, 0, 1, fds: [v1.Handle]).Errno, Is.EqualTo(Errno.EINVAL), "INTx has no vector");
                Assert.That(Client.SetIrqs(EventFdTrigger, 7, 0, 1).Errno, Is.EqualTo(Errno.EINVAL), "IRQ index 7");
                Assert.That(Client.Send(VfioUserCommand.DeviceSetIrqs, VfioUserTestClient.Struct(24u, EventFdTrigger, VfioPciIrq.Msix, 0u, 1u)).Errno,
                    Is.EqualTo(Errno.EINVAL), "argsz lies");
            });
        }

        Assert.That(Client.SetIrqs(NoneTrigger, VfioPciIrq.Intx, 0, 0).Failed, Is.False, "disabling an index with no vectors is fine");
        Assert.That(Server.Function.Vectors.Wired, Is.EqualTo(1), "vector 0 is still wired");
    }
}
