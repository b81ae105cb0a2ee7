using System.Diagnostics;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>Which clock drives CYCLES and modelled costs (spec 7).</summary>
public enum ClockMode
{
    /// <summary>CYCLES follows the host's monotonic clock; every modelled cost takes its real time.</summary>
    Wall,

    /// <summary>CYCLES advances only by modelled costs; runs are reproducible for a seed and command stream.</summary>
    Virtual,
}

/// <summary>
/// The model's cycle clock. <see cref="Now"/> is CYCLES; <see cref="Spend"/> charges a modelled cost.
/// Both are safe to call from any thread and never go backwards between resets (for the calling thread).
/// </summary>
/// <remarks>
/// Virtual clock (decision D34): two kinds of time. Device time is what the engines publish
/// (<see cref="AdvanceTo"/>: a completion, a fault's interrupt), the same whoever watches. Host time is per
/// host thread: what that thread has spent on register reads (<see cref="Spend"/> from a register read),
/// each thread's own; a thread sees CYCLES as the later of the two. So polling threads (an adaptive fault
/// service, a poll-mode completion thread, a fence wait) advance only their own view: the number of reads a
/// host thread happened to make while others worked cannot move another thread's doorbell, and a device
/// timestamp depends only on the modelled costs, the command stream and each submitting thread's own reads.
/// A thread still sees time pass while it polls (an invalidation's cost, a reset), and sees CYCLES at or
/// after the end of any completion it has seen.
/// </remarks>
internal abstract class ModelClock
{
    /// <summary>A clock ticking at <paramref name="hz"/>.</summary>
    protected ModelClock(ulong hz) => Hz = hz;

    /// <summary>Fabric clock frequency.</summary>
    public ulong Hz { get; }

    /// <summary>Cycles since the last <see cref="Restart"/>.</summary>
    public abstract ulong Now { get; }

    /// <summary>Which clock this is.</summary>
    public abstract ClockMode Mode { get; }

    /// <summary>A new clock of the <paramref name="mode"/> asked for, at CYCLES 0.</summary>
    public static ModelClock Create(ClockMode mode, ulong hz = Fa1Timing.ClockHz) =>
        mode == ClockMode.Wall ? new WallClock(hz) : new VirtualClock(hz);

    /// <summary>
    /// Charges <paramref name="cycles"/> of modelled work to the calling thread: on the wall
    /// clock the thread waits that long, on the virtual clock the counter advances by it.
    /// </summary>
    public abstract void Spend(ulong cycles);

    /// <summary>Restarts CYCLES from zero (device reset).</summary>
    public abstract void Restart();

    /// <summary>
    /// Virtual clock: moves CYCLES forward to at least <paramref name="cycle"/> (never back), so work an
    /// engine timed on its own timeline shows in CYCLES once it is visible. Wall clock: nothing to do,
    /// the work took its real time.
    /// </summary>
    internal abstract void AdvanceTo(ulong cycle);

    /// <summary>Converts cycles to wall time at <see cref="Hz"/>.</summary>
    public TimeSpan ToTime(ulong cycles) => TimeSpan.FromTicks((long)((UInt128)cycles * TimeSpan.TicksPerSecond / Hz));

    private sealed class WallClock : ModelClock
    {
        private long _origin = Stopwatch.GetTimestamp();

        public WallClock(ulong hz)
            : base(hz)
        {
        }

        public override ClockMode Mode => ClockMode.Wall;

        public override ulong Now
        {
            get
            {
                var elapsed = Stopwatch.GetTimestamp() - Volatile.Read(ref _origin);
                return elapsed <= 0 ? 0 : (ulong)((UInt128)(ulong)elapsed * Hz / (ulong)Stopwatch.Frequency);
            }
        }

        public override void Spend(ulong cycles)
        {
            if (cycles == 0)
            {
                return;
            }

            var deadline = Stopwatch.GetTimestamp() + (long)((UInt128)cycles * (ulong)Stopwatch.Frequency / Hz);
            var spin = default(SpinWait);
            while (true)
            {
                var remaining = deadline - Stopwatch.GetTimestamp();
                if (remaining <= 0)
                {
                    return;
                }

                // Sleep through long waits (the scheduler is good to about a millisecond);
                // spin the last stretch so short modelled costs stay short.
                if (remaining > Stopwatch.Frequency / 500)
                {
                    Thread.Sleep(TimeSpan.FromTicks(remaining * TimeSpan.TicksPerSecond / Stopwatch.Frequency / 2));
                }
                else
                {
                    spin.SpinOnce(sleep1Threshold: -1);
                }
            }
        }

        public override void Restart() => Volatile.Write(ref _origin, Stopwatch.GetTimestamp());

        internal override void AdvanceTo(ulong cycle)
        {
        }
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The per-thread slots are reclaimed by ThreadLocal's finalizer; the clock lives as long as its model and has no other resource.")]
    private sealed class VirtualClock : ModelClock
    {
        // Each host thread's own time (the class remarks); allocated once per thread that touches the clock.
        private readonly ThreadLocal<HostCursor> _host = new(() => new HostCursor());
        private long _device;
        private long _restarts;

        public VirtualClock(ulong hz)
            : base(hz)
        {
        }

        public override ClockMode Mode => ClockMode.Virtual;

        public override ulong Now => Math.Max(HostTime(_host.Value!), (ulong)Interlocked.Read(ref _device));

        // Charged to the calling host thread only: its view moves on, nobody else's does.
        public override void Spend(ulong cycles)
        {
            var host = _host.Value!;
            var now = Math.Max(HostTime(host), (ulong)Interlocked.Read(ref _device));
            host.Restart = Interlocked.Read(ref _restarts);
            host.Cycles = now + cycles;
        }

        // Device time back to 0, and every thread's host time with it (each thread notices the new restart
        // count on its next touch: a cursor from before the restart counts as 0).
        public override void Restart()
        {
            Interlocked.Exchange(ref _device, 0);
            Interlocked.Increment(ref _restarts);
        }

        // Invariant: _device never decreases between restarts. A compare-exchange loop raises it to
        // the maximum of its value and the argument, so concurrent publishers all hold.
        internal override void AdvanceTo(ulong cycle)
        {
            var current = Interlocked.Read(ref _device);
            while ((ulong)current < cycle)
            {
                var seen = Interlocked.CompareExchange(ref _device, (long)cycle, current);
                if (seen == current)
                {
                    return;
                }

                current = seen;
            }
        }

        private ulong HostTime(HostCursor host) => host.Restart == Interlocked.Read(ref _restarts) ? host.Cycles : 0;

        // One thread's host time; touched only by its own thread.
        private sealed class HostCursor
        {
            public long Restart;
            public ulong Cycles;
        }
    }
}
