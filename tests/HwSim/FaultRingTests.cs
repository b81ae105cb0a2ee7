using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>The fault ring and fault responses (spec 4.4), under both clocks.</summary>
[TestFixture(ClockMode.Virtual)]
[TestFixture(ClockMode.Wall)]
public class FaultRingTests
{
    private const int Ctx = 5;
    private const int Queue = 2;
    private readonly ClockMode _clock;

    public FaultRingTests(ClockMode clock) => _clock = clock;

    [Test]
    public void FaultWritesRecordRaisesVectorZeroAndRetryCompletes()
    {
        using var rig = NewRig();
        using var fault = EventFd.Create();
        using var completion = EventFd.Create();
        using var error = EventFd.Create();
        rig.Model.ConnectInterrupts([fault, completion, error]);
        var src = rig.MapBuffer(Ctx, 4096, PteFlags.Read);
        new Random(11).NextBytes(rig.Bytes(src.Iova, 4096));
        const ulong dst = 0x5500_0000_0000; // not mapped yet: the driver maps it on demand
        rig.Submit(Queue, DmaRig.Copy(src.Dva, dst + 0x10, 100, Ctx, tag: 77));

        var record = rig.WaitFaultRecord(0);
        Assert.Multiple(() =>
        {
            Assert.That(record.Dva, Is.EqualTo(dst + 0x10), "the exact faulting address");
            Assert.That(record.Context, Is.EqualTo(Ctx));
            Assert.That(record.Flags, Is.EqualTo(FaultRecordFlags.Write), "a write, with no valid leaf");
            Assert.That(record.Queue, Is.EqualTo(Queue));
            Assert.That(record.Sequence, Is.Zero);
            Assert.That(record.Reserved0 | record.Reserved1, Is.Zero);
            Assert.That(record.Cycle, Is.GreaterThan(0UL));
            Assert.That(rig.Read(Fa1Registers.IrqStatus) & (ulong)InterruptCauses.Fault, Is.Not.Zero);
            Assert.That(fault.TryRead(out _), Is.True, "vector 0");
        });

        var page = rig.Allocate(4096);
        rig.Map(Ctx, dst, page, 4096, PteFlags.Read | PteFlags.Write);
        rig.Respond(record, FaultResponseCode.Retry);

        var c = rig.NextCompletion(Queue);
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(c.Tag, Is.EqualTo(77u));
        Assert.That(c.Faults, Is.EqualTo(1));
        Assert.That(rig.Bytes(page + 0x10, 100).SequenceEqual(rig.Bytes(src.Iova, 100)), Is.True);
        Assert.That(rig.Read(Fa1Registers.Context(Ctx, Fa1Registers.CtxFaults)), Is.EqualTo(1UL));
        Assert.That(rig.Model.Oracle.LostFaults, Is.Zero);
        rig.Model.DisconnectInterrupts();
    }

    [Test]
    public void AbortEndsCommandWithFaultAndPresentFlagForMissingPermission()
    {
        using var rig = NewRig();
        var dst = rig.MapBuffer(Ctx, 4096, PteFlags.Read);
        rig.Bytes(dst.Iova, 4096).Fill(0xAA);
        rig.Submit(Queue, DmaRig.Fill(dst.Dva, 4096, 0, Ctx));
        var record = rig.WaitFaultRecord(0);
        Assert.That(record.Flags, Is.EqualTo(FaultRecordFlags.Write | FaultRecordFlags.Present));
        rig.Respond(record, FaultResponseCode.Abort);
        var c = rig.NextCompletion(Queue);
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Fault));
        Assert.That(c.Faults, Is.EqualTo(1));
        Assert.That(rig.Bytes(dst.Iova, 4096).ToArray(), Is.All.EqualTo(0xAA));
    }

    [Test]
    public void DropinInstallsFaultPteWithoutAPageTableEntry()
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 4096, PteFlags.Read);
        rig.Bytes(src.Iova, 4096).Fill(0x3C);
        const ulong dva = 0x4400_0000_0000;
        rig.Submit(Queue, DmaRig.Crc(dva, 4096, Ctx));
        var record = rig.WaitFaultRecord(0);
        Assert.That(record.Flags, Is.EqualTo(FaultRecordFlags.None), "a read");
        rig.Respond(record, FaultResponseCode.Dropin, PageTableEntry.Create(src.Iova, PteFlags.Valid | PteFlags.Read));
        var c = rig.NextCompletion(Queue);
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Ok), "the TLB held FAULT_PTE; the table still has nothing");
        Assert.That(c.Result, Is.EqualTo((ulong)Reference.Crc32C(rig.Bytes(src.Iova, 4096))));
    }

    [Test]
    public void DropinKilledByLaterInvalidationWalksAndFaultsAgain()
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 4096, PteFlags.Read);
        const ulong dva = 0x4400_0000_0000;
        rig.Submit(Queue, DmaRig.Crc(dva, 64, Ctx));
        var first = rig.WaitFaultRecord(0);

        // The invalidation is issued after the fault was raised: it kills the tag (spec 4.3 b).
        rig.Model.Write64(Fa1Registers.InvCmd, new InvalidationCommand(Ctx, InvalidationScope.Context).Raw);
        rig.Respond(first, FaultResponseCode.Dropin, PageTableEntry.Create(src.Iova, PteFlags.Valid | PteFlags.Read));

        var second = rig.WaitFaultRecord(1);
        Assert.That(second.Sequence, Is.EqualTo(1u));
        Assert.That(second.Dva, Is.EqualTo(dva), "the DROPIN was ignored: the walk found the entry still missing");
        rig.Map(Ctx, dva, src.Iova, 4096, PteFlags.Read);
        rig.Respond(second, FaultResponseCode.Retry);
        var c = rig.NextCompletion(Queue);
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(c.Faults, Is.EqualTo(2));
    }

    [Test]
    public void ResponsesToDeadTagsOrWrongContextAreIgnoredAndCounted()
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 4096, PteFlags.Read);
        const ulong dva = 0x4400_0000_0000;
        rig.Model.Write64(Fa1Registers.FaultResp, new FaultResponse(123, Ctx, FaultResponseCode.Retry).Raw);
        rig.Submit(Queue, DmaRig.Crc(dva, 64, Ctx));
        var record = rig.WaitFaultRecord(0);
        rig.Model.Write64(Fa1Registers.FaultResp, new FaultResponse(record.Tag, Ctx + 1, FaultResponseCode.Abort).Raw);
        rig.Map(Ctx, dva, src.Iova, 4096, PteFlags.Read);
        rig.Respond(record, FaultResponseCode.Retry);
        rig.Respond(record, FaultResponseCode.Abort); // the tag is dead now
        Assert.That(rig.NextCompletion(Queue).Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(rig.Model.Oracle.IgnoredFaultResponses, Is.EqualTo(3));
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Zero, "not fatal");
    }

    [Test]
    public void FullRingHoldsTheFaultUntilHeadMoves()
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 4096, PteFlags.Read);
        const ulong dva = 0x4400_0000_0000;
        rig.Submit(Queue, DmaRig.Crc(dva, 64, Ctx));
        for (var seq = 0u; seq < 64; seq++)
        {
            // Answer every record but never consume one: the ring fills.
            rig.Respond(rig.WaitFaultRecord(seq), FaultResponseCode.Retry);
        }

        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (rig.Read(Fa1Registers.FqStalls) == 0)
        {
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "the 65th fault never stalled");
            Thread.Sleep(1);
        }

        Assert.That(rig.Read(Fa1Registers.FqTail), Is.EqualTo(64UL), "nothing overwritten");
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.FaultQueueFull, Is.Not.Zero);
        Assert.That(rig.WaitFaultRecord(0).Sequence, Is.Zero, "slot 0 still holds record 0");

        rig.Model.Write64(Fa1Registers.FqHead, 64);
        var held = rig.WaitFaultRecord(64);
        Assert.That(held.Sequence, Is.EqualTo(64u), "the held fault was written once space freed");
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.FaultQueueFull, Is.Zero);
        rig.Map(Ctx, dva, src.Iova, 4096, PteFlags.Read);
        rig.Respond(held, FaultResponseCode.Retry);
        var c = rig.NextCompletion(Queue);
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(c.Faults, Is.EqualTo(65));
        Assert.That(rig.Read(Fa1Registers.FqStalls), Is.EqualTo(1UL));
        Assert.That(rig.Model.Oracle.LostFaults, Is.Zero);
    }

    [Test]
    public void HeldFaultAbortsWhenTheRingIsDetached()
    {
        // D25: no ring means a fault ends its command at once. A fault held for room (never recorded) when the driver
        // detaches the ring (FQ_LOG2 = 0, as a stopping fault service does) is such a fault: it aborts its command, and
        // the device writes no record to the detached ring's base (which would be FATAL: nothing is mapped there).
        using var rig = NewRig();
        rig.MapBuffer(Ctx, 4096, PteFlags.Read);
        const ulong dva = 0x4400_0000_0000;
        rig.Submit(Queue, DmaRig.Crc(dva, 64, Ctx));
        for (var seq = 0u; seq < 64; seq++)
        {
            rig.Respond(rig.WaitFaultRecord(seq), FaultResponseCode.Retry);
        }

        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (rig.Read(Fa1Registers.FqStalls) == 0)
        {
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "the 65th fault never stalled");
            Thread.Sleep(1);
        }

        rig.Model.Write64(Fa1Registers.FqLog2, 0);
        rig.Model.Write64(Fa1Registers.FqBase, 0);
        var c = rig.NextCompletion(Queue);
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Fault), "the held fault aborted its command");
        Assert.That(c.Faults, Is.EqualTo(65));
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Zero, "no record went to the detached ring");
        Assert.That(rig.Model.Oracle.LostFaults, Is.Zero);
    }

    [Test]
    public void NoFaultContextAbortsWithoutRecord()
    {
        using var rig = NewRig();
        rig.EnableContext(1, noFault: true);
        var c = rig.Run(Queue, DmaRig.Crc(0x4400_0000_0000, 64, ctx: 1));
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Fault));
        Assert.That(c.Faults, Is.EqualTo(1));
        Assert.That(rig.Read(Fa1Registers.FqTail), Is.Zero);
        Assert.That(rig.Read(Fa1Registers.Context(1, Fa1Registers.CtxFaults)), Is.EqualTo(1UL));
    }

    [Test]
    public void InvalidationWhileServicingAFaultCompletes()
    {
        // D28: the stalled access is not "in flight", so the driver may fence inside its fault handler.
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 4096, PteFlags.Read);
        const ulong dva = 0x4400_0000_0000;
        rig.Submit(Queue, DmaRig.Crc(dva, 64, Ctx));
        var record = rig.WaitFaultRecord(0);
        rig.Model.Write64(Fa1Registers.InvCmd, new InvalidationCommand(Ctx, InvalidationScope.Context).Raw);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (rig.Read(Fa1Registers.InvDone) < 1)
        {
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "the fence waited for a stalled access");
            Thread.Yield();
        }

        rig.Map(Ctx, dva, src.Iova, 4096, PteFlags.Read);
        rig.Respond(record, FaultResponseCode.Retry);
        Assert.That(rig.NextCompletion(Queue).Status, Is.EqualTo(CompletionStatus.Ok));
    }

    [Test]
    public void UnmappedFaultRingIsFatal()
    {
        using var rig = NewRig();
        rig.Model.Write64(Fa1Registers.FqBase, DmaRig.UnmappedIova);
        rig.Submit(Queue, DmaRig.Crc(0x4400_0000_0000, 64, Ctx));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while ((rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal) == 0)
        {
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)));
            Thread.Sleep(1);
        }

        Assert.That(ErrorRegister.FromRaw(rig.Read(Fa1Registers.Error)), Is.EqualTo(new ErrorRegister(FatalCause.UnmappedIova, (uint)(DmaRig.UnmappedIova >> 12))));
    }

    [TestCase(5UL)]
    [TestCase(17UL)]
    public void FaultRingSizeOutOfRangeIsFatal(ulong log2)
    {
        using var rig = NewRig();
        rig.Model.Write64(Fa1Registers.FqLog2, log2);
        Assert.That(ErrorRegister.FromRaw(rig.Read(Fa1Registers.Error)), Is.EqualTo(new ErrorRegister(FatalCause.BadRingConfiguration, Fa1Registers.FqLog2)));
    }

    [Test]
    public void ResetWithAStalledFaultStopsTheEngine()
    {
        var rig = NewRig();
        rig.Submit(Queue, DmaRig.Crc(0x4400_0000_0000, 64, Ctx));
        rig.WaitFaultRecord(0);
        rig.Model.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Reset);
        Assert.That(rig.Model.EngineThreads, Is.Zero, "the engine waiting for a response was stopped and joined");
        Assert.That(rig.Model.Oracle.LostFaults, Is.EqualTo(1), "the unanswered fault is counted lost");
        rig.Dispose();
    }

    private DmaRig NewRig()
    {
        var rig = new DmaRig(_clock);
        rig.ConfigureQueue(Queue);
        rig.EnableContext(Ctx);
        rig.ConfigureFaultRing();
        return rig;
    }
}
