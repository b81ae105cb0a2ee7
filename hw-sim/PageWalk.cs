using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>Where a walk reads page-table entries from, and who sees the table entries it passes.</summary>
internal interface IPageTableReader
{
    /// <summary>Reads the 8-byte entry at <paramref name="entryIova"/>; false when it cannot be read.</summary>
    bool TryRead(ulong entryIova, out ulong raw);

    /// <summary>The walk passed a valid non-leaf entry at <paramref name="level"/> on its way down.</summary>
    void OnTableEntry(int level, ulong raw);
}

/// <summary>Which LEAF bits a walk honours (spec 4.1, decision D11).</summary>
/// <param name="Huge2M">CAPS.HUGE_2M: a LEAF bit at level 2 makes a 2 MiB leaf; without it that entry is malformed.</param>
/// <param name="UpperLeafIsMalformed">
/// A LEAF bit at level 0 or 1 makes the entry malformed (D11). When false the bit is ignored and the
/// entry is followed as a table.
/// </param>
internal readonly record struct LeafRules(bool Huge2M, bool UpperLeafIsMalformed);

/// <summary>How a walk ended.</summary>
internal enum WalkStatus
{
    /// <summary>A well-formed, valid leaf maps the DVA; its permissions are not checked yet.</summary>
    Leaf,

    /// <summary>An invalid entry, or a malformed leaf (spec 4.1, D11): it faults like a missing one.</summary>
    NotPresent,

    /// <summary>An entry could not be read (the IOMMU refused it).</summary>
    Unreadable,
}

/// <summary>The end of one walk.</summary>
/// <param name="Status">How it ended.</param>
/// <param name="Leaf">For <see cref="WalkStatus.Leaf"/>: the leaf entry.</param>
/// <param name="Iova">For Leaf: the IOVA of the 4 KiB page the DVA falls in; for Unreadable: the IOVA of the entry refused.</param>
/// <param name="Huge">For Leaf: a 2 MiB leaf at level 2.</param>
/// <param name="EntriesRead">Entries the walk tried to read, the refused one included (each is one DMA read, spec 7).</param>
internal readonly record struct WalkResult(WalkStatus Status, PageTableEntry Leaf, ulong Iova, bool Huge, int EntriesRead);

/// <summary>
/// The page-table walk of spec 4.1, written once: the MMU's translation and the test oracle both go
/// down the table with it, each with its own reader (DMA reads with a walk cache, or side-effect-free
/// peeks) and its own <see cref="LeafRules"/>.
/// </summary>
internal static class PageWalk
{
    /// <summary>
    /// Walks from the table at <paramref name="table"/>, which is at level <paramref name="startLevel"/>,
    /// down to the leaf that maps <paramref name="dva"/>.
    /// </summary>
    public static WalkResult Walk<TReader>(ref TReader reader, ulong table, int startLevel, ulong dva, LeafRules rules)
        where TReader : struct, IPageTableReader
    {
        var read = 0;
        for (var level = startLevel; level < PageTableFormat.Levels; level++)
        {
            var entryIova = table + ((ulong)PageTableFormat.Index(dva, level) * sizeof(ulong));
            read++;
            if (!reader.TryRead(entryIova, out var raw))
            {
                return new WalkResult(WalkStatus.Unreadable, default, entryIova, false, read);
            }

            var entry = new PageTableEntry(raw);
            if (!entry.Valid)
            {
                return new WalkResult(WalkStatus.NotPresent, default, 0, false, read);
            }

            var leafBit = entry.IsLeafBit && (level >= PageTableFormat.HugeLeafLevel || rules.UpperLeafIsMalformed);
            if (level < PageTableFormat.Levels - 1 && !leafBit)
            {
                // Decision D12: permissions live in leaves; a non-leaf entry needs only V.
                reader.OnTableEntry(level, raw);
                table = entry.Address;
                continue;
            }

            // Decision D11: LEAF above level 2, or at level 2 without CAPS.HUGE_2M, and W without R
            // (spec 4.1) are malformed and fault like a missing entry.
            var huge = level == PageTableFormat.HugeLeafLevel;
            if (entry.Malformed || (leafBit && (level < PageTableFormat.HugeLeafLevel || (huge && !rules.Huge2M))))
            {
                return new WalkResult(WalkStatus.NotPresent, default, 0, false, read);
            }

            return new WalkResult(WalkStatus.Leaf, entry, entry.LeafPageAddress(dva, huge), huge, read);
        }

        // Unreachable: level 3 always ends the loop.
        return new WalkResult(WalkStatus.NotPresent, default, 0, false, read);
    }

    /// <summary>Spec 4.1: a read needs R, a write needs W (and W without R never reaches here: it is malformed).</summary>
    public static bool Permits(PageTableEntry leaf, bool write) => write ? leaf.Writable && leaf.Readable : leaf.Readable;
}
