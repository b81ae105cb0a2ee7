using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>
/// The test oracle for data accesses (spec 4.3, 6): every access the device makes is checked here,
/// after the MMU and the IOMMU passed it, for signs that it used a translation that should be dead.
/// What it counts reaches tests through <see cref="ModelOracle"/>; it never changes what the device does.
/// </summary>
/// <remarks>
/// <para>Each check is one method answering "is this access stale?"; <see cref="CheckAccess"/> counts the
/// access stale when any check says so. A stricter oracle adds a method and names it there.</para>
/// <para>Locking: the record of completed invalidations is guarded by the MMU's lock, the same lock under
/// which INV_DONE counts an invalidation, so an invalidation is counted and remembered in one step.
/// The checks read the page table with side-effect-free IOMMU peeks: no costs, no caches, no counters.</para>
/// </remarks>
internal sealed class TranslationOracle
{
    // How many completed invalidations the oracle remembers: a bound on its memory. It looks that far
    // back for a fence a cached translation should have died at.
    private const int RememberedInvalidations = 64;

    private readonly MmuBlock _mmu;
    private readonly ModelIommu _iommu;
    private readonly Lock _mmuLock;
    private readonly Queue<TlbInvalidation> _completed = new();
    private long _dataAccesses;
    private long _staleAccesses;

    public TranslationOracle(MmuBlock mmu, ModelIommu iommu, Lock mmuLock)
    {
        _mmu = mmu;
        _iommu = iommu;
        _mmuLock = mmuLock;
    }

    /// <summary>Data accesses the oracle checked (cumulative: a reset does not clear it).</summary>
    public long DataAccesses => Interlocked.Read(ref _dataAccesses);

    /// <summary>Data accesses through a translation the fence had retired, or whose IOMMU page changed (cumulative).</summary>
    public long StaleAccesses => Interlocked.Read(ref _staleAccesses);

    /// <summary>MMU lock held: <paramref name="invalidation"/> was just counted in INV_DONE (its fence passed).</summary>
    public void InvalidationCompleted(in TlbInvalidation invalidation)
    {
        _completed.Enqueue(invalidation);
        if (_completed.Count > RememberedInvalidations)
        {
            _completed.Dequeue();
        }
    }

    /// <summary>MMU lock held: a reset forgets the completed invalidations (the counters stay).</summary>
    public void Reset() => _completed.Clear();

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

    // Spec 6: the IOMMU page the access used is not the one the translation was made against (the
    // mapping was removed, and maybe replaced, since).
    private static bool UsedAnotherIommuPage(in Translation translation, long generationUsed) =>
        translation.Generation != 0 && translation.Generation != generationUsed;

    // Spec 4.3: an invalidation issued after the translation was read has completed (its fence passed)
    // for this page, while the page table no longer grants the access at that IOVA.
    private bool UsedRetiredTranslation(int context, ulong dva, bool write, in Translation translation)
    {
        var page = dva >> PageTableFormat.PageShift;
        var retired = false;
        lock (_mmuLock)
        {
            foreach (var done in _completed)
            {
                if (done.Epoch > translation.FillEpoch && done.Covers(context, page))
                {
                    retired = true;
                    break;
                }
            }
        }

        return retired && GrantedNow(context, dva, write) != (translation.Iova & ~(PageTableFormat.PageSize - 1));
    }

    // What the page table in memory grants now: the IOVA page, or ulong.MaxValue when it grants nothing.
    // Today's rules are lenient: the root needs only VALID, a level-2 LEAF is a 2 MiB leaf whatever
    // CAPS.HUGE_2M says, and a LEAF bit at level 0 or 1 is ignored.
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
