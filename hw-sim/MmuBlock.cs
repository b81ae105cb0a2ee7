using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>What a translation ended in.</summary>
internal enum TranslationStatus
{
    /// <summary>A leaf grants the access; <see cref="Translation.Iova"/> is where it goes.</summary>
    Ok,

    /// <summary>No valid leaf, or a leaf without the permission (spec 4.1).</summary>
    Fault,

    /// <summary>The context is disabled or its root is not VALID (spec 4.2).</summary>
    ContextDisabled,

    /// <summary>The IOMMU refused a page-table read: the device goes FATAL, cause 1 (spec 6).</summary>
    UnmappedTable,
}

/// <summary>The result of translating one DVA, and the cycles it cost (spec 7).</summary>
/// <param name="Status">What happened.</param>
/// <param name="Iova">For <see cref="TranslationStatus.Ok"/> the IOVA of the byte; for UnmappedTable the IOVA refused.</param>
/// <param name="Present">For a fault: a valid leaf existed but lacked the permission (spec 4.4 PRESENT).</param>
/// <param name="Cycles">TLB hit, or one DMA read per level the walk read from memory.</param>
/// <param name="FillEpoch">For Ok: the MMU epoch the translation was read in (the oracle's reference).</param>
/// <param name="Generation">For Ok: the IOMMU generation of the page when the translation was read.</param>
/// <param name="Retired">For Ok from the TLB: a completed invalidation covered the entry after it was filled (the oracle's mark).</param>
internal readonly record struct Translation(TranslationStatus Status, ulong Iova, bool Present, ulong Cycles, long FillEpoch = 0, long Generation = 0, bool Retired = false);

/// <summary>
/// A data access holding its place in the invalidation fence (spec 4.3): taken before the access
/// translates, released after its bytes moved. See <see cref="MmuBlock"/> for the argument.
/// </summary>
internal readonly record struct AccessTicket(MmuBlock.InFlightAccesses Set, long Epoch);

/// <summary>One INV_CMD (spec 4.3) from its issue until INV_DONE counts it.</summary>
/// <param name="Epoch">The MMU epoch it opened.</param>
/// <param name="ReadyAt">Cycle at which its modelled cost has passed.</param>
/// <param name="Context">The context it covers; null for every context.</param>
/// <param name="FirstPage">First DVA page it covers.</param>
/// <param name="EndPage">DVA page past the last one it covers.</param>
internal readonly record struct TlbInvalidation(long Epoch, ulong ReadyAt, int? Context, ulong FirstPage, ulong EndPage)
{
    /// <summary>The invalidation covers DVA page <paramref name="page"/> of <paramref name="context"/>.</summary>
    public bool Covers(int context, ulong page) =>
        (Context is null || Context == context) && page >= FirstPage && page < EndPage;
}

/// <summary>
/// The device MMU (spec 4.1-4.3): per-context registers, translation (the TLB, then a
/// <see cref="PageWalk"/> of the 4-level table in host memory through the platform IOMMU, from the
/// deepest walk-cache hit), TLB invalidation with its fence, and the <see cref="TranslationOracle"/>
/// that checks every data access.
/// </summary>
/// <remarks>
/// <para>Locks: <see cref="_lock"/> guards the TLB, the walk cache, the epoch, the in-flight set, the
/// pending invalidations and the oracle's record of completed ones. It is held only for table look-ups and updates, never across a DMA read or
/// a modelled cost. Lock order: the model's register lock may be held when taking it (INV_CMD,
/// INV_DONE); nothing takes the register lock while holding it.</para>
/// <para>The fence (spec 4.3). Invariant: once INV_DONE counts an invalidation, no entry it dropped is
/// in the TLB or walk cache, no translation read before it was issued can be cached later, and every
/// data access that could have used such a translation has finished. Argument:
/// (1) INV_CMD drops the matching entries and increments <see cref="_epoch"/> in one step under the lock.
/// (2) Every data access takes an <see cref="AccessTicket"/> at the current epoch, under the lock,
/// before it translates, and holds it until its bytes have moved; so an access that could use a
/// dropped entry or a table entry read before the invalidation holds a ticket older than the
/// invalidation's epoch.
/// (3) A walk remembers the epoch at its start and fills the TLB or walk cache only if the epoch is
/// unchanged when it inserts (under the lock): a walk that overlapped an invalidation cannot install
/// what it read before the driver's change became the truth.
/// (4) An invalidation completes (INV_DONE advances) only when no ticket older than its epoch is
/// outstanding and its modelled cost has passed. INV_DONE is evaluated whenever it is read, as
/// the reset is: its only observer is that register, so this equals a worker that counts at the
/// first moment both conditions hold, and the INV_CMD write returns at once. The wait is
/// conservative: it covers every access older than the invalidation, not only those whose
/// translation matched, which a real device may also do (a drain of its DMA pipeline; decision D21).</para>
/// </remarks>
internal sealed class MmuBlock : DeviceBlock
{
    private readonly ModelOptions _options;
    private readonly ModelClock _clock;
    private readonly ModelIommu _iommu;
    private readonly FaultRing _faultRing;
    private readonly Lock _lock = new();
    private readonly ulong[] _roots;
    private readonly ulong[] _controls;
    private readonly long[] _faults;
    private readonly Tlb _tlb;
    private readonly WalkCache _walkCache;
    private readonly Queue<TlbInvalidation> _pending = new();
    private InFlightAccesses _inFlight = new();
    private long _epoch;
    private ulong _invAddr;
    private ulong _invPages;
    private long _invIssued;
    private long _invDone;
    private bool _invalidationsStuck;
    private long _hits;
    private long _misses;
    private long _walks;

    public MmuBlock(ModelOptions options, ModelClock clock, ModelIommu iommu, FaultRing faultRing)
    {
        _options = options;
        _clock = clock;
        _iommu = iommu;
        _faultRing = faultRing;
        _roots = new ulong[options.Contexts];
        _controls = new ulong[options.Contexts];
        _faults = new long[options.Contexts];
        _tlb = new Tlb(options.TlbWays, options.TlbSetsLog2);
        _walkCache = new WalkCache(options.WalkCacheEntries);
        Oracle = new TranslationOracle(this, iommu, _lock, options.Huge2M);
    }

    /// <summary>Invalidations issued since reset (INV_CMD writes).</summary>
    public long InvalidationsIssued => Interlocked.Read(ref _invIssued);

    /// <summary>The test oracle every data access is checked by (it shares this MMU's lock and walk).</summary>
    public TranslationOracle Oracle { get; }

    /// <summary>Valid TLB entries now (diagnostics).</summary>
    public int TlbEntries
    {
        get
        {
            lock (_lock)
            {
                return _tlb.Count;
            }
        }
    }

    public override void Declare(RegisterTable table)
    {
        for (var ctx = 0; ctx < _options.Contexts; ctx++)
        {
            var c = ctx;
            Declare(table, Fa1Registers.Context(c, Fa1Registers.CtxRoot), $"CTX_ROOT[{c}]", RegisterAccess.ReadWrite,
                read: () => Volatile.Read(ref _roots[c]), write: v => Volatile.Write(ref _roots[c], v),
                mask: ContextRoot.ImplementedBits); // spec 4.2: table IOVA 4 KiB aligned, [0] VALID
            Declare(table, Fa1Registers.Context(c, Fa1Registers.CtxCtrl), $"CTX_CTRL[{c}]", RegisterAccess.ReadWrite,
                read: () => Volatile.Read(ref _controls[c]), write: v => Volatile.Write(ref _controls[c], v),
                mask: (ulong)(ContextControl.Enable | ContextControl.NoFault));
            Declare(table, Fa1Registers.Context(c, Fa1Registers.CtxFaults), $"CTX_FAULTS[{c}]", RegisterAccess.ReadOnly,
                read: () => (ulong)Interlocked.Read(ref _faults[c]));
        }

        Declare(table, Fa1Registers.InvAddr, "INV_ADDR", RegisterAccess.ReadWrite,
            read: () => _invAddr, write: v => _invAddr = v, mask: ~(PageTableFormat.PageSize - 1));
        Declare(table, Fa1Registers.InvPages, "INV_PAGES", RegisterAccess.ReadWrite, read: () => _invPages, write: v => _invPages = v);
        Declare(table, Fa1Registers.InvCmd, "INV_CMD", RegisterAccess.WriteOnly, write: Invalidate);
        Declare(table, Fa1Registers.InvDone, "INV_DONE", RegisterAccess.ReadOnly, read: ReadInvalidationsDone);
        Declare(table, Fa1Registers.TlbHits, "TLB_HITS", RegisterAccess.ReadOnly, read: () => (ulong)Interlocked.Read(ref _hits));
        Declare(table, Fa1Registers.TlbMisses, "TLB_MISSES", RegisterAccess.ReadOnly, read: () => (ulong)Interlocked.Read(ref _misses));
        Declare(table, Fa1Registers.Walks, "WALKS", RegisterAccess.ReadOnly, read: () => (ulong)Interlocked.Read(ref _walks));
    }

    // Spec 3: a reset clears TLB, walk cache, contexts and counters. Tickets of accesses still
    // running in engines being stopped belong to the old in-flight set and no longer hold anything.
    public override void Reset()
    {
        lock (_lock)
        {
            _tlb.Clear();
            _walkCache.Clear();
            _pending.Clear();
            _invalidationsStuck = false;
            _inFlight = new InFlightAccesses();
            _epoch++;
            _invAddr = 0;
            _invPages = 0;
            Interlocked.Exchange(ref _invIssued, 0);
            Interlocked.Exchange(ref _invDone, 0);
            Interlocked.Exchange(ref _hits, 0);
            Interlocked.Exchange(ref _misses, 0);
            Interlocked.Exchange(ref _walks, 0);
            for (var c = 0; c < _options.Contexts; c++)
            {
                Volatile.Write(ref _roots[c], 0);
                Volatile.Write(ref _controls[c], 0);
                Interlocked.Exchange(ref _faults[c], 0);
            }
        }
    }

    /// <summary>Copies the TLB and walk cache for the oracle's audit.</summary>
    public void SnapshotCaches(List<TlbEntryView> leaves, List<WalkCacheEntryView> tables)
    {
        lock (_lock)
        {
            _tlb.Snapshot(leaves);
            _walkCache.Snapshot(tables);
        }
    }

    /// <summary>MMU lock held: the oracle judged the DROPIN entry for (context, page).</summary>
    public void ClearUnverifiedDropinLocked(byte context, ulong page) => _tlb.ClearUnverifiedDropin(context, page);

    /// <summary>Spec 4.2: a command may use <paramref name="context"/> only if it is enabled and its root VALID.</summary>
    /// <remarks>Decision D20: read when a command starts and when a walk begins at the root; writing the
    /// context registers drops no cached translation (that takes an invalidation, spec 4.1).</remarks>
    public bool IsContextUsable(int context) =>
        (Volatile.Read(ref _controls[context]) & (ulong)ContextControl.Enable) != 0
        && new ContextRoot(Volatile.Read(ref _roots[context])).Valid;

    /// <summary>CTX_ROOT of <paramref name="context"/>.</summary>
    public ContextRoot Root(int context) => new(Volatile.Read(ref _roots[context]));

    /// <summary>CTX_CTRL.NOFAULT of <paramref name="context"/>.</summary>
    public bool IsNoFault(int context) => (Volatile.Read(ref _controls[context]) & (ulong)ContextControl.NoFault) != 0;

    /// <summary>Counts a fault raised in <paramref name="context"/> (CTX_FAULTS).</summary>
    public void CountFault(int context) => Interlocked.Increment(ref _faults[context]);

    /// <summary>Takes a ticket before a data access translates (the fence, see the class remarks).</summary>
    public AccessTicket BeginAccess()
    {
        lock (_lock)
        {
            _inFlight.Add(_epoch);
            return new AccessTicket(_inFlight, _epoch);
        }
    }

    /// <summary>Releases a ticket once the access's bytes have moved.</summary>
    public void EndAccess(AccessTicket ticket)
    {
        lock (_lock)
        {
            ticket.Set.Remove(ticket.Epoch);
        }
    }

    /// <summary>
    /// Translates <paramref name="dva"/> of <paramref name="context"/> for a read or a write: TLB, then
    /// a walk from the deepest walk-cache hit, one 8-byte DMA read per level (spec 4.1, 7).
    /// Call between <see cref="BeginAccess"/> and <see cref="EndAccess"/>.
    /// </summary>
    public Translation Translate(int context, ulong dva, bool write)
    {
        var ctx = (byte)context;
        var page = dva >> PageTableFormat.PageShift;
        var offset = dva & (PageTableFormat.PageSize - 1);
        long walkEpoch;
        var startLevel = 0;
        var table = 0UL;
        lock (_lock)
        {
            if (_tlb.TryLookup(ctx, page, out var hit))
            {
                if (PageWalk.Permits(new PageTableEntry(hit.Leaf), write))
                {
                    Interlocked.Increment(ref _hits);
                    return new Translation(TranslationStatus.Ok, hit.PageIova + offset, false, _options.TlbHitCycles, hit.FillEpoch, hit.Generation, hit.Retired);
                }

                // Spec 4.1: adding a permission needs no invalidation, so a cached leaf that lacks the
                // permission is not trusted: it is dropped and the table walked (the fault, if any,
                // comes from what the table says now). Counted as a miss.
                _tlb.Invalidate(ctx, page, page + 1);
            }

            Interlocked.Increment(ref _misses);
            Interlocked.Increment(ref _walks);
            walkEpoch = _epoch;
            for (var level = PageTableFormat.HugeLeafLevel; level >= 0; level--)
            {
                if (_walkCache.TryGet(ctx, level, dva, out var cached))
                {
                    startLevel = level + 1;
                    table = new PageTableEntry(cached).Address;
                    break;
                }
            }
        }

        if (startLevel == 0)
        {
            var root = Root(context);
            if (!root.Valid || !IsContextUsable(context))
            {
                return new Translation(TranslationStatus.ContextDisabled, 0, false, 0);
            }

            table = root.TableIova;
        }

        var reader = new DeviceReader(this, ctx, dva, walkEpoch);
        var walk = PageWalk.Walk(ref reader, table, startLevel, dva, new LeafRules(_options.Huge2M, UpperLeafIsMalformed: true));
        var cycles = (ulong)walk.EntriesRead * _options.DmaReadCycles;
        switch (walk.Status)
        {
            case WalkStatus.Unreadable:
                return new Translation(TranslationStatus.UnmappedTable, walk.Iova, false, cycles);
            case WalkStatus.NotPresent:
                // Never cached (spec 4.1, D11).
                return new Translation(TranslationStatus.Fault, 0, false, cycles);
        }

        var pageIova = walk.Iova;
        var generation = _iommu.TryPeek(pageIova, out var target) ? target.Generation : 0;
        lock (_lock)
        {
            if (_epoch == walkEpoch)
            {
                Oracle.Evicted(_tlb.Insert(ctx, page, new TlbTranslation(walk.Leaf.Raw, pageIova, walkEpoch, generation), walk.Huge));
            }
        }

        return PageWalk.Permits(walk.Leaf, write)
            ? new Translation(TranslationStatus.Ok, pageIova + offset, false, cycles, walkEpoch, generation)
            : new Translation(TranslationStatus.Fault, 0, true, cycles);
    }

    // A walk cache entry read by a walk that overlapped an invalidation is not kept (class remarks, (3)).
    private void CacheTableEntry(byte context, int level, ulong dva, ulong raw, long walkEpoch)
    {
        lock (_lock)
        {
            if (_epoch == walkEpoch)
            {
                _walkCache.Insert(context, level, dva, raw);
            }
        }
    }

    // spec 4.1: the device reads an entry with one 8-byte DMA read, through the platform IOMMU (spec 6).
    private unsafe bool TryReadEntry(ulong entryIova, out ulong raw)
    {
        using var scope = _iommu.BeginDeviceAccess();
        if (!_iommu.TryTranslate(entryIova, DmaAccess.DeviceRead, out var host))
        {
            raw = 0;
            return false;
        }

        raw = Volatile.Read(ref *(ulong*)host.Host);
        return true;
    }

    // INV_CMD (spec 4.3), with the register lock held. Drops matching entries and opens a new epoch
    // at once; INV_DONE counts it once the fence's conditions hold (see the class remarks).
    private void Invalidate(ulong raw)
    {
        var command = InvalidationCommand.FromRaw(raw);
        int? context = command.Scope == InvalidationScope.AllContexts ? null : command.Context;
        var firstPage = 0UL;
        var endPage = ulong.MaxValue;
        if (command.Scope == InvalidationScope.Range && _invPages != 0)
        {
            firstPage = _invAddr >> PageTableFormat.PageShift;
            endPage = firstPage + _invPages < firstPage ? ulong.MaxValue : firstPage + _invPages;
        }

        // Decision D13: scope 3 is reserved and invalidates every context, the safe reading;
        // a context number beyond CAPS matches nothing. Either way the invalidation counts in INV_DONE.
        if (command.Scope == InvalidationScope.Reserved)
        {
            context = null;
        }

        // Spec 4.3 (b): kill every fault outstanding now, so a DROPIN racing with this cannot install.
        _faultRing.KillOutstanding();
        lock (_lock)
        {
            _tlb.Invalidate(context, firstPage, endPage);
            _walkCache.Invalidate(context, firstPage, endPage);
            _epoch++;
            _pending.Enqueue(new TlbInvalidation(_epoch, _clock.Now + _options.InvalidationCycles, context, firstPage, endPage));
            Interlocked.Increment(ref _invIssued);
        }
    }

    /// <summary>
    /// Register lock held. Spec 4.4 DROPIN: FAULT_PTE goes into the TLB for (context, DVA page) as a
    /// 4 KiB translation (decision D26: its LEAF bit is ignored; an invalid or malformed FAULT_PTE is
    /// never cached, the access walks instead). The caller has checked the fault was not killed;
    /// the kill bit is set under the register lock too, so check and install are one step.
    /// </summary>
    public void InstallDropin(int context, ulong dva, ulong pte)
    {
        var entry = new PageTableEntry(pte);
        if (!entry.Valid || entry.Malformed)
        {
            return;
        }

        var generation = _iommu.TryPeek(entry.Address, out var target) ? target.Generation : 0;

        // Decision D33: compared with the table as it is now; a DROPIN that grants more is installed all the
        // same (the device cannot know why) and marked for the oracle's verdict.
        var unverified = Oracle.DropinExceedsTable(context, dva, entry);
        lock (_lock)
        {
            var translation = new TlbTranslation(pte, entry.Address, _epoch, generation, UnverifiedDropin: unverified);
            Oracle.Evicted(_tlb.Insert((byte)context, dva >> PageTableFormat.PageShift, translation, huge: false));
        }
    }

    /// <summary>
    /// Fault injection (R6), register lock held: INV_DONE stops advancing; INV_CMD is still accepted (entries are
    /// dropped and outstanding faults killed at issue, as before) but no invalidation completes until reset.
    /// False when already stuck.
    /// </summary>
    public bool StickInvalidations()
    {
        lock (_lock)
        {
            if (_invalidationsStuck)
            {
                return false;
            }

            _invalidationsStuck = true;
            return true;
        }
    }

    private ulong ReadInvalidationsDone()
    {
        lock (_lock)
        {
            if (_invalidationsStuck)
            {
                return (ulong)Interlocked.Read(ref _invDone);
            }

            var now = _clock.Now;
            var oldest = _inFlight.OldestEpoch;
            while (_pending.TryPeek(out var next) && oldest >= next.Epoch && now >= next.ReadyAt)
            {
                _pending.Dequeue();
                Interlocked.Increment(ref _invDone);
                Oracle.InvalidationCompleted(next, _tlb);
            }

            return (ulong)Interlocked.Read(ref _invDone);
        }
    }

    // The MMU's walks read entries with DMA reads through the IOMMU and keep table entries in the walk cache.
    private readonly struct DeviceReader(MmuBlock mmu, byte context, ulong dva, long walkEpoch) : IPageTableReader
    {
        public bool TryRead(ulong entryIova, out ulong raw) => mmu.TryReadEntry(entryIova, out raw);

        public void OnTableEntry(int level, ulong raw) => mmu.CacheTableEntry(context, level, dva, raw, walkEpoch);
    }

    /// <summary>Data accesses in flight, counted by the epoch their ticket was taken in. Guarded by the MMU lock.</summary>
    internal sealed class InFlightAccesses
    {
        private readonly Dictionary<long, int> _byEpoch = [];

        /// <summary>The oldest epoch with an access in flight; long.MaxValue when none.</summary>
        public long OldestEpoch
        {
            get
            {
                var oldest = long.MaxValue;
                foreach (var epoch in _byEpoch.Keys)
                {
                    oldest = Math.Min(oldest, epoch);
                }

                return oldest;
            }
        }

        public void Add(long epoch) => _byEpoch[epoch] = _byEpoch.GetValueOrDefault(epoch) + 1;

        public void Remove(long epoch)
        {
            var count = _byEpoch.GetValueOrDefault(epoch) - 1;
            if (count <= 0)
            {
                _byEpoch.Remove(epoch);
            }
            else
            {
                _byEpoch[epoch] = count;
            }
        }
    }
}
