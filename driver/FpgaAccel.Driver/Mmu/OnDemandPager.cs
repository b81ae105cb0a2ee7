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
/// </remarks>
internal sealed class OnDemandPager
{
    /// <summary>The smallest budget: a stalled COPY needs its source and its destination page present at once.</summary>
    public const int MinimumBudget = 2;

    private readonly Lock _lock = new();
    private readonly DeviceContext?[] _contexts;
    private readonly ulong[] _pages;
    private readonly int _budget;
    private long _head;
    private long _tail;
    private int _count;
    private long _evictions;

    public OnDemandPager(int budgetPages)
    {
        _budget = budgetPages;
        var capacity = (2 * budgetPages) + 64;
        _contexts = new DeviceContext?[capacity];
        _pages = new ulong[capacity];
    }

    /// <summary>Pages that may be pinned on demand at once.</summary>
    public int Budget => _budget;

    /// <summary>Pages pinned on demand now (or reserved by faults in progress).</summary>
    public int PinnedPages => Volatile.Read(ref _count);

    /// <summary>Pages evicted to make room.</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>Takes a place for one page, evicting the least recently faulted page when the budget is full.</summary>
    public void Reserve()
    {
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
    /// Evicts the least recently faulted page to give its memory back, for a fault that holds its place already but
    /// could not pin its page under the locked-memory limit. The evicted page's place is released. False when no
    /// page on demand is present to evict.
    /// </summary>
    public bool EvictOne()
    {
        while (true)
        {
            DeviceContext? victim;
            ulong page;
            lock (_lock)
            {
                if (_head == _tail)
                {
                    return false;
                }

                (victim, page) = PopOldest();
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

    /// <summary>Records that <paramref name="page"/> of <paramref name="context"/> was just faulted in.</summary>
    public void Record(DeviceContext context, ulong page)
    {
        DeviceContext? victim = null;
        ulong victimPage = 0;
        lock (_lock)
        {
            if (_tail - _head == _contexts.Length)
            {
                // Full of entries (stale ones included): make room by evicting the oldest.
                (victim, victimPage) = PopOldest();
            }

            var slot = (int)(_tail % _contexts.Length);
            _contexts[slot] = context;
            _pages[slot] = page;
            _tail++;
        }

        if (victim is not null && victim.Evict(victimPage))
        {
            Interlocked.Increment(ref _evictions);
            Forget();
        }
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
