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
/// </remarks>
internal sealed class OnDemandPager
{
    /// <summary>The smallest budget: a stalled COPY needs its source and its destination page present at once.</summary>
    public const int MinimumBudget = 2;

    /// <summary>At most this many stalled accesses per queue are protected (the model runs 4 commands of a queue at once, D35).</summary>
    public const int MaxProtectedAccesses = 8;

    private readonly Lock _lock = new();
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

    /// <summary>A pager for <paramref name="queues"/> queues; <paramref name="inFlight"/> says how many commands queue q has in flight (-1 when it is not open).</summary>
    public OnDemandPager(int budgetPages, int queues = 1, Func<int, int>? inFlight = null)
    {
        _budget = budgetPages;
        (_contexts, _pages, _queues, _stamps) = NewFifo(budgetPages);
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

    /// <summary>The least budget that lets <paramref name="openQueues"/> queues each hold a stalled COPY's two pages.</summary>
    public static int MinimumBudgetFor(int openQueues) => MinimumBudget * Math.Max(1, openQueues);

    /// <summary>Changes the budget; pages above a smaller one are evicted by the next faults.</summary>
    public void SetBudget(int pages)
    {
        lock (_lock)
        {
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
    /// Takes a place for one page a fault of <paramref name="queue"/> needs, evicting the least recently faulted page
    /// no stalled access needs when the budget is full.
    /// </summary>
    public void Reserve(int queue)
    {
        var putBack = 0L;
        while (true)
        {
            DeviceContext? victim;
            ulong page;
            lock (_lock)
            {
                if (_count < _budget || _head == _tail)
                {
                    // Under budget, or every place is held by a fault still installing: take one.
                    _count++;
                    return;
                }

                (victim, page, var owner, var stamp) = PopOldest();
                if (victim is not null && IsProtected(owner, stamp, queue))
                {
                    Append(victim, page, owner, stamp);
                    if (++putBack > _tail - _head)
                    {
                        // Every present page is protected (the bound of the remarks did not hold): go over the budget.
                        _count++;
                        Interlocked.Increment(ref _overBudget);
                        return;
                    }

                    continue;
                }
            }

            // Outside the lock: eviction waits for a fence. A successful eviction hands its place over.
            ScheduleHooks.At(SchedulePoint.EvictionChosen);
            if (victim is not null && victim.Evict(page))
            {
                Interlocked.Increment(ref _evictions);
                return;
            }
        }
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

    /// <summary>Gives a place back for a page released without eviction.</summary>
    public void Forget()
    {
        lock (_lock)
        {
            _count--;
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
