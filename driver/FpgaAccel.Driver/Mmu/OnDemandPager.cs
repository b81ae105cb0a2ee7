namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// The budget of pages pinned on demand, device-wide, and the order they were faulted in. When the
/// budget is full, a new fault first evicts the least recently faulted page (clear, invalidate, fence,
/// unpin), which is what makes on-demand latency jitter.
/// </summary>
/// <remarks>
/// Invariant: <see cref="_count"/> = pages reserved by a fault in progress + pages present on demand.
/// Reserve increments it (or transfers an evicted page's place); Forget decrements it when a page goes
/// without eviction (unregistered, disposed, or an install that backed off). The FIFO can hold stale
/// entries (pages unregistered meanwhile); eviction skips them. The FIFO is a preallocated ring, so
/// the fault path allocates nothing; it is sized to hold every present page plus stale ones, and a
/// full ring is drained by evicting from its oldest end.
///
/// Progress (issue 11, defect 12). A stalled access needs at most two pages at once (COPY: its source and its
/// destination), and each command has at most one access stalled (the device moves a command's data page by page);
/// a queue may run several commands at once (spec 5 without FENCE; decision D35), at most as many as it has in flight.
/// So the pages a stalled access of queue q needs are among the last 2k pages q faulted in, k = q's commands in flight
/// (capped at <see cref="MaxProtectedAccesses"/>): those pages are protected (each entry carries its queue and that
/// queue's fault count when it was faulted in). For the queue now faulting, the window is one page shorter: the page it
/// is faulting in now is the other one of its pair. Claim: no fault evicts a page a stalled access still needs, and
/// every fault gets a place. Argument: with one command in flight per open queue, at most 2(Q - 1) + 1 &lt; 2Q pages are
/// protected, and the budget holds at least 2Q (<see cref="MinimumBudgetFor"/>, enforced where queues open), so when it
/// is full an unprotected present page is in the FIFO (protected entries met on the way are put back at the young end:
/// they are among the youngest anyway); with more commands in flight than the budget can hold pairs for, the fault takes
/// a place over the budget rather than evict a needed page or wait (<see cref="OverBudget"/> counts it), which bounds
/// the excess by two pages per command in flight. A queue that closes drops its protection.
///
/// Batched reclaim between watermarks (issue 15, decision F3), after the kernel's kswapd: when the pages present pass
/// the high watermark, the least recently faulted unprotected pages are evicted down to the low watermark in one batch:
/// every page cleared under its context's lock, one range invalidation per context, one fence wait for all of them (the
/// fences are ordered, so the last one covers the rest: <see cref="TlbInvalidator"/>), then every page unpinned. The
/// fault service runs this after it has answered a drained batch of records (<see cref="ReclaimAboveHighWatermark"/>),
/// so no fault waits for an eviction fence in steady state; a fault that finds the budget full all the same (the
/// service had no time to reclaim, or a prefetch filled it) reclaims the same batch on its own path (direct reclaim).
/// Batches run one at a time (<see cref="_reclaimLock"/>), so two reclaimers never choose victims from the same count.
/// Lock order: <see cref="_reclaimLock"/>, then a context lock, then <see cref="_lock"/>; nothing waits for a fence
/// under <see cref="_lock"/>, and no context lock is held when <see cref="_reclaimLock"/> is taken.
/// </remarks>
internal sealed class OnDemandPager
{
    /// <summary>The smallest budget: a stalled COPY needs its source and its destination page present at once.</summary>
    public const int MinimumBudget = 2;

    /// <summary>At most this many stalled accesses per queue are protected (the model runs 4 commands of a queue at once, D35).</summary>
    public const int MaxProtectedAccesses = 8;

    private readonly Lock _lock = new();
    private readonly Lock _reclaimLock = new();
    private readonly Func<int, int> _inFlight;
    private readonly long[] _queueFaults;
    private DeviceContext?[] _contexts;
    private ulong[] _pages;
    private int[] _queues;
    private long[] _stamps;
    private int _budget;
    private long _head;
    private long _tail;
    private int _count;
    private long _evictions;
    private long _overBudget;
    private long _limitEvictions;
    private long _evictionBatches;
    private long _evictionFences;
    private long _directReclaims;

    // One reclaim batch, under _reclaimLock: the victims chosen and the distinct contexts they belong to.
    private DeviceContext?[] _victimContexts;
    private ulong[] _victimPages;
    private readonly DeviceContext?[] _batchContexts = new DeviceContext?[MaxContextsPerBatch];
    private readonly bool[] _batchBegun = new bool[MaxContextsPerBatch];

    /// <summary>Contexts one reclaim batch evicts from at most (the spec's context registers address 128, D1).</summary>
    private const int MaxContextsPerBatch = 128;

    /// <summary>A pager for <paramref name="queues"/> queues; <paramref name="inFlight"/> says how many commands queue q has in flight (-1 when it is not open).</summary>
    public OnDemandPager(int budgetPages, int queues = 1, Func<int, int>? inFlight = null)
    {
        _budget = budgetPages;
        (_contexts, _pages, _queues, _stamps) = NewFifo(budgetPages);
        (_victimContexts, _victimPages) = (new DeviceContext?[budgetPages], new ulong[budgetPages]);
        _queueFaults = new long[Math.Max(1, queues)];
        _inFlight = inFlight ?? (_ => 1);
    }

    /// <summary>Pages that may be pinned on demand at once.</summary>
    public int Budget => Volatile.Read(ref _budget);

    /// <summary>Pages pinned on demand now (or reserved by faults in progress).</summary>
    public int PinnedPages => Volatile.Read(ref _count);

    /// <summary>Pages evicted to make room.</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>Faults that took a place over the budget because every present page was protected (see the remarks): 0 normally.</summary>
    public long OverBudget => Interlocked.Read(ref _overBudget);

    /// <summary>Pages evicted because the locked-memory limit, not the budget, ran out on the fault path.</summary>
    public long LimitEvictions => Interlocked.Read(ref _limitEvictions);

    /// <summary>
    /// Pages present above which the fault service reclaims a batch after answering (decision F3): the budget less an
    /// eighth of it, so a fault-around of up to an eighth of the budget still fits without a fence on its path.
    /// </summary>
    public int HighWatermark => HighFor(Budget);

    /// <summary>Pages present a reclaim batch evicts down to: the budget less a quarter of it (at least one page below the budget).</summary>
    public int LowWatermark => LowFor(Budget);

    /// <summary>Reclaim batches that evicted at least one page.</summary>
    public long EvictionBatches => Interlocked.Read(ref _evictionBatches);

    /// <summary>Fence waits of reclaim batches: one per batch, however many pages and contexts it evicted.</summary>
    public long EvictionFences => Interlocked.Read(ref _evictionFences);

    /// <summary>Reclaim batches run on a fault's or a prefetch's own path because the budget was full (0 in steady state).</summary>
    public long DirectReclaims => Interlocked.Read(ref _directReclaims);

    /// <summary>The least budget that lets <paramref name="openQueues"/> queues each hold a stalled COPY's two pages.</summary>
    public static int MinimumBudgetFor(int openQueues) => MinimumBudget * Math.Max(1, openQueues);

    /// <summary>Changes the budget; pages above a smaller one are evicted by the next faults.</summary>
    public void SetBudget(int pages)
    {
        lock (_reclaimLock)
            lock (_lock)
            {
                if (pages > _victimPages.Length)
                {
                    (_victimContexts, _victimPages) = (new DeviceContext?[pages], new ulong[pages]);
                }

                if (pages > _budget)
                {
                    // A larger FIFO, oldest entries first.
                    var (contexts, fifoPages, queues, stamps) = NewFifo(pages);
                    var n = 0;
                    for (var i = _head; i < _tail && n < contexts.Length; i++, n++)
                    {
                        var slot = (int)(i % _contexts.Length);
                        contexts[n] = _contexts[slot];
                        fifoPages[n] = _pages[slot];
                        queues[n] = _queues[slot];
                        stamps[n] = _stamps[slot];
                    }

                    (_contexts, _pages, _queues, _stamps, _head, _tail) = (contexts, fifoPages, queues, stamps, 0, n);
                }

                Volatile.Write(ref _budget, pages);
            }
    }

    /// <summary>
    /// Takes places for up to <paramref name="wanted"/> pages a fault of <paramref name="queue"/> maps (the faulting page
    /// and its fault-around neighbours) and returns how many it took: always at least one (the faulting page's), more only
    /// as far as the budget has room, so fault-around never evicts. When the budget is full, reclaims a batch down to the
    /// low watermark first (direct reclaim; see the remarks), never evicting a page a stalled access needs.
    /// </summary>
    public int Reserve(int queue, int wanted = 1)
    {
        while (true)
        {
            lock (_lock)
            {
                if (_count < _budget || _head == _tail)
                {
                    // Under budget, or every place is held by a fault still installing: take what fits (at least one).
                    var granted = Math.Clamp(_budget - _count, 1, Math.Max(1, wanted));
                    _count += granted;
                    return granted;
                }
            }

            // Full: one batch down to the low watermark (at least one page below the budget), outside _lock.
            if (ReclaimTo(Math.Min(LowWatermark, Budget - 1), queue, direct: true) == 0)
            {
                lock (_lock)
                {
                    if (_count < _budget)
                    {
                        continue; // a place freed meanwhile (an unregister)
                    }

                    // Every present page is protected (the bound of the remarks did not hold): go over the budget.
                    _count++;
                    Interlocked.Increment(ref _overBudget);
                    return 1;
                }
            }
        }
    }

    /// <summary>
    /// Takes places for <paramref name="wanted"/> pages a prefetch maps, reclaiming batches as needed; returns how many it
    /// took, fewer only when the pages that remain present are all protected (stalled accesses need them).
    /// </summary>
    public int ReserveForPrefetch(int wanted)
    {
        var taken = 0;
        while (taken < wanted)
        {
            lock (_lock)
            {
                var room = Math.Min(_budget - _count, wanted - taken);
                if (room > 0)
                {
                    _count += room;
                    taken += room;
                    continue;
                }
            }

            var target = Math.Max(0, Budget - (wanted - taken));
            if (ReclaimTo(Math.Min(target, LowWatermark), -1, direct: true) == 0)
            {
                lock (_lock)
                {
                    if (_count >= _budget)
                    {
                        return taken;
                    }
                }
            }
        }

        return taken;
    }

    /// <summary>
    /// The fault service's reclaim, after it answered a batch of records: when the pages present pass the high
    /// watermark, evicts a batch down to the low watermark (one invalidation per context, one fence). Returns the pages
    /// evicted.
    /// </summary>
    public int ReclaimAboveHighWatermark()
    {
        var budget = Budget;
        return Volatile.Read(ref _count) > HighFor(budget) ? ReclaimTo(LowFor(budget), -1, direct: false) : 0;
    }

    /// <summary>
    /// Evicts the least recently faulted unprotected page to give its memory back, for a fault of <paramref name="queue"/>
    /// that holds its place already but could not pin its page under the locked-memory limit. The evicted page's place is
    /// released. False when no such page is present.
    /// </summary>
    public bool EvictOne(int queue)
    {
        var visited = 0L;
        while (true)
        {
            DeviceContext? victim;
            ulong page;
            lock (_lock)
            {
                if (_head == _tail || visited++ > _tail - _head)
                {
                    return false;
                }

                (victim, page, var owner, var stamp) = PopOldest();
                if (victim is not null && IsProtected(owner, stamp, queue))
                {
                    Append(victim, page, owner, stamp);
                    continue;
                }
            }

            if (victim is not null && victim.Evict(page))
            {
                Interlocked.Increment(ref _evictions);
                Interlocked.Increment(ref _limitEvictions);
                Forget();
                return true;
            }
        }
    }

    /// <summary>Gives places back for <paramref name="pages"/> pages released without eviction.</summary>
    public void Forget(int pages = 1)
    {
        lock (_lock)
        {
            _count -= pages;
        }
    }

    /// <summary>Records that <paramref name="page"/> of <paramref name="context"/> was just faulted in by <paramref name="queue"/>.</summary>
    public void Record(DeviceContext context, ulong page, int queue)
    {
        DeviceContext? victim = null;
        ulong victimPage = 0;
        lock (_lock)
        {
            var stamp = (uint)queue < (uint)_queueFaults.Length ? ++_queueFaults[queue] : 0;

            // Full of entries (stale ones included): make room by evicting the oldest one nobody needs.
            var turns = _tail - _head;
            while (_tail - _head == _contexts.Length && turns-- > 0)
            {
                (victim, victimPage, var owner, var ownerStamp) = PopOldest();
                if (victim is not null && IsProtected(owner, ownerStamp, -1))
                {
                    Append(victim, victimPage, owner, ownerStamp);
                    victim = null;
                    continue;
                }

                break;
            }

            if (_tail - _head < _contexts.Length)
            {
                Append(context, page, queue, stamp);
            }
        }

        if (victim is not null && victim.Evict(victimPage))
        {
            Interlocked.Increment(ref _evictions);
            Forget();
        }
    }

    /// <summary>A queue closed: its commands are gone, and so is its pages' protection (its fault count moves past them).</summary>
    public void ForgetQueue(int queue)
    {
        lock (_lock)
        {
            if ((uint)queue < (uint)_queueFaults.Length)
            {
                _queueFaults[queue] += 2 * MaxProtectedAccesses;
            }
        }
    }

    private static int HighFor(int budget) => budget - (budget / 8);

    private static int LowFor(int budget) => Math.Min(budget - 1, budget - (budget / 4));

    // Evicts the least recently faulted unprotected pages until at most `target` places are held, as one batch: choose
    // the victims (under _lock), clear them in every context they belong to (under each context's lock), issue one
    // range invalidation per context, wait once for the last fence, then unpin them all. Returns the pages evicted or
    // dropped as stale (entries of pages already gone); 0 when nothing could be evicted.
    private int ReclaimTo(int target, int faultingQueue, bool direct)
    {
        lock (_reclaimLock)
        {
            var n = 0;
            var stale = 0;
            lock (_lock)
            {
                var excess = _count - Math.Max(0, target);
                var visits = _tail - _head;
                while (n < excess && n < _victimPages.Length && visits-- > 0 && _head != _tail)
                {
                    var (victim, page, owner, stamp) = PopOldest();
                    if (victim is null || victim.IsDisposed)
                    {
                        stale++; // its context went (and gave its places back): nothing to evict
                        continue;
                    }

                    if (IsProtected(owner, stamp, faultingQueue))
                    {
                        Append(victim, page, owner, stamp);
                        continue;
                    }

                    _victimContexts[n] = victim;
                    _victimPages[n] = page;
                    n++;
                }
            }

            if (n == 0)
            {
                return stale;
            }

            ScheduleHooks.At(SchedulePoint.EvictionChosen);
            var evicted = EvictVictims(n);
            Interlocked.Add(ref _evictions, evicted);
            if (direct)
            {
                Interlocked.Increment(ref _directReclaims);
            }

            return evicted + stale;
        }
    }

    // _reclaimLock held. Evicts the n victims chosen: HMM's order for several address spaces, here contexts: clear and
    // invalidate in every context first, then wait for the fences once, then unpin. Gives back the place of every page
    // it evicted. Throws (a fence that never came) having ended every removal it began; the pages it cleared then stay
    // pinned (never unpinned without a fence) and keep their places.
    private int EvictVictims(int n)
    {
        var victims = _victimContexts.AsSpan(0, n);
        var pages = _victimPages.AsSpan(0, n);
        var distinct = 0;
        for (var i = 0; i < n; i++)
        {
            var known = false;
            for (var k = 0; k < distinct && !known; k++)
            {
                known = ReferenceEquals(_batchContexts[k], victims[i]);
            }

            if (!known && distinct < MaxContextsPerBatch)
            {
                _batchContexts[distinct++] = victims[i];
            }
        }

        var last = default(InvalidationFence);
        var fenced = false;
        var evicted = 0;
        try
        {
            for (var k = 0; k < distinct; k++)
            {
                _batchBegun[k] = true;
                if (_batchContexts[k]!.BeginEviction(victims, pages) is { } fence && fence.Sequence > last.Sequence)
                {
                    last = fence;
                }
            }

            if (last.Sequence != 0)
            {
                _batchContexts[0]!.WaitForFence(last);
                Interlocked.Increment(ref _evictionFences);
            }

            fenced = true;
        }
        finally
        {
            for (var k = 0; k < distinct; k++)
            {
                if (_batchBegun[k])
                {
                    evicted += _batchContexts[k]!.EndEviction(victims, pages, fenced);
                }

                _batchBegun[k] = false;
                _batchContexts[k] = null;
            }

            victims.Clear();
        }

        if (evicted > 0)
        {
            Interlocked.Increment(ref _evictionBatches);
            lock (_lock)
            {
                _count -= evicted;
            }
        }

        return evicted;
    }

    private static (DeviceContext?[] Contexts, ulong[] Pages, int[] Queues, long[] Stamps) NewFifo(int budget)
    {
        var capacity = (2 * budget) + 64;
        return (new DeviceContext?[capacity], new ulong[capacity], new int[capacity], new long[capacity]);
    }

    // Lock held. Protected: among the last 2k pages its queue faulted in (k its commands in flight), one fewer for the
    // queue now faulting (remarks). Pages from no queue (tests, tools) are never protected.
    private bool IsProtected(int owner, long stamp, int faultingQueue)
    {
        if ((uint)owner >= (uint)_queueFaults.Length || stamp == 0)
        {
            return false;
        }

        var inFlight = _inFlight(owner);
        if (inFlight < 0)
        {
            return false; // the queue is closed
        }

        var window = 2L * Math.Clamp(inFlight, 1, MaxProtectedAccesses) - (owner == faultingQueue ? 1 : 0);
        return _queueFaults[owner] - stamp < window;
    }

    private void Append(DeviceContext context, ulong page, int queue, long stamp)
    {
        var slot = (int)(_tail % _contexts.Length);
        _contexts[slot] = context;
        _pages[slot] = page;
        _queues[slot] = queue;
        _stamps[slot] = stamp;
        _tail++;
    }

    private (DeviceContext? Context, ulong Page, int Queue, long Stamp) PopOldest()
    {
        var slot = (int)(_head % _contexts.Length);
        var entry = (_contexts[slot], _pages[slot], _queues[slot], _stamps[slot]);
        _contexts[slot] = null;
        _head++;
        return entry;
    }
}
