namespace FpgaAccel.HwSim;

/// <summary>
/// Where one queue engine's modelled time comes from (spec 7).
/// </summary>
/// <remarks>
/// Wall clock: every cost is spent in real time on the engine's thread and timestamps are CYCLES,
/// so queues overlap in time exactly as their threads do.
/// Virtual clock (decision D24): each engine lane keeps its own timeline (a cursor in cycles). A command starts
/// where the queue's rules put it (D35: its doorbell's CYCLES as the ringing thread saw it, D34, the previous
/// command's start, the end of the commands it must wait for); its costs advance the cursor only. When a completion is posted the cursor is published into CYCLES (never moving
/// it back). So queues run side by side in modelled time (two queues each doing 1 ms of work take
/// 1 ms, not 2), a queue's timestamps depend only on its own command stream and doorbell times, and
/// a driver that waits for a completion sees CYCLES at or after its end cycle. What this does not
/// model: queues sharing the device's data bandwidth (each queue gets the full 32 bytes/cycle).
/// Used by one engine lane (thread) only.
/// </remarks>
internal sealed class EngineTimeline
{
    private readonly ModelClock _clock;
    private readonly bool _virtual;
    private ulong _cursor;

    public EngineTimeline(ModelClock clock)
    {
        _clock = clock;
        _virtual = clock.Mode == ClockMode.Virtual;
    }

    /// <summary>The engine's present cycle.</summary>
    public ulong Now => _virtual ? _cursor : _clock.Now;

    /// <summary>A command's work begins at <paramref name="cycle"/> (the queue's rules decide it, D35), on this lane's timeline.</summary>
    public void StartAt(ulong cycle)
    {
        if (_virtual)
        {
            _cursor = cycle;
        }
    }

    /// <summary>The command cannot go on before <paramref name="cycle"/> (an earlier command it waits for ended then).</summary>
    public void AtLeast(ulong cycle)
    {
        if (_virtual)
        {
            _cursor = Math.Max(_cursor, cycle);
        }
    }

    /// <summary>Charges <paramref name="cycles"/> of modelled work.</summary>
    public void Spend(ulong cycles)
    {
        if (_virtual)
        {
            _cursor += cycles;
        }
        else
        {
            _clock.Spend(cycles);
        }
    }

    /// <summary>The engine's work up to now became visible to the host: CYCLES reaches it.</summary>
    public void Publish() => _clock.AdvanceTo(Now);
}
