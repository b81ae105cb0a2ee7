using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>The oracle (for tests of the driver too): stale accesses and lost faults.</summary>
public class OracleTests
{
    [Test]
    public void RemappingAnIovaUnderACachedTranslationIsAStaleAccess()
    {
        using var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(0);
        rig.EnableContext(0);
        const ulong dva = 0x3300_0000_0000;
        const ulong iova = 0x9_0000_0000;
        using var first = MemoryMapping.Anonymous(4096);
        using var second = MemoryMapping.Anonymous(4096);
        rig.Model.Iommu.Map(iova, first.Address, 4096, DmaAccess.ReadWrite);
        rig.Map(0, dva, iova, 4096, PteFlags.Read | PteFlags.Write);
        Assert.That(rig.Run(0, DmaRig.Fill(dva, 64, 1, 0)).Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(rig.Model.Oracle.StaleAccesses, Is.Zero);

        // A driver bug: unpin and reuse the IOVA without invalidating the device TLB.
        rig.Model.Iommu.Unmap(iova, 4096);
        rig.Model.Iommu.Map(iova, second.Address, 4096, DmaAccess.ReadWrite);
        rig.Run(0, DmaRig.Fill(dva, 64, 2, 0));
        Assert.That(rig.Model.Oracle.StaleAccesses, Is.EqualTo(1));

        // Done right: invalidate, wait for the fence, then the next access reads fresh translations.
        rig.Model.Write64(Fa1Registers.InvCmd, new InvalidationCommand(0, InvalidationScope.Context).Raw);
        while (rig.Read(Fa1Registers.InvDone) < 1)
        {
            Thread.Yield();
        }

        rig.Run(0, DmaRig.Fill(dva, 64, 3, 0));
        Assert.That(rig.Model.Oracle.StaleAccesses, Is.EqualTo(1), "no new stale access");
        Assert.That(rig.Model.Oracle.DataAccesses, Is.EqualTo(3));
    }

    [Test]
    public void CorrectUnmapSequenceHasNoStaleAccess()
    {
        using var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(0);
        rig.EnableContext(0);
        var buffer = rig.MapBuffer(0, 8192);
        rig.Run(0, DmaRig.Fill(buffer.Dva, 8192, 1, 0));
        rig.SetLeaf(0, buffer.Dva, PageTableEntry.Invalid);
        rig.Model.Write64(Fa1Registers.InvAddr, buffer.Dva);
        rig.Model.Write64(Fa1Registers.InvPages, 1);
        rig.Model.Write64(Fa1Registers.InvCmd, new InvalidationCommand(0, InvalidationScope.Range).Raw);
        while (rig.Read(Fa1Registers.InvDone) < 1)
        {
            Thread.Yield();
        }

        Assert.That(rig.Run(0, DmaRig.Fill(buffer.Dva, 8192, 1, 0)).Status, Is.EqualTo(CompletionStatus.Fault));
        Assert.That(rig.Run(0, DmaRig.Fill(buffer.Dva + 4096, 4096, 1, 0)).Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(rig.Model.Oracle.StaleAccesses, Is.Zero);
    }
}
