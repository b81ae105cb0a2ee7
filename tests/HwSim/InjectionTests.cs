using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>
/// The model's hostile-device hooks (<see cref="Fa1Model"/>'s Inject... members) and the ring-pointer rules
/// (decisions D22, D36): what a broken device writes lands in the rings exactly as asked.
/// </summary>
public class InjectionTests
{
    [Test]
    public void AGarbageFaultRecordLandsAtTheTailAndNothingBecomesLive()
    {
        using var rig = NewRig();
        using var fault = EventFd.Create();
        rig.Model.ConnectInterrupts([fault, null, null]);
        var garbage = new FaultRecord { Dva = 0xDEAD_0000, Tag = 77, Context = 200, Flags = (FaultRecordFlags)0xF0, Sequence = 12345, Reserved0 = 1, Reserved1 = 2 };
        Assert.That(rig.Model.InjectFaultRecord(garbage), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(rig.Read(Fa1Registers.FqTail), Is.EqualTo(1UL));
            Assert.That(rig.WaitFaultRecord(0), Is.EqualTo(garbage), "as given, bit for bit");
            Assert.That(fault.TryRead(out _), Is.True, "vector 0");
        });
        rig.Respond(garbage, FaultResponseCode.Retry);
        Assert.That(rig.Model.Oracle.IgnoredFaultResponses, Is.EqualTo(1), "its tag was never live");
        rig.Model.DisconnectInterrupts();
    }

    [Test]
    public void AFaultTailJumpPastTheRingLeavesTheRingLookingFull()
    {
        using var rig = NewRig();
        Assert.That(rig.Model.InjectFaultTailJump(1000), Is.True);
        Assert.That(rig.Read(Fa1Registers.FqTail), Is.EqualTo(1000UL));
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.FaultQueueFull, Is.Not.Zero);
        Assert.That(rig.Model.InjectFaultRecord(default), Is.False, "no room: nothing written");

        // A driver that skips to the tail recovers the ring.
        rig.Model.Write64(Fa1Registers.FqHead, 1000);
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.FaultQueueFull, Is.Zero);
        Assert.That(rig.Model.Oracle.BadRingHeadWrites, Is.Zero);
    }

    [Test]
    public void FqHeadAheadOfTheTailOrARingBehindLooksFullIsCountedAndCanBeFixed()
    {
        using var rig = NewRig();
        rig.Model.Write64(Fa1Registers.FqHead, 5); // five records the device never produced
        Assert.That(rig.Model.Oracle.BadRingHeadWrites, Is.EqualTo(1));
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.FaultQueueFull, Is.Not.Zero, "D36: out of range looks full");
        rig.Submit(0, DmaRig.Crc(0x4400_0000_0000, 64, 0));
        Thread.Sleep(50);
        Assert.That(rig.Read(Fa1Registers.FqTail), Is.Zero, "the fault is held, nothing is overwritten");
        Assert.That(rig.Read(Fa1Registers.FqStalls), Is.EqualTo(1UL));
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Zero, "not FATAL: the driver may fix it");

        rig.Model.Write64(Fa1Registers.FqHead, 0);
        var record = rig.WaitFaultRecord(0);
        rig.Respond(record, FaultResponseCode.Abort);
        Assert.That(rig.NextCompletion(0).Status, Is.EqualTo(CompletionStatus.Fault));

        rig.Model.InjectFaultTailJump(100);
        rig.Model.Write64(Fa1Registers.FqHead, 1); // 100 behind a 64-entry ring
        Assert.That(rig.Model.Oracle.BadRingHeadWrites, Is.EqualTo(2));
        rig.Model.Write64(Fa1Registers.FqHead, 1UL << 40 | 101); // bits 63:32 are not stored
        Assert.That(rig.Read(Fa1Registers.FqHead), Is.EqualTo(101UL));
        Assert.That(rig.Model.Oracle.BadRingHeadWrites, Is.EqualTo(2));
    }

    [Test]
    public void CqHeadOutOfRangeIsCounted()
    {
        using var rig = NewRig();
        rig.Model.Write64(Fa1Registers.Queue(0, Fa1Registers.CqHead), 3);
        Assert.That(rig.Model.Oracle.BadRingHeadWrites, Is.EqualTo(1), "D22: ahead of CQ_TAIL");
        rig.Model.Write64(Fa1Registers.Queue(0, Fa1Registers.CqHead), 0);
        Assert.That(rig.Run(0, DmaRig.Nop(tag: 4)).Tag, Is.EqualTo(4u), "fixed, the queue goes on");
        Assert.That(rig.Model.Oracle.BadRingHeadWrites, Is.EqualTo(1));
    }

    [Test]
    public void HostileCompletionsLandAsAskedWithOrWithoutTheTail()
    {
        using var rig = NewRig();
        using var completion = EventFd.Create();
        rig.Model.ConnectInterrupts([null, completion, null]);

        // A tag no command owns, a status spec 5 does not define.
        var bad = CompletionRecord.Create(0xBAD0_BAD0, (CompletionStatus)0x7ABC, phase: true, faults: 9, result: 1, startCycle: 5, endCycle: 4);
        Assert.That(rig.Model.InjectCompletion(0, bad), Is.True);
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.EqualTo(1UL));
        Assert.That(rig.PeekCompletion(0, 0), Is.EqualTo(bad));
        Assert.That(completion.TryRead(out _), Is.True);

        // A PHASE glitch: this lap's PHASE in the next slot, CQ_TAIL not moved.
        var ghost = CompletionRecord.Create(7, CompletionStatus.Ok, CompletionRecord.PhaseOf(1, 6), 0, 0, 0, 0);
        Assert.That(rig.Model.InjectCompletion(0, ghost, advanceTail: false), Is.True);
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.EqualTo(1UL), "unannounced");
        Assert.That(rig.PeekCompletion(0, 1), Is.EqualTo(ghost));
        Assert.That(completion.TryRead(out _), Is.False);

        // The device's own completions go on after them, in the next slots.
        rig.Model.Write64(Fa1Registers.Queue(0, Fa1Registers.CqHead), 1);
        rig.Submit(0, DmaRig.Nop(tag: 3));
        rig.WaitTail(0, 2);
        Assert.That(rig.PeekCompletion(0, 1).Tag, Is.EqualTo(3u), "the device overwrote the ghost slot with its own");
        Assert.That(() => rig.Model.InjectCompletion(8, bad), Throws.InstanceOf<ArgumentOutOfRangeException>());
        rig.Model.DisconnectInterrupts();
    }

    private static DmaRig NewRig()
    {
        var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(0);
        rig.EnableContext(0);
        rig.ConfigureFaultRing();
        return rig;
    }
}
