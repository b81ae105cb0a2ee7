namespace FpgaAccel.HwSim;

/// <summary>
/// Where one queue engine's modelled time comes from (spec 7).
/// </summary>
/// <remarks>
/// Wall clock: every cost is spent in real time on the engine's thread and timestamps are CYCLES,
/// so queues overlap in time exactly as their threads do.
/// Virtual clock (decision D24): each engine keeps its own timeline (a cursor in cycles). A command starts at the
/// later of the cursor and the CYCLES value of the doorbell that submitted it, as the ringing thread saw it
/// (device time, or that thread's own register reads if later: decision D34); its costs advance
/// the cursor only. When a completion is posted the cursor is published into CYCLES (never moving
/// it back). So queues run side by side in modelled time (two queues each doing 1 ms of work take
/// 1 ms, not 2), a queue's timestamps depend only on its own command stream and doorbell times, and
/// a driver that waits for a completion sees CYCLES at or after its end cycle. What this does not
/// model: queues sharing the device's data bandwidth (each queue gets the full 32 bytes/cycle).
/// Used by one engine thread only.
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

    /// <summary>A command begins; it cannot start before the doorbell that submitted it.</summary>
    public void BeginCommand(ulong doorbellCycle)
    {
        if (_virtual)
        {
            _cursor = Math.Max(_cursor, doorbellCycle);
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
