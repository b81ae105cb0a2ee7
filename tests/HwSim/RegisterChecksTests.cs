using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>
/// Values the driver writes that a real device checks (decision D37, with D13, D14, D16, D22, D25-D27, D36):
/// each is refused, ignored or contained the way hardware would, never taken on trust.
/// </summary>
public class RegisterChecksTests
{
    private const int Ctx = 1;

    [Test]
    public void AFaultResponseWithBitsAboveTheCodeIsIgnoredAndCounted()
    {
        using var rig = NewRig(faultRing: true);
        const ulong dva = 0x4400_0000_0000;
        rig.Submit(0, DmaRig.Fill(dva, 64, 1, Ctx));
        var record = rig.WaitFaultRecord(0);
        var response = new FaultResponse(record.Tag, record.Context, FaultResponseCode.Abort).Raw;
        rig.Model.Write64(Fa1Registers.FaultResp, response | (1UL << 40));
        Thread.Sleep(20);
        Assert.That(rig.Model.Oracle.IgnoredFaultResponses, Is.EqualTo(1));
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.Zero, "the access is still stalled");
        rig.Model.Write64(Fa1Registers.FaultResp, response);
        Assert.That(rig.NextCompletion(0).Status, Is.EqualTo(CompletionStatus.Fault));
    }

    [TestCase(Opcode.Nop, (ushort)0x4)]
    [TestCase(Opcode.Fill, (ushort)0x8000)]
    public void ADescriptorWithAnUndefinedFlagIsABadDescriptor(Opcode opcode, ushort flag)
    {
        using var rig = NewRig();
        var buffer = rig.MapBuffer(Ctx, 4096);
        rig.Bytes(buffer.Iova, 4096).Fill(0xEE);
        var d = opcode == Opcode.Nop ? DmaRig.Nop() : DmaRig.Fill(buffer.Dva, 4096, 0, Ctx);
        d.Flags = (DescriptorFlags)flag | DescriptorFlags.Irq;
        Assert.That(rig.Run(0, d).Status, Is.EqualTo(CompletionStatus.BadDescriptor));
        Assert.That(rig.Bytes(buffer.Iova, 4096).ToArray(), Is.All.EqualTo(0xEE), "nothing was written");
        Assert.That(rig.Run(0, DmaRig.Nop(flags: DescriptorFlags.Irq | DescriptorFlags.Fence)).Status, Is.EqualTo(CompletionStatus.Ok), "IRQ and FENCE are defined");
    }

    [Test]
    public void ALeafOrADropinOutsideTheIovaSpaceIsADmaError()
    {
        using var rig = NewRig(faultRing: true);
        const ulong beyond = 1UL << 49; // CAPS IOVA bits: 48
        const ulong dva = 0x4400_0000_0000;
        rig.SetLeaf(Ctx, dva, PageTableEntry.Create(beyond, PteFlags.Valid | PteFlags.Read | PteFlags.Write));
        Assert.That(rig.Run(0, DmaRig.Fill(dva, 64, 1, Ctx)).Status, Is.EqualTo(CompletionStatus.DmaError), "spec 6: the IOMMU refuses it");

        rig.Submit(0, DmaRig.Fill(dva + 4096, 64, 1, Ctx));
        rig.Respond(rig.WaitFaultRecord(0), FaultResponseCode.Dropin, PageTableEntry.Create(beyond, PteFlags.Valid | PteFlags.Read | PteFlags.Write));
        Assert.That(rig.NextCompletion(0).Status, Is.EqualTo(CompletionStatus.DmaError), "a DROPIN there is refused the same way");
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Zero, "data, not a ring or table: not FATAL");
    }

    [Test]
    public void AnInvalidationRunningPastTheAddressSpaceCoversEverythingFromItsStart()
    {
        using var rig = NewRig();
        var low = rig.MapBuffer(Ctx, 4096);
        var high = rig.MapBuffer(Ctx, 4096);
        Assert.That(high.Dva, Is.GreaterThan(low.Dva));
        rig.Run(0, DmaRig.Fill(low.Dva, 64, 1, Ctx));
        rig.Run(0, DmaRig.Fill(high.Dva, 64, 1, Ctx));

        rig.Model.Write64(Fa1Registers.InvAddr, high.Dva | 0x123); // bits 11:0 are not stored
        Assert.That(rig.Read(Fa1Registers.InvAddr), Is.EqualTo(high.Dva));
        rig.Model.Write64(Fa1Registers.InvPages, ulong.MaxValue);
        rig.Model.Write64(Fa1Registers.InvCmd, new InvalidationCommand(Ctx, InvalidationScope.Range).Raw | (1UL << 40)); // reserved bits ignored
        WaitInvDone(rig, 1);

        var hits = rig.Read(Fa1Registers.TlbHits);
        rig.Run(0, DmaRig.Fill(low.Dva, 64, 2, Ctx));
        Assert.That(rig.Read(Fa1Registers.TlbHits), Is.EqualTo(hits + 1), "below INV_ADDR: kept");
        var misses = rig.Read(Fa1Registers.TlbMisses);
        rig.Run(0, DmaRig.Fill(high.Dva, 64, 2, Ctx));
        Assert.That(rig.Read(Fa1Registers.TlbMisses), Is.EqualTo(misses + 1), "from INV_ADDR to the end of the space: dropped");
    }

    [Test]
    public void ARootAtAnUnmappedIovaIsFatalAtTheFirstWalkAndItsReservedBitsAreNotStored()
    {
        using var rig = NewRig();
        var root = Fa1Registers.Context(Ctx, Fa1Registers.CtxRoot);
        rig.Model.Write64(root, DmaRig.UnmappedIova | 0xFFE | 1);
        Assert.That(rig.Read(root), Is.EqualTo(DmaRig.UnmappedIova | 1), "bits 11:1 are not stored");
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Zero, "D20: checked when used, not when written");
        rig.Submit(0, DmaRig.Fill(0x4400_0000_0000, 64, 1, Ctx));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while ((rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal) == 0)
        {
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "the device never went FATAL");
            Thread.Yield();
        }

        Assert.That(ErrorRegister.FromRaw(rig.Read(Fa1Registers.Error)), Is.EqualTo(ErrorRegister.ForUnmappedIova(DmaRig.UnmappedIova)));
    }

    private static void WaitInvDone(DmaRig rig, ulong count)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (rig.Read(Fa1Registers.InvDone) < count)
        {
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "INV_DONE never advanced");
            Thread.Yield();
        }
    }

    private static DmaRig NewRig(bool faultRing = false)
    {
        var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(0);
        rig.EnableContext(Ctx);
        if (faultRing)
        {
            rig.ConfigureFaultRing();
        }

        return rig;
    }
}
