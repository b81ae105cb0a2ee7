namespace FpgaAccel.Tests.Support;

/// <summary>
/// A clock that moves only when told: <see cref="Advance"/> moves it and fires, on the caller's thread, every timer
/// that falls due. For models that take a <see cref="TimeProvider"/> (the BMC's reset delay, its log's timestamps).
/// </summary>
internal sealed class ManualTimeProvider : TimeProvider
{
    private readonly Lock _lock = new();
    private readonly List<ManualTimer> _timers = [];
    private long _ticks;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp()
    {
        lock (_lock)
        {
            return _ticks;
        }
    }

    public override DateTimeOffset GetUtcNow() => new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero).AddTicks(GetTimestamp());

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new ManualTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    /// <summary>Moves the clock by <paramref name="by"/>, firing each timer due on the way (outside the clock's lock).</summary>
    public void Advance(TimeSpan by)
    {
        long now;
        lock (_lock)
        {
            _ticks += by.Ticks;
            now = _ticks;
        }

        while (true)
        {
            ManualTimer? due;
            lock (_lock)
            {
                due = _timers.Where(t => t.DueAt <= now).OrderBy(t => t.DueAt).FirstOrDefault();
                if (due is null)
                {
                    return;
                }

                due.Rearm();
            }

            due.Fire();
        }
    }

    private sealed class ManualTimer(ManualTimeProvider clock, TimerCallback callback, object? state) : ITimer
    {
        private long _period;

        public long DueAt { get; private set; } = long.MaxValue;

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (clock._lock)
            {
                clock._timers.Remove(this);
                _period = period == Timeout.InfiniteTimeSpan ? 0 : period.Ticks;
                if (dueTime != Timeout.InfiniteTimeSpan)
                {
                    DueAt = clock._ticks + dueTime.Ticks;
                    clock._timers.Add(this);
                }
            }

            return true;
        }

        // Under the clock's lock: a one-shot timer leaves the list, a periodic one moves on.
        public void Rearm()
        {
            if (_period > 0)
            {
                DueAt += _period;
            }
            else
            {
                clock._timers.Remove(this);
                DueAt = long.MaxValue;
            }
        }

        public void Fire() => callback(state);

        public void Dispose()
        {
            lock (clock._lock)
            {
                clock._timers.Remove(this);
            }
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
