using FpgaAccel.Driver.Dma;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// What a page should translate to: its permission (<see cref="PteFlags.None"/> for no translation), and whether it
/// may share a 2 MiB leaf with its neighbours (<paramref name="mayJoinHugeLeaf"/>).
/// </summary>
internal delegate PteFlags DesiredTranslation(ulong dva, out bool mayJoinHugeLeaf);

/// <summary>What a page-table update changed that the device may have cached.</summary>
/// <param name="Removed">An entry lost validity or a permission: the TLB may hold it, so TLB_INV and its fence must
/// follow before the pages are released or relied on as read-only (spec 4.1).</param>
/// <param name="Promoted">A level-2 entry that pointed to a level-3 table became a 2 MiB leaf: the walk cache may
/// keep the pointer. The table stays linked below the leaf and up to date (so the walk cache still translates right),
/// but the caller invalidates and fences so that no cached entry points at a table the root no longer reaches.</param>
/// <param name="FirstDva">First DVA whose cached translation may be wrong now: the first page that lost something, or the
/// start of a chunk whose level-2 entry changed.</param>
/// <param name="EndDva">One past the last such DVA.</param>
internal readonly record struct PageTableChange(bool Removed, bool Promoted, ulong FirstDva, ulong EndDva)
{
    /// <summary>Something the device may have cached changed: invalidate [FirstDva, EndDva) and wait for the fence.</summary>
    public bool NeedsInvalidation => Removed || Promoted;

    public ulong Pages => (EndDva - FirstDva) >> PageTableFormat.PageShift;
}

/// <summary>
/// One context's device page table in DMA memory (spec 4.1): 4 levels of 512 8-byte entries.
/// Writers hold the owning context's lock; the device walks the table concurrently. No host thread reads it
/// without that lock (the fault path computes leaves from the address mirror: <see cref="DeviceContext"/>).
/// </summary>
/// <remarks>
/// Ordering rules kept here (spec 4.1):
/// - every entry is written with one 8-byte store (<see cref="Volatile.Write(ref ulong, ulong)"/>), so the
///   device's single 8-byte DMA read sees the old or the new entry, never a torn one;
/// - a new table is filled completely before the entry pointing to it is published: the fill is plain
///   stores, the publish a volatile (release) store, and x86 keeps stores in order, so a walker that
///   sees the pointer sees the contents.
/// Every 2 MiB chunk with a translation has a level-3 table, kept linked in <see cref="Table.Children"/> and
/// up to date (each page's entry says what the chunk's translation says) even while the level-2 entry is a 2 MiB
/// leaf. So a promotion (pointer to leaf) or a split (leaf to pointer) only rewrites the level-2 entry: the device's
/// walk cache, which may still hold the pointer, keeps translating exactly as the table does; removals never
/// need a new table (they cannot fail); and no table is unlinked or freed before the context is disposed, so no
/// operation can free a table another may still reach (issue 11, defects 1 and 4). The cost is one 4 KiB table per
/// 2 MiB chunk mapped with a 2 MiB leaf (0.2%).
/// Failure atomicity: <see cref="Apply"/> first allocates every table it will need, unpublished (phase 1); if an
/// allocation fails it frees those and throws, having changed nothing. Phase 2 only stores entries and cannot fail.
/// Non-leaf entries carry V|R|W; the device decides permission at the leaf (decision D12).
/// </remarks>
internal sealed unsafe class PageTable : IDisposable
{
    private const ulong NonLeafFlags = (ulong)(PteFlags.Valid | PteFlags.Read | PteFlags.Write);
    private const ulong PermissionBits = (ulong)(PteFlags.Valid | PteFlags.Read | PteFlags.Write);
    private readonly IommuMappings _iommu;
    private readonly bool _huge2M;
    private readonly Table _root;
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
    public int TableCount => Volatile.Read(ref _tables);

    /// <summary>
    /// Makes every 4 KiB page of [firstDva, endDva) translate as <paramref name="desired"/> says. The caller changes
    /// what the function answers only for pages in that range (the rest of each chunk already translates as it says).
    /// When the range's pages could complete a 2 MiB leaf, or one is in place, or a table is new, the function is asked
    /// about every page of the chunk (to plan, then to write), so a chunk whose 512 pages agree, and all may join one,
    /// becomes one 2 MiB leaf; otherwise only about the range's pages, whose entries alone are written. Throws, with
    /// nothing changed, when a table it needs cannot be allocated. Allocates nothing when it needs no new table
    /// (always so when it only removes).
    /// </summary>
    public PageTableChange Apply(ulong firstDva, ulong endDva, DesiredTranslation desired)
    {
        var pending = Prepare(firstDva, endDva, desired);
        try
        {
            return Write(firstDva, endDva, desired, pending);
        }
        finally
        {
            // Phase 2 links every table phase 1 made (both ask the same function under the same lock); anything left
            // would be a planning bug, and is freed rather than leaked.
            pending?.FreeAll(this);
        }
    }

    /// <summary>The leaf translating <paramref name="dva"/> and its level (2 for a 2 MiB page), or an invalid entry. Hold the owner's lock.</summary>
    public PageTableEntry Lookup(ulong dva, out int level)
    {
        var table = _root;
        for (level = 0; level < PageTableFormat.Levels; level++)
        {
            var index = PageTableFormat.Index(dva, level);
            var entry = new PageTableEntry(Volatile.Read(ref table.Entries[index]));
            if (!entry.Valid || level == PageTableFormat.Levels - 1 || (level == PageTableFormat.HugeLeafLevel && entry.IsLeafBit))
            {
                return entry;
            }

            table = table.Children![index];
            if (table is null)
            {
                return default;
            }
        }

        return default;
    }

    /// <summary>Frees every table. Only after the context is disabled, invalidated and fenced.</summary>
    public void Dispose() => FreeTree(_root);

    // Phase 1: every table phase 2 will link, allocated and zeroed but not published. Null when none is needed.
    private PendingTables? Prepare(ulong firstDva, ulong endDva, DesiredTranslation desired)
    {
        PendingTables? pending = null;
        try
        {
            for (var chunk = firstDva & ~(PageTableFormat.HugePageSize - 1); chunk < endDva; chunk += PageTableFormat.HugePageSize)
            {
                if (HasLevel3(chunk) || !AnyWanted(chunk, desired))
                {
                    continue; // every table exists already, or nothing to map here: no table is created
                }

                var l1 = _root.Children![PageTableFormat.Index(chunk, 0)];
                if (l1 is null && pending?.Find(1, chunk) is null)
                {
                    (pending ??= new PendingTables()).Add(1, chunk, NewTable(1));
                }

                var l2 = l1?.Children![PageTableFormat.Index(chunk, 1)];
                if (l2 is null && pending?.Find(2, chunk) is null)
                {
                    (pending ??= new PendingTables()).Add(2, chunk, NewTable(2));
                }

                if (l2?.Children![PageTableFormat.Index(chunk, 2)] is null)
                {
                    (pending ??= new PendingTables()).Add(3, chunk, NewTable(3));
                }
            }

            return pending;
        }
        catch
        {
            pending?.FreeAll(this);
            throw;
        }
    }

    // Phase 2: stores only.
    private PageTableChange Write(ulong firstDva, ulong endDva, DesiredTranslation desired, PendingTables? pending)
    {
        var changedFirst = ulong.MaxValue;
        var changedEnd = 0UL;
        var removed = false;
        var promoted = false;
        Span<ulong> want = stackalloc ulong[PageTableFormat.EntriesPerTable];
        for (var chunk = firstDva & ~(PageTableFormat.HugePageSize - 1); chunk < endDva; chunk += PageTableFormat.HugePageSize)
        {
            if (TryWriteRange(chunk, Math.Max(firstDva, chunk), Math.Min(endDva, chunk + PageTableFormat.HugePageSize), desired, want, out var rangeLostFirst, out var rangeLostEnd))
            {
                if (rangeLostFirst < rangeLostEnd)
                {
                    removed = true;
                    changedFirst = Math.Min(changedFirst, chunk + ((ulong)rangeLostFirst << PageTableFormat.PageShift));
                    changedEnd = Math.Max(changedEnd, chunk + ((ulong)rangeLostEnd << PageTableFormat.PageShift));
                }

                continue;
            }

            var any = false;
            var uniform = true;
            for (var i = 0; i < want.Length; i++)
            {
                var dva = chunk + ((ulong)i << PageTableFormat.PageShift);
                var flags = desired(dva, out var mayJoin);
                want[i] = flags == PteFlags.None ? 0 : PageTableEntry.Create(_iommu.Layout.IovaOf(dva), flags | PteFlags.Valid).Raw;
                any |= want[i] != 0;
                uniform &= mayJoin && (want[i] & PermissionBits) == (want[0] & PermissionBits);
            }

            var l2 = WalkToLevel2(chunk, any, pending);
            if (l2 is null)
            {
                continue; // nothing mapped here and nothing to map
            }

            var (lostFirst, lostEnd, promotion) = WriteChunk(l2, chunk, want, any, uniform && any && _huge2M, pending);
            if (lostFirst < lostEnd || promotion)
            {
                // Only the pages that changed are invalidated, unless the level-2 entry itself changed (a 2 MiB leaf
                // replaced or made): then the TLB may hold a 2 MiB translation and the walk cache the pointer, so the
                // whole chunk. A narrow range keeps a removal from dropping its neighbours' cached translations.
                var first = promotion ? chunk : chunk + ((ulong)lostFirst << PageTableFormat.PageShift);
                var end = promotion ? chunk + PageTableFormat.HugePageSize : chunk + ((ulong)lostEnd << PageTableFormat.PageShift);
                removed |= lostFirst < lostEnd;
                promoted |= promotion;
                changedFirst = Math.Min(changedFirst, first);
                changedEnd = Math.Max(changedEnd, end);
            }
        }

        return changedFirst == ulong.MaxValue ? default : new PageTableChange(removed, promoted, changedFirst, changedEnd);
    }

    // The fast path of one chunk: asks `desired` only about the pages of [first, end) (a fault-around install of 16
    // pages touches 16 entries, not 512 twice) and writes only their entries. It applies when the chunk's level-3 table
    // exists and the level-2 entry points to it (no 2 MiB leaf to replace or split), and the range's pages cannot make
    // the chunk one 2 MiB leaf (one of them may not join, has no translation, or differs in permission from the
    // others; or 2 MiB leaves are off). Then the level-2 entry stays the pointer it is, and the result equals the full
    // path's: the other pages' entries already say what `desired` says (every caller changes what `desired` answers
    // only inside the range it applies, under the lock, and the table is kept up to date chunk-wide), so the full path
    // would store nothing there either. False, having changed nothing, when the full path must run.
    private bool TryWriteRange(ulong chunk, ulong first, ulong end, DesiredTranslation desired, Span<ulong> want, out int lostFirst, out int lostEnd)
    {
        (lostFirst, lostEnd) = (0, 0);
        var l2 = _root.Children![PageTableFormat.Index(chunk, 0)]?.Children![PageTableFormat.Index(chunk, 1)];
        var idx = PageTableFormat.Index(chunk, PageTableFormat.HugeLeafLevel);
        var child = l2?.Children![idx];
        if (child is null || Volatile.Read(ref l2!.Entries[idx]) != ((child.Memory.Iova & PageTableEntry.AddressMask) | NonLeafFlags))
        {
            return false; // a new table to fill and link, or a 2 MiB leaf in place: the full path decides
        }

        var lo = (int)((first - chunk) >> PageTableFormat.PageShift);
        var hi = (int)((end - chunk + PageTableFormat.PageSize - 1) >> PageTableFormat.PageShift);
        var joinable = true;
        for (var i = lo; i < hi; i++)
        {
            var dva = chunk + ((ulong)i << PageTableFormat.PageShift);
            var flags = desired(dva, out var mayJoin);
            want[i] = flags == PteFlags.None ? 0 : PageTableEntry.Create(_iommu.Layout.IovaOf(dva), flags | PteFlags.Valid).Raw;
            joinable &= mayJoin && want[i] != 0 && (want[i] & PermissionBits) == (want[lo] & PermissionBits);
        }

        if (joinable && _huge2M)
        {
            return false; // these pages might complete a 2 MiB leaf: the full path asks about the whole chunk
        }

        (lostFirst, lostEnd) = UpdateEntries(child, want, lo, hi);
        return true;
    }

    // True when the level-3 table of the chunk exists (then so do the tables above it): phase 1 has nothing to plan.
    private bool HasLevel3(ulong chunk) =>
        _root.Children![PageTableFormat.Index(chunk, 0)]?.Children![PageTableFormat.Index(chunk, 1)]?.Children![PageTableFormat.Index(chunk, 2)] is not null;

    private static bool AnyWanted(ulong chunk, DesiredTranslation desired)
    {
        for (var i = 0; i < PageTableFormat.EntriesPerTable; i++)
        {
            if (desired(chunk + ((ulong)i << PageTableFormat.PageShift), out _) != PteFlags.None)
            {
                return true;
            }
        }

        return false;
    }

    // The level-2 table covering dva; links pending level-1 and level-2 tables when there is something to map.
    private Table? WalkToLevel2(ulong dva, bool create, PendingTables? pending)
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

                child = pending?.Take(level + 1, dva) ?? throw new InvalidOperationException($"Page table: no level-{level + 1} table was planned for DVA 0x{dva:X}.");
                table.Children[idx] = child;

                // Publish after the (zeroed) table exists: release store (spec 4.1 ordering).
                Volatile.Write(ref table.Entries[idx], (child.Memory.Iova & PageTableEntry.AddressMask) | NonLeafFlags);
            }

            table = child;
        }

        return table;
    }

    // Brings one chunk to the wanted state: its level-3 entries first, then its level-2 entry. Returns the pages
    // (indexes in the chunk, [LostFirst, LostEnd), empty when none) whose translation lost validity, a permission or
    // its page, and whether a pointer to the level-3 table became a 2 MiB leaf.
    private (int LostFirst, int LostEnd, bool Promoted) WriteChunk(Table l2, ulong chunk, Span<ulong> want, bool any, bool asHugeLeaf, PendingTables? pending)
    {
        var idx = PageTableFormat.Index(chunk, PageTableFormat.HugeLeafLevel);
        ref var slot = ref l2.Entries[idx];
        var current = new PageTableEntry(Volatile.Read(ref slot));
        var child = l2.Children![idx];
        if (child is null)
        {
            if (!any)
            {
                return (0, 0, false); // never mapped: a chunk with a translation always has its level-3 table
            }

            // A new level-3 table, filled completely before anything points at it.
            child = pending?.Take(3, chunk) ?? throw new InvalidOperationException($"Page table: no level-3 table was planned for DVA 0x{chunk:X}.");
            for (var i = 0; i < want.Length; i++)
            {
                child.Entries[i] = want[i];
            }

            l2.Children[idx] = child;
        }

        // The level-3 entries first: whatever reaches this table (the level-2 entry, or a walk-cache pointer left from
        // before a promotion) then translates as the chunk should, before the level-2 entry changes.
        var (lostFirst, lostEnd) = UpdateEntries(child, want, 0, want.Length);
        var pointer = (child.Memory.Iova & PageTableEntry.AddressMask) | NonLeafFlags;
        var next = asHugeLeaf
            ? PageTableEntry.Create(_iommu.Layout.IovaOf(chunk), (PteFlags)(want[0] & PermissionBits) | PteFlags.Leaf).Raw
            : pointer;
        if (current.Raw == next)
        {
            return (lostFirst, lostEnd, false);
        }

        Volatile.Write(ref slot, next);
        var wasHuge = current.Valid && current.IsLeafBit;
        if (wasHuge)
        {
            // A 2 MiB leaf replaced (by another leaf, or split into the table): the TLB may hold the 2 MiB
            // translation, so if any page lost a permission it gave, the whole chunk is invalidated.
            for (var i = 0; i < want.Length; i++)
            {
                if ((current.Raw & ~want[i] & PermissionBits) != 0)
                {
                    return (0, want.Length, false);
                }
            }

            return (lostFirst, lostEnd, false);
        }

        return (lostFirst, lostEnd, current.Raw == pointer && asHugeLeaf);
    }

    // Stores the wanted entries of [lo, hi) that differ. Returns the index range [First, End) of the entries that lost
    // validity, a permission, or their page (empty when none did).
    private static (int First, int End) UpdateEntries(Table table, Span<ulong> want, int lo, int hi)
    {
        var first = hi;
        var end = 0;
        for (var i = lo; i < hi; i++)
        {
            ref var e = ref table.Entries[i];
            var old = Volatile.Read(ref e);
            if (old == want[i])
            {
                continue;
            }

            Volatile.Write(ref e, want[i]);
            if ((old & (ulong)PteFlags.Valid) != 0
                && (want[i] == 0 || (old & ~want[i] & PermissionBits) != 0 || (old & PageTableEntry.AddressMask) != (want[i] & PageTableEntry.AddressMask)))
            {
                first = Math.Min(first, i);
                end = i + 1;
            }
        }

        return first < end ? (first, end) : (0, 0);
    }

    private Table NewTable(int level)
    {
        var t = new Table(DmaMemory.Allocate(_iommu, PageTableFormat.PageSize), level);
        Interlocked.Increment(ref _tables);
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
        Interlocked.Decrement(ref _tables);
    }

    /// <summary>One table: its DMA memory, and the child tables its non-leaf entries point to (or shadow).</summary>
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

    // Tables phase 1 allocated for phase 2, keyed by level and the DVA bits above that level's span.
    private sealed class PendingTables
    {
        private readonly List<(int Level, ulong Prefix, Table Table)> _tables = [];

        public void Add(int level, ulong dva, Table table) => _tables.Add((level, Prefix(level, dva), table));

        public Table? Find(int level, ulong dva)
        {
            var prefix = Prefix(level, dva);
            foreach (var (l, p, t) in _tables)
            {
                if (l == level && p == prefix)
                {
                    return t;
                }
            }

            return null;
        }

        public Table? Take(int level, ulong dva)
        {
            var prefix = Prefix(level, dva);
            for (var i = 0; i < _tables.Count; i++)
            {
                if (_tables[i].Level == level && _tables[i].Prefix == prefix)
                {
                    var t = _tables[i].Table;
                    _tables.RemoveAt(i);
                    return t;
                }
            }

            return null;
        }

        public void FreeAll(PageTable owner)
        {
            foreach (var (_, _, t) in _tables)
            {
                owner.FreeTree(t);
            }

            _tables.Clear();
        }

        // A level-n table sits below one entry of level n-1: it is chosen by the DVA bits above level n-1's index.
        private static ulong Prefix(int level, ulong dva) => dva >> PageTableFormat.LevelShift(level - 1);
    }
}
