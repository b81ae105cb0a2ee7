using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Mmu;

/// <summary>
/// <see cref="PageTable.Apply"/> asks about, and writes, only the pages of its range when they cannot change the chunk's
/// level-2 entry (the fault-around install's case), and still asks about the whole chunk when they can (a 2 MiB leaf
/// made or split): in both cases every entry ends as a rewrite of the whole chunk would leave it.
/// </summary>
public class PageTableRangeTests
{
    private const ulong Page = PageTableFormat.PageSize;
    private const ulong Chunk = 0x40_0000; // 2 MiB aligned, inside the layout's identity window of host addresses

    [Test]
    public void AnInstallOfAFewPagesAsksOnlyAboutThemAndLeavesTheRestOfTheChunk()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var table = new PageTable(device.Mmu.Iommu, huge2M: true);
        var want = new Dictionary<ulong, (PteFlags Flags, bool MayJoin)>();
        var asked = new List<ulong>();
        PteFlags Desired(ulong dva, out bool mayJoin)
        {
            asked.Add(dva);
            var found = want.TryGetValue(dva, out var w);
            mayJoin = !found || w.MayJoin;
            return found ? w.Flags : PteFlags.None;
        }

        // Pinned-like pages at the chunk's start (may join a 2 MiB leaf), then on-demand-like pages (may not).
        for (var p = Chunk; p < Chunk + (8 * Page); p += Page)
        {
            want[p] = (PteFlags.Read | PteFlags.Write, true);
        }

        table.Apply(Chunk, Chunk + (8 * Page), Desired);
        AssertMatchesEveryPage(table, want);

        asked.Clear();
        var first = Chunk + (64 * Page);
        for (var p = first; p < first + (16 * Page); p += Page)
        {
            want[p] = (PteFlags.Read, false);
        }

        var change = table.Apply(first, first + (16 * Page), Desired);
        Assert.That(asked, Has.Count.EqualTo(16), "a 16-page install asks about its 16 pages, not the chunk's 512");
        Assert.That(asked, Is.All.InRange(first, first + (15 * Page)));
        Assert.That(change.NeedsInvalidation, Is.False, "an addition next to existing translations removes nothing");
        AssertMatchesEveryPage(table, want);

        // Evict two of them one by one: only they lose their translation, and only they are reported.
        for (var p = first + (4 * Page); p < first + (6 * Page); p += Page)
        {
            want.Remove(p);
            asked.Clear();
            change = table.Apply(p, p + Page, Desired);
            Assert.That(asked, Is.EqualTo(new[] { p }));
            Assert.That((change.Removed, change.FirstDva, change.EndDva), Is.EqualTo((true, p, p + Page)));
        }

        AssertMatchesEveryPage(table, want);
    }

    [Test]
    public void PagesThatCompleteAChunkStillMakeA2MiBLeafAndARemovalSplitsIt()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var table = new PageTable(device.Mmu.Iommu, huge2M: true);
        var mapped = new HashSet<ulong>();
        PteFlags Desired(ulong dva, out bool mayJoin)
        {
            mayJoin = true;
            return mapped.Contains(dva) ? PteFlags.Read | PteFlags.Write : PteFlags.None;
        }

        const ulong half = PageTableFormat.HugePageSize / 2;
        for (var p = Chunk; p < Chunk + half; p += Page)
        {
            mapped.Add(p);
        }

        table.Apply(Chunk, Chunk + half, Desired);
        Assert.That(table.Lookup(Chunk, out var level).Valid && level == PageTableFormat.Levels - 1, Is.True, "half a chunk is 4 KiB leaves");

        for (var p = Chunk + half; p < Chunk + PageTableFormat.HugePageSize; p += Page)
        {
            mapped.Add(p);
        }

        var change = table.Apply(Chunk + half, Chunk + PageTableFormat.HugePageSize, Desired);
        Assert.That(change.Promoted, Is.True);
        Assert.That(table.Lookup(Chunk + Page, out level).Valid && level == PageTableFormat.HugeLeafLevel, Is.True, "the whole chunk is one 2 MiB leaf");

        var gone = Chunk + (100 * Page);
        mapped.Remove(gone);
        change = table.Apply(gone, gone + Page, Desired);
        Assert.That(change.Removed, Is.True);
        Assert.That((change.FirstDva, change.EndDva), Is.EqualTo((Chunk, Chunk + PageTableFormat.HugePageSize)), "the 2 MiB translation the TLB may hold is invalidated whole");
        Assert.That(table.Lookup(gone, out _).Valid, Is.False);
        Assert.That(table.Lookup(gone + Page, out level).Valid && level == PageTableFormat.Levels - 1, Is.True, "the chunk is split back into 4 KiB leaves");
    }

    private static void AssertMatchesEveryPage(PageTable table, Dictionary<ulong, (PteFlags Flags, bool MayJoin)> want)
    {
        for (var p = Chunk; p < Chunk + PageTableFormat.HugePageSize; p += Page)
        {
            var e = table.Lookup(p, out _);
            var expected = want.TryGetValue(p, out var w) ? w.Flags : PteFlags.None;
            Assert.That(e.Valid, Is.EqualTo(expected != PteFlags.None), $"page 0x{p:X}");
            if (e.Valid)
            {
                Assert.That(e.Raw & (ulong)(PteFlags.Read | PteFlags.Write), Is.EqualTo((ulong)expected), $"page 0x{p:X}");
            }
        }
    }
}
