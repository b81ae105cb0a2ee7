using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>The one page walk (spec 4.1, D11, D12) under the MMU's rules and under the oracle's lenient ones.</summary>
public class PageWalkTests
{
    private const ulong Dva = 0x0000_1234_5678_9ABC;
    private static readonly LeafRules s_mmu = new(Huge2M: true, UpperLeafIsMalformed: true);
    private static readonly LeafRules s_mmuNoHuge = new(Huge2M: false, UpperLeafIsMalformed: true);
    private static readonly LeafRules s_oracle = new(Huge2M: true, UpperLeafIsMalformed: false);

    [Test]
    public void FourLevelsEndInA4KiBLeaf()
    {
        var memory = Table(l3: PageTableEntry.Create(0x9000_0000, PteFlags.Valid | PteFlags.Read));
        var walk = Walk(memory, s_mmu);
        Assert.That(walk.Status, Is.EqualTo(WalkStatus.Leaf));
        Assert.That(walk.Iova, Is.EqualTo(0x9000_0000UL));
        Assert.That(walk.Huge, Is.False);
        Assert.That(walk.EntriesRead, Is.EqualTo(4));
        Assert.That(memory.TablesPassed, Is.EqualTo(new[] { 0, 1, 2 }), "every non-leaf level is shown to the reader");
    }

    [Test]
    public void A2MiBLeafNeedsHuge2M()
    {
        var huge = PageTableEntry.Create(0x8000_0000, PteFlags.Valid | PteFlags.Read | PteFlags.Leaf);
        var walk = Walk(Table(l2: huge), s_mmu);
        Assert.That(walk.Status, Is.EqualTo(WalkStatus.Leaf));
        Assert.That(walk.Huge, Is.True);
        Assert.That(walk.Iova, Is.EqualTo(huge.LeafPageAddress(Dva, hugeLeaf: true)));
        Assert.That(walk.EntriesRead, Is.EqualTo(3));
        Assert.That(Walk(Table(l2: huge), s_mmuNoHuge).Status, Is.EqualTo(WalkStatus.NotPresent), "D11: without CAPS.HUGE_2M");
    }

    [Test]
    public void AnUpperLeafIsMalformedForTheMmuAndFollowedByTheOracle()
    {
        var memory = Table(l3: PageTableEntry.Create(0x9000_0000, PteFlags.Valid | PteFlags.Read));
        memory.Entries[EntryIova(1, 0x2000)] |= (ulong)PteFlags.Leaf;
        Assert.That(Walk(memory, s_mmu).Status, Is.EqualTo(WalkStatus.NotPresent), "D11");
        Assert.That(Walk(memory, s_oracle).Status, Is.EqualTo(WalkStatus.Leaf), "the oracle ignores the bit (today)");
    }

    [Test]
    public void WriteWithoutReadIsMalformedAndPermissionsAreTheCallersCheck()
    {
        Assert.That(Walk(Table(l3: PageTableEntry.Create(0x9000_0000, PteFlags.Valid | PteFlags.Write)), s_oracle).Status, Is.EqualTo(WalkStatus.NotPresent));
        var readOnly = Walk(Table(l3: PageTableEntry.Create(0x9000_0000, PteFlags.Valid | PteFlags.Read)), s_mmu);
        Assert.That(PageWalk.Permits(readOnly.Leaf, write: false), Is.True);
        Assert.That(PageWalk.Permits(readOnly.Leaf, write: true), Is.False);
    }

    [Test]
    public void AnInvalidEntryOrAnUnreadableOneEndsTheWalk()
    {
        Assert.That(Walk(Table(l3: PageTableEntry.Invalid), s_mmu).Status, Is.EqualTo(WalkStatus.NotPresent));
        var memory = Table(l3: PageTableEntry.Create(0x9000_0000, PteFlags.Valid | PteFlags.Read));
        memory.Entries.Remove(EntryIova(2, 0x3000));
        var walk = Walk(memory, s_mmu);
        Assert.That(walk.Status, Is.EqualTo(WalkStatus.Unreadable));
        Assert.That(walk.Iova, Is.EqualTo(EntryIova(2, 0x3000)), "the entry refused");
        Assert.That(walk.EntriesRead, Is.EqualTo(3), "the refused read counts (spec 7)");
    }

    private static WalkResult Walk(FakeMemory memory, LeafRules rules)
    {
        memory.TablesPassed.Clear();
        var reader = new FakeReader(memory);
        return PageWalk.Walk(ref reader, 0x1000, 0, Dva, rules);
    }

    private static ulong EntryIova(int level, ulong table) => table + ((ulong)PageTableFormat.Index(Dva, level) * 8);

    // Tables at 0x1000 (level 0), 0x2000, 0x3000, 0x4000 (level 3); l2 replaces the level-2 entry.
    private static FakeMemory Table(PageTableEntry? l2 = null, PageTableEntry? l3 = null)
    {
        var memory = new FakeMemory();
        memory.Entries[EntryIova(0, 0x1000)] = PageTableEntry.Create(0x2000, PteFlags.Valid).Raw;
        memory.Entries[EntryIova(1, 0x2000)] = PageTableEntry.Create(0x3000, PteFlags.Valid).Raw;
        memory.Entries[EntryIova(2, 0x3000)] = (l2 ?? PageTableEntry.Create(0x4000, PteFlags.Valid)).Raw;
        memory.Entries[EntryIova(3, 0x4000)] = (l3 ?? PageTableEntry.Invalid).Raw;
        return memory;
    }

    private sealed class FakeMemory
    {
        public Dictionary<ulong, ulong> Entries { get; } = [];

        public List<int> TablesPassed { get; } = [];
    }

    private readonly struct FakeReader(FakeMemory memory) : IPageTableReader
    {
        public bool TryRead(ulong entryIova, out ulong raw) => memory.Entries.TryGetValue(entryIova, out raw);

        public void OnTableEntry(int level, ulong raw) => memory.TablesPassed.Add(level);
    }
}
