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
/// Both are safe to call from any thread and never go backwards between resets.
/// </summary>
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

    private sealed class VirtualClock : ModelClock
    {
        private long _cycles;

        public VirtualClock(ulong hz)
            : base(hz)
        {
        }

        public override ClockMode Mode => ClockMode.Virtual;

        public override ulong Now => (ulong)Interlocked.Read(ref _cycles);

        public override void Spend(ulong cycles) => Interlocked.Add(ref _cycles, (long)cycles);

        public override void Restart() => Interlocked.Exchange(ref _cycles, 0);

        // Invariant: _cycles never decreases between restarts. A compare-exchange loop raises it to
        // the maximum of its value and the argument, so concurrent Spend and AdvanceTo both hold.
        internal override void AdvanceTo(ulong cycle)
        {
            var current = Interlocked.Read(ref _cycles);
            while ((ulong)current < cycle)
            {
                var seen = Interlocked.CompareExchange(ref _cycles, (long)cycle, current);
                if (seen == current)
                {
                    return;
                }

                current = seen;
            }
        }
    }
}
