using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>What an audit found cached that the page table in memory does not back (decision D33).</summary>
public enum TranslationAuditKind
{
    /// <summary>A TLB leaf grants access to a DVA page for which the table now has no valid leaf (a removal the TLB never heard of).</summary>
    TlbEntryNotInTable,

    /// <summary>A TLB leaf sends a DVA page to another IOVA than the table's leaf does now.</summary>
    TlbEntryAddressDiffers,

    /// <summary>A TLB leaf grants a permission (write, or read) the table's leaf no longer grants (a downgrade without TLB_INV).</summary>
    TlbEntryPermissionExceedsTable,

    /// <summary>
    /// A walk-cache entry points at a table the live table no longer links at that level (the entry is gone, now a
    /// leaf, or links another table): a retired table is still reachable by the device.
    /// </summary>
    WalkCacheEntryStale,
}

/// <summary>One audit finding: a cached translation that grants more than the page table in memory does now.</summary>
/// <param name="Kind">What differs.</param>
/// <param name="Context">The context of the cached entry.</param>
/// <param name="Dva">For a TLB entry, the DVA page; for a walk-cache entry, the first DVA of the span it serves.</param>
/// <param name="Level">The page-table level the entry caches: 3 (or 2 for a 2 MiB leaf) for the TLB, 0-2 for the walk cache.</param>
/// <param name="CachedEntry">The cached entry (the leaf, or the non-leaf entry).</param>
/// <param name="TableEntry">What the live table holds there now (0 when the walk stops above that level).</param>
/// <param name="InstalledByDropin">The TLB entry came from a DROPIN that already exceeded the table when it was installed.</param>
public readonly record struct TranslationAuditViolation(
    TranslationAuditKind Kind, int Context, ulong Dva, int Level, ulong CachedEntry, ulong TableEntry, bool InstalledByDropin)
{
    /// <summary>One line for a test failure or a log: context, DVA, and what the cache and the table say.</summary>
    public string Description => Kind switch
    {
        TranslationAuditKind.WalkCacheEntryStale =>
            $"context {Context}: the walk cache holds the level-{Level} entry for DVA 0x{Dva:X} pointing at table 0x{new PageTableEntry(CachedEntry).Address:X}, "
            + $"but the live table has {Show(TableEntry)} there (a table retired without TLB_INV and fence is still reachable)",
        _ =>
            $"context {Context}: the TLB{(InstalledByDropin ? " (a DROPIN)" : string.Empty)} maps DVA page 0x{Dva:X} to {Show(CachedEntry)}, "
            + $"the page table to {Show(TableEntry)} ({Kind}; a removal or downgrade without its TLB_INV)",
    };

    /// <inheritdoc/>
    public override string ToString() => Description;

    private static string Show(ulong raw)
    {
        var e = new PageTableEntry(raw);
        return !e.Valid ? "nothing" : $"0x{e.Address:X} {(e.Readable ? "R" : string.Empty)}{(e.Writable ? "W" : string.Empty)}{(e.IsLeafBit ? " LEAF" : string.Empty)}";
    }
}

/// <summary>
/// The test oracle for translations (spec 4.1-4.4, 6): every data access the device makes is checked here,
/// after the MMU and the IOMMU passed it, for signs that it used a translation that should be dead; every
/// DROPIN is compared with the page table when installed; and <see cref="Audit"/> compares everything cached
/// with the table in memory. What it counts reaches tests through <see cref="ModelOracle"/>; it never changes
/// what the device does.
/// </summary>
/// <remarks>
/// <para>Staleness, exactly and in bounded memory (decision D33): when INV_DONE counts an invalidation, every
/// TLB entry it covers that was filled before it is marked retired (<see cref="Tlb.MarkRetired"/>); a data
/// access through a retired entry whose page the table no longer grants is stale. The record is the TLB
/// itself, so nothing is forgotten and nothing grows. A translation read by a walk is used under a fence
/// ticket older than any invalidation that could retire it, which therefore cannot complete before the access
/// ends (spec 4.3); only cached entries can outlive a fence. An access whose IOMMU page changed since the
/// translation was read is stale too.</para>
/// <para>DROPIN (D33): FAULT_PTE is compared with the table at the moment it is installed. A mismatch is not
/// a bug by itself: under the GRU rule a DROPIN may land between a removal's table change and its TLB_INV,
/// which then drops it (spec 4.4). So the entry is marked unverified and judged by how it leaves: dropped by
/// an invalidation (or a reset, or its own permission miss), it was the race and is forgiven; pushed out of
/// the TLB for room, or found by an audit still exceeding the table, nothing ever invalidated a translation
/// the table did not back: counted in <see cref="DropinMismatches"/>.</para>
/// <para>Audit (D33): after a driver operation that removed or downgraded translations has returned, nothing
/// the device caches may grant more than the table in memory does: no TLB leaf with a permission or IOVA the
/// table's leaf lacks, no walk-cache entry pointing at a table the live table no longer links. The audit
/// must run when no other removal covering its range is between its table change and its fence (the device
/// cannot tell a removal in progress from a forgotten one); tests call it after the operation returns,
/// harnesses with their own ranges.</para>
/// <para>Locking: the marks live in the TLB, guarded by the MMU's lock, the same lock under which INV_DONE
/// counts an invalidation, so an invalidation is counted and its marks set in one step. The checks read the
/// page table with side-effect-free IOMMU peeks: no costs, no caches, no counters.</para>
/// </remarks>
internal sealed class TranslationOracle
{
    private readonly MmuBlock _mmu;
    private readonly ModelIommu _iommu;
    private readonly Lock _mmuLock;
    private readonly LeafRules _deviceRules;
    private long _dataAccesses;
    private long _staleAccesses;
    private long _dropinMismatches;
    private long _auditViolations;

    public TranslationOracle(MmuBlock mmu, ModelIommu iommu, Lock mmuLock, bool huge2M)
    {
        _mmu = mmu;
        _iommu = iommu;
        _mmuLock = mmuLock;
        _deviceRules = new LeafRules(huge2M, UpperLeafIsMalformed: true);
    }

    /// <summary>Data accesses the oracle checked (cumulative: a reset does not clear it).</summary>
    public long DataAccesses => Interlocked.Read(ref _dataAccesses);

    /// <summary>Data accesses through a translation the fence had retired, or whose IOMMU page changed (cumulative).</summary>
    public long StaleAccesses => Interlocked.Read(ref _staleAccesses);

    /// <summary>DROPINs that granted more than the table and were never invalidated (see the remarks; cumulative).</summary>
    public long DropinMismatches => Interlocked.Read(ref _dropinMismatches);

    /// <summary>Violations every <see cref="Audit"/> so far has found (cumulative).</summary>
    public long AuditViolations => Interlocked.Read(ref _auditViolations);

    /// <summary>MMU lock held: <paramref name="invalidation"/> was just counted in INV_DONE (its fence passed).</summary>
    public void InvalidationCompleted(in TlbInvalidation invalidation, Tlb tlb) =>
        tlb.MarkRetired(invalidation.Context, invalidation.FirstPage, invalidation.EndPage, invalidation.Epoch);

    /// <summary>MMU lock held: a TLB insert pushed <paramref name="evicted"/> out for room.</summary>
    public void Evicted(TlbTranslation? evicted)
    {
        if (evicted is { UnverifiedDropin: true })
        {
            Interlocked.Increment(ref _dropinMismatches);
        }
    }

    /// <summary>
    /// Checks one data access of <paramref name="context"/> at <paramref name="dva"/>, made through
    /// <paramref name="translation"/> with the IOMMU page of generation <paramref name="generationUsed"/>.
    /// </summary>
    public void CheckAccess(int context, ulong dva, bool write, in Translation translation, long generationUsed)
    {
        Interlocked.Increment(ref _dataAccesses);
        var stale = UsedAnotherIommuPage(translation, generationUsed)
            || UsedRetiredTranslation(context, dva, write, translation);
        if (stale)
        {
            Interlocked.Increment(ref _staleAccesses);
        }
    }

    /// <summary>
    /// A DROPIN of <paramref name="pte"/> for <paramref name="dva"/> of <paramref name="context"/> is about to be
    /// installed: true when it grants more than the page table in memory does now.
    /// </summary>
    public bool DropinExceedsTable(int context, ulong dva, PageTableEntry pte)
    {
        var page = dva & ~(PageTableFormat.PageSize - 1);
        var live = LiveLeaf(context, page);
        return Exceeds(pte, pte.Address, live) is not null;
    }

    /// <summary>
    /// Audits every TLB and walk-cache entry of <paramref name="context"/> (every context when null) whose span
    /// overlaps DVA pages [<paramref name="firstPage"/>, <paramref name="endPage"/>) against the page table in
    /// memory (see the remarks for when to call it). Returns the violations, each counted once more in
    /// <see cref="AuditViolations"/>.
    /// </summary>
    public IReadOnlyList<TranslationAuditViolation> Audit(int? context, ulong firstPage, ulong endPage)
    {
        var leaves = new List<TlbEntryView>();
        var tables = new List<WalkCacheEntryView>();
        _mmu.SnapshotCaches(leaves, tables);
        var found = new List<TranslationAuditViolation>();
        foreach (var entry in leaves)
        {
            var span = entry.Huge ? PageTableFormat.HugePageSize / PageTableFormat.PageSize : 1;
            var spanStart = entry.Huge ? entry.Page & ~(span - 1) : entry.Page;
            if ((context is { } c && entry.Context != c) || spanStart >= endPage || firstPage >= spanStart + span)
            {
                continue;
            }

            var dva = entry.Page << PageTableFormat.PageShift;
            var live = LiveLeaf(entry.Context, dva);
            var kind = Exceeds(new PageTableEntry(entry.Translation.Leaf), entry.Translation.PageIova, live);
            var dropin = entry.Translation.UnverifiedDropin;
            if (dropin)
            {
                // Judged now: an unverified DROPIN that still exceeds the table was never invalidated.
                lock (_mmuLock)
                {
                    _mmu.ClearUnverifiedDropinLocked(entry.Context, entry.Page);
                }

                if (kind is not null)
                {
                    Interlocked.Increment(ref _dropinMismatches);
                }
            }

            if (kind is { } k)
            {
                var leafLevel = entry.Huge ? PageTableFormat.HugeLeafLevel : PageTableFormat.Levels - 1;
                found.Add(new TranslationAuditViolation(k, entry.Context, dva, leafLevel, entry.Translation.Leaf, live.Status == WalkStatus.Leaf ? live.Leaf.Raw : 0, dropin));
            }
        }

        foreach (var entry in tables)
        {
            var spanPages = 1UL << (PageTableFormat.LevelShift(entry.Level) - PageTableFormat.PageShift);
            var spanStart = entry.Dva >> PageTableFormat.PageShift;
            if ((context is { } c && entry.Context != c) || spanStart >= endPage || firstPage >= spanStart + spanPages)
            {
                continue;
            }

            var live = LiveEntry(entry.Context, entry.Dva, entry.Level);
            var cached = new PageTableEntry(entry.Raw);
            var now = new PageTableEntry(live);
            var linked = now.Valid && !now.IsLeafBit && now.Address == cached.Address;
            if (!linked)
            {
                found.Add(new TranslationAuditViolation(TranslationAuditKind.WalkCacheEntryStale, entry.Context, entry.Dva, entry.Level, entry.Raw, live, false));
            }
        }

        Interlocked.Add(ref _auditViolations, found.Count);
        return found;
    }

    // The rule every check shares (spec 4.1): a cached leaf may grant no more than the table's leaf for the same
    // DVA page: the same IOVA page, and no permission the table lacks. Null when it grants nothing more.
    private static TranslationAuditKind? Exceeds(PageTableEntry cached, ulong cachedPageIova, in WalkResult live)
    {
        if (!cached.Valid || !cached.Readable)
        {
            return null; // grants nothing (W without R is malformed and never cached)
        }

        if (live.Status != WalkStatus.Leaf)
        {
            return TranslationAuditKind.TlbEntryNotInTable;
        }

        if ((live.Iova & ~(PageTableFormat.PageSize - 1)) != (cachedPageIova & ~(PageTableFormat.PageSize - 1)))
        {
            return TranslationAuditKind.TlbEntryAddressDiffers;
        }

        return !PageWalk.Permits(live.Leaf, write: false) || (cached.Writable && !PageWalk.Permits(live.Leaf, write: true))
            ? TranslationAuditKind.TlbEntryPermissionExceedsTable
            : null;
    }

    // Spec 6: the IOMMU page the access used is not the one the translation was made against (the
    // mapping was removed, and maybe replaced, since).
    private static bool UsedAnotherIommuPage(in Translation translation, long generationUsed) =>
        translation.Generation != 0 && translation.Generation != generationUsed;

    // Spec 4.3: an invalidation issued after the translation was cached has completed (its fence passed) for
    // this page (the TLB entry is marked retired), while the page table no longer grants the access at that IOVA.
    private bool UsedRetiredTranslation(int context, ulong dva, bool write, in Translation translation) =>
        translation.Retired && GrantedNow(context, dva, write) != (translation.Iova & ~(PageTableFormat.PageSize - 1));

    // What the page table in memory grants now: the IOVA page, or ulong.MaxValue when it grants nothing.
    // Lenient on purpose (an access is stale only if no reading of the table allows it): the root needs only
    // VALID, a level-2 LEAF is a 2 MiB leaf whatever CAPS.HUGE_2M says, and a LEAF bit at level 0 or 1 is ignored.
    private ulong GrantedNow(int context, ulong dva, bool write)
    {
        var root = _mmu.Root(context);
        if (!root.Valid)
        {
            return ulong.MaxValue;
        }

        using var scope = _iommu.BeginDeviceAccess();
        var reader = new PeekReader(_iommu);
        var walk = PageWalk.Walk(ref reader, root.TableIova, 0, dva, new LeafRules(Huge2M: true, UpperLeafIsMalformed: false));
        return walk.Status == WalkStatus.Leaf && PageWalk.Permits(walk.Leaf, write) ? walk.Iova : ulong.MaxValue;
    }

    // The leaf the device would find for dva now, by the device's own rules (decision D11), from CTX_ROOT;
    // NotPresent when the context is disabled or its root invalid (D20).
    private WalkResult LiveLeaf(int context, ulong dva)
    {
        if (!_mmu.IsContextUsable(context))
        {
            return new WalkResult(WalkStatus.NotPresent, default, 0, false, 0);
        }

        using var scope = _iommu.BeginDeviceAccess();
        var reader = new PeekReader(_iommu);
        return PageWalk.Walk(ref reader, _mmu.Root(context).TableIova, 0, dva, _deviceRules);
    }

    // The raw entry the live table holds at level for dva, or 0 when the walk stops above it (an invalid,
    // leaf or unreadable entry on the way, or an unusable context).
    private ulong LiveEntry(int context, ulong dva, int level)
    {
        if (!_mmu.IsContextUsable(context))
        {
            return 0;
        }

        using var scope = _iommu.BeginDeviceAccess();
        var reader = new PeekReader(_iommu);
        var table = _mmu.Root(context).TableIova;
        for (var l = 0; ; l++)
        {
            if (!reader.TryRead(table + ((ulong)PageTableFormat.Index(dva, l) * sizeof(ulong)), out var raw))
            {
                return 0;
            }

            if (l == level)
            {
                return raw;
            }

            var entry = new PageTableEntry(raw);
            if (!entry.Valid || entry.IsLeafBit)
            {
                return 0;
            }

            table = entry.Address;
        }
    }

    // Reads entries without them counting as device accesses or refusals.
    private readonly struct PeekReader(ModelIommu iommu) : IPageTableReader
    {
        public unsafe bool TryRead(ulong entryIova, out ulong raw)
        {
            if (!iommu.TryPeek(entryIova, out var host))
            {
                raw = 0;
                return false;
            }

            raw = Volatile.Read(ref *(ulong*)(host.Host + (nint)(entryIova & (PageTableFormat.PageSize - 1))));
            return true;
        }

        public void OnTableEntry(int level, ulong raw)
        {
        }
    }
}
