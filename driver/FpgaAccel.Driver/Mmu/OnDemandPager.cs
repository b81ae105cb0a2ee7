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
/// destination), and a queue has one stalled access at a time (the device runs a queue's commands one after another,
/// page by page), so the two pages a queue faulted in last are the ones its stalled access may need. A fault of queue q
/// never evicts q's latest page (the other side of its own access), nor another queue's two latest. Claim: with a budget
/// of at least two pages per open queue (<see cref="MinimumBudgetFor"/>, enforced where queues open), eviction always
/// finds a victim, and no access loses a page it needs to another queue's fault before it has restarted. Argument:
/// at most 2(Q - 1) + 1 &lt; 2Q &lt;= budget present pages are protected, so when the budget is full an unprotected
/// present page is in the FIFO; protected entries met on the way are put back at the young end (they are among the
/// youngest anyway). Should the bound ever not hold (queues closed and opened between faults), the fault takes a place
/// over the budget rather than wait (<see cref="OverBudget"/> counts it). A queue that closes drops its protection.
/// </remarks>
internal sealed class OnDemandPager
{
    /// <summary>The smallest budget: a stalled COPY needs its source and its destination page present at once.</summary>
    public const int MinimumBudget = 2;

    private readonly Lock _lock = new();
    private readonly DeviceContext?[] _latestContext;
    private readonly ulong[] _latestPage;
    private DeviceContext?[] _contexts;
    private ulong[] _pages;
    private int _budget;
    private long _head;
    private long _tail;
    private int _count;
    private long _evictions;
    private long _overBudget;

    public OnDemandPager(int budgetPages, int queues = 1)
    {
        _budget = budgetPages;
        (_contexts, _pages) = NewFifo(budgetPages);
        _latestContext = new DeviceContext?[2 * Math.Max(1, queues)];
        _latestPage = new ulong[2 * Math.Max(1, queues)];
    }

    /// <summary>Pages that may be pinned on demand at once.</summary>
    public int Budget => Volatile.Read(ref _budget);

    /// <summary>Pages pinned on demand now (or reserved by faults in progress).</summary>
    public int PinnedPages => Volatile.Read(ref _count);

    /// <summary>Pages evicted to make room.</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>Faults that took a place over the budget because every present page was protected (see the remarks): 0 normally.</summary>
    public long OverBudget => Interlocked.Read(ref _overBudget);

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
                var (contexts, fifoPages) = NewFifo(pages);
                var n = 0;
                for (var i = _head; i < _tail && n < contexts.Length; i++, n++)
                {
                    var slot = (int)(i % _contexts.Length);
                    contexts[n] = _contexts[slot];
                    fifoPages[n] = _pages[slot];
                }

                (_contexts, _pages, _head, _tail) = (contexts, fifoPages, 0, n);
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

                (victim, page) = PopOldest();
                if (victim is not null && IsProtected(victim, page, queue))
                {
                    Append(victim, page);
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

                (victim, page) = PopOldest();
                if (victim is not null && IsProtected(victim, page, queue))
                {
                    Append(victim, page);
                    continue;
                }
            }

            if (victim is not null && victim.Evict(page))
            {
                Interlocked.Increment(ref _evictions);
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
            if ((uint)queue < (uint)(_latestPage.Length / 2))
            {
                _latestContext[(2 * queue) + 1] = _latestContext[2 * queue];
                _latestPage[(2 * queue) + 1] = _latestPage[2 * queue];
                _latestContext[2 * queue] = context;
                _latestPage[2 * queue] = page;
            }

            // Full of entries (stale ones included): make room by evicting the oldest one nobody needs.
            var turns = _tail - _head;
            while (_tail - _head == _contexts.Length && turns-- > 0)
            {
                (victim, victimPage) = PopOldest();
                if (victim is not null && IsProtected(victim, victimPage, -1))
                {
                    Append(victim, victimPage);
                    victim = null;
                    continue;
                }

                break;
            }

            if (_tail - _head < _contexts.Length)
            {
                Append(context, page);
            }
        }

        if (victim is not null && victim.Evict(victimPage))
        {
            Interlocked.Increment(ref _evictions);
            Forget();
        }
    }

    /// <summary>A queue closed: its stalled access is gone, and so is its protection.</summary>
    public void ForgetQueue(int queue)
    {
        lock (_lock)
        {
            if ((uint)queue < (uint)(_latestPage.Length / 2))
            {
                _latestContext[2 * queue] = _latestContext[(2 * queue) + 1] = null;
            }
        }
    }

    private static (DeviceContext?[] Contexts, ulong[] Pages) NewFifo(int budget)
    {
        var capacity = (2 * budget) + 64;
        return (new DeviceContext?[capacity], new ulong[capacity]);
    }

    // Lock held. Protected: a queue's two latest pages, except the second latest of the queue now faulting (remarks).
    private bool IsProtected(DeviceContext context, ulong page, int faultingQueue)
    {
        for (var i = 0; i < _latestPage.Length; i++)
        {
            if (ReferenceEquals(_latestContext[i], context) && _latestPage[i] == page && !(i == (2 * faultingQueue) + 1))
            {
                return true;
            }
        }

        return false;
    }

    private void Append(DeviceContext context, ulong page)
    {
        var slot = (int)(_tail % _contexts.Length);
        _contexts[slot] = context;
        _pages[slot] = page;
        _tail++;
    }

    private (DeviceContext? Context, ulong Page) PopOldest()
    {
        var slot = (int)(_head % _contexts.Length);
        var entry = (_contexts[slot], _pages[slot]);
        _contexts[slot] = null;
        _head++;
        return entry;
    }
}
