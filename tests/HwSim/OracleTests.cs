using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>
/// The oracle (for tests of the driver too): stale accesses, lost faults, DROPINs the table does not back, and
/// the audit of cached translations (decision D33). Each check fires on a driver bug made by hand and stays
/// silent when the same steps are done right.
/// </summary>
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

    [Test]
    public void AuditFindsADowngradeWithoutTlbInvalidationWhileThePageStaysMapped()
    {
        using var rig = NewRig();
        var buffer = rig.MapBuffer(0, 4096);
        rig.Run(0, DmaRig.Fill(buffer.Dva, 64, 1, 0)); // the TLB now holds the RW leaf
        Assert.That(rig.Model.AuditTranslations(), Is.Empty, "nothing removed yet");

        // A driver bug: make the page read-only and forget TLB_INV. The page stays mapped, so no access is stale.
        rig.SetLeaf(0, buffer.Dva, PageTableEntry.Create(buffer.Iova, PteFlags.Valid | PteFlags.Read));
        var found = rig.Model.AuditTranslations();
        Assert.That(found, Has.Count.EqualTo(1));
        Assert.Multiple(() =>
        {
            Assert.That(found[0].Kind, Is.EqualTo(TranslationAuditKind.TlbEntryPermissionExceedsTable));
            Assert.That(found[0].Context, Is.Zero);
            Assert.That(found[0].Dva, Is.EqualTo(buffer.Dva));
            Assert.That(new PageTableEntry(found[0].CachedEntry).Writable, Is.True);
            Assert.That(new PageTableEntry(found[0].TableEntry).Writable, Is.False);
            Assert.That(found[0].Description, Does.Contain("context 0").And.Contain($"0x{buffer.Dva:X}"));
            Assert.That(rig.Model.Oracle.AuditViolations, Is.EqualTo(1));
            Assert.That(rig.Model.Oracle.StaleAccesses, Is.Zero, "the old oracle could not see it");
        });

        // Done right: TLB_INV for the page and its fence; then nothing cached exceeds the table.
        InvalidateRange(rig, 0, buffer.Dva, 1);
        Assert.That(rig.Model.AuditTranslations(), Is.Empty);
        Assert.That(rig.Model.Oracle.AuditViolations, Is.EqualTo(1), "a clean audit adds nothing");
    }

    [Test]
    public void AuditFindsARemovalOrRemapThatInvalidatedTheWrongRange()
    {
        using var rig = NewRig();
        var buffer = rig.MapBuffer(0, 2 * 4096);
        var other = rig.Allocate(4096);
        rig.Run(0, DmaRig.Fill(buffer.Dva, 2 * 4096, 1, 0));

        // Bugs: page 0 removed, page 1 sent to another IOVA; the invalidation covers neither.
        rig.SetLeaf(0, buffer.Dva, PageTableEntry.Invalid);
        rig.SetLeaf(0, buffer.Dva + 4096, PageTableEntry.Create(other, PteFlags.Valid | PteFlags.Read | PteFlags.Write));
        InvalidateRange(rig, 0, buffer.Dva + (16 * 4096), 4);
        var found = rig.Model.AuditTranslations(0, buffer.Dva, 2 * 4096);
        Assert.That(found.Select(v => (v.Kind, v.Dva)), Is.EquivalentTo(new[]
        {
            (TranslationAuditKind.TlbEntryNotInTable, buffer.Dva),
            (TranslationAuditKind.TlbEntryAddressDiffers, buffer.Dva + 4096),
        }));
        Assert.That(rig.Model.AuditTranslations(1), Is.Empty, "another context's audit sees nothing of context 0");
        Assert.That(rig.Model.AuditTranslations(0, buffer.Dva + (64 * 4096), 4096), Is.Empty, "a range elsewhere sees nothing");

        InvalidateRange(rig, 0, buffer.Dva, 2);
        Assert.That(rig.Model.AuditTranslations(), Is.Empty);
    }

    [Test]
    public void AuditFindsARetiredTableTheWalkCacheStillReaches()
    {
        using var rig = NewRig();
        var buffer = rig.MapBuffer(0, 4096);
        rig.Run(0, DmaRig.Fill(buffer.Dva, 64, 1, 0)); // the walk cache holds levels 0-2 for the buffer

        // A driver bug (issue 11 defect 1): replace the level-3 table with a new one and unlink the old,
        // without TLB_INV: the walk cache still points at the retired table.
        var replacement = rig.Allocate(4096);
        unsafe
        {
            var entries = (ulong*)rig.HostOf(replacement);
            entries[PageTableFormat.Index(buffer.Dva, 3)] = PageTableEntry.Create(buffer.Iova, PteFlags.Valid | PteFlags.Read | PteFlags.Write).Raw;
        }

        var level2 = LevelTwoSlot(rig, buffer.Dva);
        var retired = new PageTableEntry(Volatile.Read(ref level2[0])).Address;
        Volatile.Write(ref level2[0], PageTableEntry.Create(replacement, PteFlags.Valid).Raw);
        var found = rig.Model.AuditTranslations();
        Assert.That(found, Has.Count.EqualTo(1));
        Assert.Multiple(() =>
        {
            Assert.That(found[0].Kind, Is.EqualTo(TranslationAuditKind.WalkCacheEntryStale));
            Assert.That(found[0].Level, Is.EqualTo(2));
            Assert.That(new PageTableEntry(found[0].CachedEntry).Address, Is.EqualTo(retired));
            Assert.That(new PageTableEntry(found[0].TableEntry).Address, Is.EqualTo(replacement));
            Assert.That(found[0].Description, Does.Contain("still reachable"));
        });

        InvalidateRange(rig, 0, buffer.Dva, 1);
        Assert.That(rig.Model.AuditTranslations(), Is.Empty, "the invalidation dropped the walk-cache entries over the page");
    }

    [Test]
    public void AuditFindsAContextDisabledWithoutInvalidation()
    {
        using var rig = NewRig();
        var buffer = rig.MapBuffer(0, 4096);
        rig.Run(0, DmaRig.Fill(buffer.Dva, 64, 1, 0));
        rig.Model.Write64(Fa1Registers.Context(0, Fa1Registers.CtxCtrl), 0); // D20: needs an invalidation too
        Assert.That(rig.Model.AuditTranslations().Select(v => v.Kind), Does.Contain(TranslationAuditKind.TlbEntryNotInTable));
        rig.Model.Write64(Fa1Registers.InvCmd, new InvalidationCommand(0, InvalidationScope.Context).Raw);
        WaitInvalidations(rig, 1);
        Assert.That(rig.Model.AuditTranslations(), Is.Empty);
    }

    [Test]
    public void ADropinTheTableDoesNotBackIsFoundByTheAuditAndCountedOnce()
    {
        using var rig = NewRig(faultRing: true);
        var page = rig.Allocate(4096);
        const ulong dva = 0x4400_0000_0000;
        rig.Submit(0, DmaRig.Fill(dva, 64, 1, 0));

        // A driver bug: answer DROPIN with an entry the table does not hold (here, no table entry at all).
        rig.Respond(rig.WaitFaultRecord(0), FaultResponseCode.Dropin, PageTableEntry.Create(page, PteFlags.Valid | PteFlags.Read | PteFlags.Write));
        Assert.That(rig.NextCompletion(0).Status, Is.EqualTo(CompletionStatus.Ok), "the device installs it all the same");
        Assert.That(rig.Model.Oracle.DropinMismatches, Is.Zero, "not judged yet: an invalidation may still drop it (spec 4.4)");

        var found = rig.Model.AuditTranslations();
        Assert.That(found, Has.Count.EqualTo(1));
        Assert.That(found[0].InstalledByDropin, Is.True);
        Assert.That(found[0].Kind, Is.EqualTo(TranslationAuditKind.TlbEntryNotInTable));
        Assert.That(rig.Model.Oracle.DropinMismatches, Is.EqualTo(1));
        rig.Model.AuditTranslations();
        Assert.That(rig.Model.Oracle.DropinMismatches, Is.EqualTo(1), "judged once");
    }

    [Test]
    public void ADropinPushedOutOfTheTlbWithoutAnInvalidationIsAMismatch()
    {
        // One TLB entry in all: the next fill evicts the DROPIN.
        using var rig = NewRig(faultRing: true, options: new ModelOptions { TlbWays = 1, TlbSetsLog2 = 0 });
        var page = rig.Allocate(4096);
        var other = rig.MapBuffer(0, 4096);
        const ulong dva = 0x4400_0000_0000;
        rig.Submit(0, DmaRig.Fill(dva, 64, 1, 0));
        rig.Respond(rig.WaitFaultRecord(0), FaultResponseCode.Dropin, PageTableEntry.Create(page, PteFlags.Valid | PteFlags.Read | PteFlags.Write));
        rig.NextCompletion(0);
        rig.Run(0, DmaRig.Fill(other.Dva, 64, 2, 0));
        Assert.That(rig.Model.Oracle.DropinMismatches, Is.EqualTo(1));
    }

    [Test]
    public void DropinsDoneRightOrDroppedByTheRacingInvalidationAreNotMismatches()
    {
        using var rig = NewRig(faultRing: true, options: new ModelOptions { TlbWays = 1, TlbSetsLog2 = 0 });
        var page = rig.Allocate(4096);
        const ulong dva = 0x4400_0000_0000;

        // Right: the table entry first, then the DROPIN of the same entry.
        rig.Submit(0, DmaRig.Fill(dva, 64, 1, 0));
        var record = rig.WaitFaultRecord(0);
        var leaf = PageTableEntry.Create(page, PteFlags.Valid | PteFlags.Read | PteFlags.Write);
        rig.SetLeaf(0, dva, leaf);
        rig.Respond(record, FaultResponseCode.Dropin, leaf);
        Assert.That(rig.NextCompletion(0).Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(rig.Model.AuditTranslations(), Is.Empty);

        // The GRU race: a removal clears the entry after the fault service read it, the DROPIN lands before the
        // removal's TLB_INV, and the TLB_INV drops it. Correct by spec 4.4, so not a mismatch.
        rig.Submit(0, DmaRig.Fill(dva + 4096, 64, 1, 0));
        record = rig.WaitFaultRecord(1);
        rig.SetLeaf(0, dva + 4096, leaf);
        rig.SetLeaf(0, dva + 4096, PageTableEntry.Invalid); // the removal's table change
        rig.Respond(record, FaultResponseCode.Dropin, leaf);
        Assert.That(rig.NextCompletion(0).Status, Is.EqualTo(CompletionStatus.Ok));
        InvalidateRange(rig, 0, dva + 4096, 1); // the removal's TLB_INV and fence
        rig.Run(0, DmaRig.Fill(dva, 64, 3, 0)); // refills the one-entry TLB
        Assert.That(rig.Model.Oracle.DropinMismatches, Is.Zero);
        Assert.That(rig.Model.AuditTranslations(), Is.Empty);
        Assert.That(rig.Model.Oracle.StaleAccesses, Is.Zero);
    }

    [Test]
    public void AnAccessThroughATlbEntryAFencedInvalidationCoveredIsStaleHoweverManyInvalidationsCameBetween()
    {
        // The MMU drops what an invalidation covers when it is issued, so only a broken MMU leaves such an entry;
        // the mark is exact (kept in the entry, no history of invalidations), so none is ever forgotten.
        var tlb = new Tlb(ways: 8, setsLog2: 2);
        tlb.Insert(3, 0x100, new TlbTranslation(PageTableEntry.Create(0x9000, PteFlags.Valid | PteFlags.Read).Raw, 0x9000, FillEpoch: 1, Generation: 0), huge: false);
        for (var epoch = 2; epoch < 1000; epoch++)
        {
            tlb.MarkRetired(3, 0x200, 0x201, epoch); // unrelated pages
        }

        Assert.That(tlb.TryLookup(3, 0x100, out var unrelated) && !unrelated.Retired, Is.True);
        Assert.That(tlb.MarkRetired(4, 0x100, 0x101, 2000), Is.Zero, "another context");
        Assert.That(tlb.MarkRetired(3, 0x100, 0x101, 1), Is.Zero, "an invalidation issued before the fill");
        Assert.That(tlb.MarkRetired(3, 0, ulong.MaxValue, 2000), Is.EqualTo(1));
        Assert.That(tlb.TryLookup(3, 0x100, out var retired) && retired.Retired, Is.True);
    }

    private static DmaRig NewRig(bool faultRing = false, ModelOptions? options = null)
    {
        var rig = new DmaRig(ClockMode.Virtual, options: options);
        rig.ConfigureQueue(0);
        rig.EnableContext(0);
        rig.EnableContext(1);
        if (faultRing)
        {
            rig.ConfigureFaultRing();
        }

        return rig;
    }

    private static void InvalidateRange(DmaRig rig, int ctx, ulong dva, ulong pages)
    {
        var before = rig.Read(Fa1Registers.InvDone);
        rig.Model.Write64(Fa1Registers.InvAddr, dva);
        rig.Model.Write64(Fa1Registers.InvPages, pages);
        rig.Model.Write64(Fa1Registers.InvCmd, new InvalidationCommand((byte)ctx, InvalidationScope.Range).Raw);
        WaitInvalidations(rig, before + 1);
    }

    private static void WaitInvalidations(DmaRig rig, ulong done)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (rig.Read(Fa1Registers.InvDone) < done)
        {
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "the fence never passed");
            Thread.Yield();
        }
    }

    // The level-2 entry that maps dva's 2 MiB span, in the rig's tables.
    private static unsafe Span<ulong> LevelTwoSlot(DmaRig rig, ulong dva)
    {
        var table = new ContextRoot(rig.Read(Fa1Registers.Context(0, Fa1Registers.CtxRoot))).TableIova;
        for (var level = 0; level < 2; level++)
        {
            table = new PageTableEntry(*(ulong*)rig.HostOf(table + ((ulong)PageTableFormat.Index(dva, level) * 8))).Address;
        }

        return new Span<ulong>((ulong*)rig.HostOf(table + ((ulong)PageTableFormat.Index(dva, 2) * 8)), 1);
    }
}
