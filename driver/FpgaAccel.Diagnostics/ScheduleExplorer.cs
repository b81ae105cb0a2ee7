using FpgaAccel.Driver;

namespace FpgaAccel.Diagnostics;

/// <summary>
/// A seeded schedule for one short scenario, in the manner of PCT (probabilistic concurrency testing): the threads of
/// the scenario reach the driver's schedule points (<see cref="ScheduleHooks"/>), and at a few points the seed picks,
/// the thread that reaches it is held back (a yield, a spin, or a short sleep), which changes which thread passes the
/// next points first. The order in which (thread, point) pairs are passed is hashed: two scenarios with the same hash
/// ran the same interleaving of the driver's protocols, so the number of distinct hashes is the number of distinct
/// interleavings exercised.
/// </summary>
/// <remarks>
/// Thread-safe: points are reached from the scenario's threads, the fault service, the interrupt dispatcher and the
/// pollers at once; the order hash is one compare-and-swap chain, so it records the order the points were passed in.
/// Threads are numbered in the order they first reach a point within the scenario, so the hash does not depend on the
/// runtime's thread ids.
/// </remarks>
internal sealed class ScheduleExplorer : IScheduleExplorer
{
    private const ulong FnvPrime = 1099511628211;
    private readonly Dictionary<int, int> _slots = [];
    private readonly Lock _slotLock = new();
    private ulong _seed;
    private long _step;
    private ulong _hash;
    private long _points;
    private int _depth;
    private ulong _changePoints;

    /// <summary>Schedule points reached since the explorer was created.</summary>
    public long PointsReached => Interlocked.Read(ref _points);

    /// <summary>Starts a scenario under <paramref name="seed"/>: a fresh order hash, fresh thread numbers, new change points.</summary>
    public void Begin(int seed)
    {
        lock (_slotLock)
        {
            _slots.Clear();
        }

        _seed = Mix((ulong)(uint)seed);
        _depth = 1 + (int)(_seed % 3); // one to three change points, as PCT's depth
        _changePoints = Mix(_seed);
        Interlocked.Exchange(ref _step, 0);
        Interlocked.Exchange(ref _hash, 14695981039346656037);
    }

    /// <summary>Ends the scenario: the hash of the order its points were passed in.</summary>
    public ulong End() => Interlocked.Read(ref _hash);

    /// <inheritdoc/>
    public void Reached(SchedulePoint point)
    {
        Interlocked.Increment(ref _points);
        if (point == SchedulePoint.HarvestBegun)
        {
            // A poller reaches it on every spin: counted, and now and then yielded, but not hashed, or the number of
            // spins (timing noise, not an interleaving of the protocols) would make every scenario look new.
            if (Interlocked.Read(ref _points) % 64 == 0)
            {
                Thread.Yield();
            }

            return;
        }

        var slot = SlotOf(Environment.CurrentManagedThreadId);
        var step = Interlocked.Increment(ref _step);
        var mark = ((ulong)slot << 8) | (ulong)point;
        ulong before, after;
        do
        {
            before = Interlocked.Read(ref _hash);
            after = (before ^ mark) * FnvPrime;
        }
        while (Interlocked.CompareExchange(ref _hash, after, before) != before);

        // The change points: steps whose mix with the seed falls in a small window, about `depth` of the first 64.
        var roll = Mix(_changePoints ^ (ulong)step);
        if (step <= 64 && roll % 64 < (ulong)_depth)
        {
            switch ((roll >> 8) % 3)
            {
                case 0:
                    Thread.Yield();
                    break;
                case 1:
                    Thread.SpinWait(200 + (int)((roll >> 16) % 2000));
                    break;
                default:
                    Thread.Sleep((int)((roll >> 16) % 2));
                    break;
            }
        }
        else if (roll % 8 == 0)
        {
            // Background noise between the change points: a yield or a short spin.
            if (((roll >> 8) & 1) == 0)
            {
                Thread.Yield();
            }
            else
            {
                Thread.SpinWait(50 + (int)((roll >> 16) % 500));
            }
        }
    }

    private static ulong Mix(ulong x)
    {
        // splitmix64's finalizer: seeds and steps into well-spread bits.
        x += 0x9E3779B97F4A7C15;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB;
        return x ^ (x >> 31);
    }

    private int SlotOf(int threadId)
    {
        lock (_slotLock)
        {
            if (!_slots.TryGetValue(threadId, out var slot))
            {
                slot = _slots.Count;
                _slots[threadId] = slot;
            }

            return slot;
        }
    }
}
