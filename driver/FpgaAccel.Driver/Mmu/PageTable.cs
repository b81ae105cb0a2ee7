using FpgaAccel.Driver.Dma;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver.Mmu;

/// <summary>What a page-table update changed that the device may have cached.</summary>
/// <param name="RemovedSomething">An entry lost validity or a permission, or a table pointer was replaced:
/// the TLB or walk cache may hold it, so TLB_INV and its fence must follow (spec 4.1).</param>
/// <param name="FirstDva">First DVA whose translation was removed or re-pointed.</param>
/// <param name="EndDva">One past the last such DVA.</param>
internal readonly record struct PageTableChange(bool RemovedSomething, ulong FirstDva, ulong EndDva)
{
    public ulong Pages => (EndDva - FirstDva) >> PageTableFormat.PageShift;
}

/// <summary>
/// One context's device page table in DMA memory (spec 4.1): 4 levels of 512 8-byte entries.
/// Writers hold the owning context's lock; the device walks the table concurrently.
/// </summary>
/// <remarks>
/// Ordering rules kept here (spec 4.1):
/// - every entry is written with one 8-byte store (<see cref="Volatile.Write(ref ulong, ulong)"/>), so the
///   device's single 8-byte DMA read sees the old or the new entry, never a torn one;
/// - a new table is filled completely before the entry pointing to it is published: the fill is plain
///   stores, the publish a volatile (release) store, and x86 keeps stores in order, so a walker that
///   sees the pointer sees the contents;
/// - a table that is unlinked is not freed until the caller has invalidated and passed the fence,
///   because the walk cache may still hold the pointer to it (<see cref="FreeRetired"/>).
/// Non-leaf entries carry V|R|W; the device decides permission at the leaf (decision D12).
/// </remarks>
internal sealed unsafe class PageTable : IDisposable
{
    private const ulong NonLeafFlags = (ulong)(PteFlags.Valid | PteFlags.Read | PteFlags.Write);
    private readonly IommuMappings _iommu;
    private readonly bool _huge2M;
    private readonly Table _root;
    private readonly List<Table> _retired = [];
    private int _tables = 1;

    public PageTable(IommuMappings iommu, bool huge2M)
    {
        _iommu = iommu;
        _huge2M = huge2M;
        _root = new Table(DmaMemory.Allocate(iommu, PageTableFormat.PageSize), 0);
    }

    /// <summary>IOVA of the level-0 table, for CTX_ROOT.</summary>
    public ulong RootIova => _root.Memory.Iova;

    /// <summary>Tables allocated now (root included), for tests and reports.</summary>
    public int TableCount => _tables;

    /// <summary>Tables unlinked and waiting for a fence before they are freed.</summary>
    public int RetiredCount => _retired.Count;

    /// <summary>
    /// Makes every 4 KiB page of [firstDva, endDva) translate as <paramref name="desired"/> says
    /// (<see cref="PteFlags.None"/>: no translation). The function is asked about every page of each
    /// 2 MiB chunk touched, so a chunk whose 512 pages agree becomes one 2 MiB leaf.
    /// </summary>
    public PageTableChange Apply(ulong firstDva, ulong endDva, Func<ulong, PteFlags> desired)
    {
        var removedFirst = ulong.MaxValue;
        var removedEnd = 0UL;
        Span<ulong> want = stackalloc ulong[PageTableFormat.EntriesPerTable];
        for (var chunk = firstDva & ~(PageTableFormat.HugePageSize - 1); chunk < endDva; chunk += PageTableFormat.HugePageSize)
        {
            var any = false;
            var uniform = true;
            for (var i = 0; i < want.Length; i++)
            {
                var dva = chunk + ((ulong)i << PageTableFormat.PageShift);
                var flags = desired(dva);
                want[i] = flags == PteFlags.None ? 0 : PageTableEntry.Create(_iommu.Layout.IovaOf(dva), flags | PteFlags.Valid).Raw;
                any |= want[i] != 0;
                uniform &= i == 0 || (want[i] & 0xF) == (want[0] & 0xF);
            }

            var l2 = Walk(chunk, create: any);
            if (l2 is null)
            {
                continue; // nothing mapped here and nothing to map
            }

            var idx = PageTableFormat.Index(chunk, PageTableFormat.HugeLeafLevel);
            if (ApplyChunk(l2, idx, chunk, want, any, uniform && any && _huge2M))
            {
                removedFirst = Math.Min(removedFirst, chunk);
                removedEnd = Math.Max(removedEnd, chunk + PageTableFormat.HugePageSize);
            }
        }

        return removedFirst == ulong.MaxValue ? default : new PageTableChange(true, removedFirst, removedEnd);
    }

    /// <summary>The leaf translating <paramref name="dva"/> and its level (2 for a 2 MiB page), or an invalid entry.</summary>
    public PageTableEntry Lookup(ulong dva, out int level)
    {
        var table = _root;
        for (level = 0; level < PageTableFormat.Levels; level++)
        {
            var entry = new PageTableEntry(Volatile.Read(ref table.Entries[PageTableFormat.Index(dva, level)]));
            if (!entry.Valid || level == PageTableFormat.Levels - 1 || (level == PageTableFormat.HugeLeafLevel && entry.IsLeafBit))
            {
                return entry;
            }

            table = table.Children![PageTableFormat.Index(dva, level)]!;
        }

        return default;
    }

    /// <summary>Frees unlinked tables. Call only after an invalidation covering them has passed its fence.</summary>
    public void FreeRetired()
    {
        foreach (var t in _retired)
        {
            FreeTree(t);
        }

        _retired.Clear();
    }

    /// <summary>Frees every table. Only after the context is disabled, invalidated and fenced.</summary>
    public void Dispose()
    {
        FreeRetired();
        FreeTree(_root);
    }

    // Returns the level-2 table covering dva, creating levels 1 and 2 when asked.
    private Table? Walk(ulong dva, bool create)
    {
        var table = _root;
        for (var level = 0; level < PageTableFormat.HugeLeafLevel; level++)
        {
            var idx = PageTableFormat.Index(dva, level);
            var child = table.Children![idx];
            if (child is null)
            {
                if (!create)
                {
                    return null;
                }

                child = NewTable(level + 1);
                table.Children[idx] = child;

                // Publish after the (zeroed) table exists: release store (spec 4.1 ordering).
                Volatile.Write(ref table.Entries[idx], (child.Memory.Iova & PageTableEntry.AddressMask) | NonLeafFlags);
            }

            table = child;
        }

        return table;
    }

    // Brings one level-2 slot to the wanted state. True when something the device may cache was removed.
    private bool ApplyChunk(Table l2, int idx, ulong chunk, Span<ulong> want, bool any, bool asHugeLeaf)
    {
        ref var slot = ref l2.Entries[idx];
        var current = new PageTableEntry(Volatile.Read(ref slot));
        var child = l2.Children![idx];

        // An emptied chunk keeps its level-3 table (its entries are cleared below): faults that come
        // back to the chunk then reuse it instead of building and DMA-mapping a new one.
        if (asHugeLeaf || (!any && child is null))
        {
            var next = any ? PageTableEntry.Create(_iommu.Layout.IovaOf(chunk), (PteFlags)(want[0] & 0xF) | PteFlags.Leaf).Raw : 0UL;
            if (current.Raw == next)
            {
                return false;
            }

            Volatile.Write(ref slot, next);
            if (child is not null)
            {
                // The walk cache may hold the pointer and the TLB entries from the old table.
                l2.Children[idx] = null;
                _retired.Add(child);
                return true;
            }

            // Huge leaf to huge leaf (or to nothing): only a loss of permission or validity needs invalidation.
            return current.Valid && (next == 0 || (current.Raw & ~next & 0x6) != 0);
        }

        if (child is null)
        {
            // A new level-3 table, filled completely before the pointer to it is published.
            child = NewTable(PageTableFormat.Levels - 1);
            for (var i = 0; i < want.Length; i++)
            {
                child.Entries[i] = want[i];
            }

            l2.Children[idx] = child;
            Volatile.Write(ref slot, (child.Memory.Iova & PageTableEntry.AddressMask) | NonLeafFlags);

            // Replacing a 2 MiB leaf: pages that lost a permission the leaf gave need invalidation.
            if (current.Valid)
            {
                for (var i = 0; i < want.Length; i++)
                {
                    if ((current.Raw & ~want[i] & 0x7) != 0)
                    {
                        return true;
                    }
                }
            }

            return false;
        }

        var removed = false;
        for (var i = 0; i < want.Length; i++)
        {
            ref var e = ref child.Entries[i];
            var old = Volatile.Read(ref e);
            if (old == want[i])
            {
                continue;
            }

            Volatile.Write(ref e, want[i]);
            removed |= (old & (ulong)PteFlags.Valid) != 0 && (want[i] == 0 || (old & ~want[i] & 0x7) != 0 || (old & PageTableEntry.AddressMask) != (want[i] & PageTableEntry.AddressMask));
        }

        return removed;
    }

    private Table NewTable(int level)
    {
        var t = new Table(DmaMemory.Allocate(_iommu, PageTableFormat.PageSize), level);
        _tables++;
        return t;
    }

    private void FreeTree(Table t)
    {
        if (t.Children is not null)
        {
            foreach (var c in t.Children)
            {
                if (c is not null)
                {
                    FreeTree(c);
                }
            }
        }

        t.Memory.Dispose();
        _tables--;
    }

    private sealed class Table
    {
        public Table(DmaMemory memory, int level)
        {
            Memory = memory;
            Entries = (ulong*)memory.Pointer;
            Children = level < PageTableFormat.Levels - 1 ? new Table?[PageTableFormat.EntriesPerTable] : null;
        }

        public DmaMemory Memory { get; }

        public ulong* Entries { get; }

        public Table?[]? Children { get; }
    }
}
