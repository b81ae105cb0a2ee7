using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>How often each injection of <see cref="ModelFaultInjection"/> took effect since the model was built.</summary>
/// <param name="Removals">Times the device left the bus.</param>
/// <param name="Returns">Times it came back (in its power-on state).</param>
/// <param name="EngineStops">Queue engines hung.</param>
/// <param name="LostInterrupts">MSI-X messages lost on the way to the host.</param>
/// <param name="StuckInvalidations">Times INV_DONE was made to stop advancing.</param>
/// <param name="Fatals">Times the device entered FATAL by injection.</param>
/// <param name="SpuriousErrors">ERROR interrupts sent with STATUS.FATAL clear.</param>
/// <param name="Garbage">Garbage records written into a ring (or fault-ring tail jumps).</param>
public sealed record ModelFaultInjectionCounts(
    long Removals, long Returns, long EngineStops, long LostInterrupts, long StuckInvalidations, long Fatals, long SpuriousErrors, long Garbage);

/// <summary>
/// The FA-1 model's fault injection (<see cref="Fa1Model.Inject"/>): what a real device, its link or its board can
/// do to a driver. Each call acts as the device would at that moment and is undone by what undoes it on a real
/// device: CTRL.RESET (or an FLR) for a hang, a stuck fence or FATAL; the return to the bus (a cold reset, spec 1 and
/// spec 8) for everything. Decisions R1-R9 in firmware-iface/DECISIONS.md say what the spec leaves open.
/// </summary>
/// <remarks>
/// Thread-safe: every call takes the model's register lock for its change of device state. The only thread this
/// class ever uses is a timer callback for <see cref="RemoveFromBus"/>'s return; <see cref="Fa1Model.Dispose"/>
/// cancels it and waits (bounded) for a callback already running, so none outlives the model.
/// </remarks>
public sealed class ModelFaultInjection
{
    private static readonly TimeSpan s_timerStopBound = TimeSpan.FromSeconds(10);

    private readonly Fa1Model _model;
    // Serialises removals, returns and the timer's return (see RemoveFromBus). Taken before the register lock, never
    // inside it; an engine thread never takes it (except a test hook calling in, which the joins skip).
    private readonly Lock _busLock = new();
    private ITimer? _returnTimer;
    private long _returnGeneration;
    private bool _disposed;
    private long _removals;
    private long _returns;
    private long _engineStops;
    private long _stuckInvalidations;
    private long _fatals;
    private long _spuriousErrors;
    private long _garbage;

    internal ModelFaultInjection(Fa1Model model) => _model = model;

    /// <summary>What took effect so far (cumulative since the model was built; resets do not clear it).</summary>
    public ModelFaultInjectionCounts Counts => new(
        Interlocked.Read(ref _removals),
        Interlocked.Read(ref _returns),
        Interlocked.Read(ref _engineStops),
        _model.LostInterruptMessages,
        Interlocked.Read(ref _stuckInvalidations),
        Interlocked.Read(ref _fatals),
        Interlocked.Read(ref _spuriousErrors),
        Interlocked.Read(ref _garbage));

    /// <summary>
    /// Surprise removal (spec 2): every read returns all ones (ID too), writes are dropped, the device makes no DMA
    /// and sends no MSI-X. Engine work in flight is lost: it never completes and writes no memory after this returns
    /// (R2, R3). With <paramref name="returnAfter"/> the device comes back after that long (wall clock, a timer) in
    /// its power-on state, as <see cref="ReturnToBus"/> brings it. A removal while already off the bus only
    /// (re)schedules the return.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="returnAfter"/> is negative or longer than a day.</exception>
    public void RemoveFromBus(TimeSpan? returnAfter = null)
    {
        if (returnAfter is { } after && (after < TimeSpan.Zero || after > TimeSpan.FromDays(1)))
        {
            throw new ArgumentOutOfRangeException(
                nameof(returnAfter), after, $"returnAfter {after} is out of range: it must be 0 to 1 day; pass null for a device that stays off the bus until ReturnToBus.");
        }

        // Invariant: removals and returns happen one at a time under the bus lock, each with its generation bump, so
        // a timer of an earlier removal (its generation stale) can never bring a later removal back early.
        lock (_busLock)
        {
            if (_model.DropOffBus())
            {
                Interlocked.Increment(ref _removals);
            }

            var generation = ++_returnGeneration;
            _returnTimer?.Dispose();
            _returnTimer = null;
            if (_disposed || returnAfter is not { } delay)
            {
                return;
            }

            _returnTimer = TimeProvider.System.CreateTimer(_ => ReturnFromTimer(generation), null, delay, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>
    /// The device comes back now, in its power-on state (spec 1: as after a cold reset; R1): registers, contexts,
    /// queues, rings, TLB and counters cleared, ENABLE 0, injected hangs and stuck fences gone, MSI-X vectors
    /// disconnected (the host connects them again). A pending timed return is cancelled. Nothing happens when the
    /// device is on the bus.
    /// </summary>
    public void ReturnToBus()
    {
        lock (_busLock)
        {
            _returnGeneration++;
            _returnTimer?.Dispose();
            _returnTimer = null;
            if (_model.ComeBackOnBus())
            {
                Interlocked.Increment(ref _returns);
            }
        }
    }

    /// <summary>
    /// Queue <paramref name="queue"/>'s engine hangs (R4): it consumes no more descriptors (SQ_HEAD stops), and the
    /// commands it has started move no more data and never complete; doorbells still latch SQ_TAIL. CTRL.RESET (or a
    /// return to the bus) ends it.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="queue"/> is not a queue of this device.</exception>
    public void StopEngine(int queue)
    {
        if (queue < 0 || queue >= _model.Options.Queues)
        {
            throw new ArgumentOutOfRangeException(nameof(queue), queue, $"Queue {queue} does not exist: the model has queues 0..{_model.Options.Queues - 1}.");
        }

        if (_model.HangEngine(queue))
        {
            Interlocked.Increment(ref _engineStops);
        }
    }

    /// <summary>
    /// The next <paramref name="count"/> MSI-X messages (any vector) never reach the host (R5); IRQ_STATUS still
    /// latches their causes, as a lost posted write leaves it. Replaces any count still pending; 0 cancels it.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
    public void LoseInterrupts(int count)
    {
        if (count < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"LoseInterrupts count {count} is negative: pass the number of messages to lose, or 0 to stop losing them.");
        }

        _model.LoseMessages(count);
    }

    /// <summary>INV_DONE stops advancing (R6): invalidations are accepted and never complete, until a reset.</summary>
    public void StickInvalidations()
    {
        if (_model.StickInvalidationFence())
        {
            Interlocked.Increment(ref _stuckInvalidations);
        }
    }

    /// <summary>
    /// The device enters FATAL with ERROR = (<paramref name="cause"/>, <paramref name="detail"/>) through the model's
    /// FATAL path (spec 3, D10): IRQ_STATUS.ERROR latches, MSI-X vector 2 is sent, STATUS.FATAL reads 1, the engines
    /// start nothing and post nothing more. Spec 3's causes: 1 DMA to an unmapped IOVA (detail: the page number,
    /// IOVA >> 12, low 32 bits), 2 bad ring configuration (detail: the register's BAR0 offset, D14), 3 internal. Any
    /// other nonzero value is taken as given (a device that reports a cause the driver does not know). Nothing
    /// happens when the device is off the bus or already FATAL (ERROR keeps its first cause).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="cause"/> is <see cref="FatalCause.None"/>.</exception>
    public void RaiseFatal(FatalCause cause, uint detail)
    {
        if (cause == FatalCause.None)
        {
            throw new ArgumentOutOfRangeException(
                nameof(cause), cause, "FATAL cause 0 means not FATAL (spec 3): pass 1 (unmapped IOVA), 2 (bad ring configuration) or 3 (internal).");
        }

        if (_model.EnterFatal(cause, detail))
        {
            Interlocked.Increment(ref _fatals);
        }
    }

    /// <summary>An ERROR interrupt (IRQ_STATUS.ERROR, vector 2) with STATUS.FATAL clear and ERROR unchanged: a glitch (R7).</summary>
    public void RaiseSpuriousError()
    {
        if (_model.RaiseSpuriousError())
        {
            Interlocked.Increment(ref _spuriousErrors);
        }
    }

    /// <summary>
    /// Writes <paramref name="record"/> as given into the fault ring at FQ_TAIL, advances FQ_TAIL and raises FAULT.
    /// False (nothing done) without a usable ring, when it is full, or off the bus.
    /// </summary>
    public bool GarbageFaultRecord(FaultRecord record) => Count(_model.InjectFaultRecord(record));

    /// <summary>FQ_TAIL jumps ahead by <paramref name="count"/> with no record written, with FAULT. False without a ring or off the bus.</summary>
    public bool FaultTailJump(uint count) => Count(_model.InjectFaultTailJump(count));

    /// <summary>
    /// Writes <paramref name="record"/> as given into queue <paramref name="queue"/>'s completion ring at CQ_TAIL
    /// (PHASE word last); with <paramref name="advanceTail"/> CQ_TAIL passes it and, with <paramref name="interrupt"/>,
    /// COMPLETION is raised; without, it sits unannounced (a PHASE glitch). False (nothing done) when the ring is full
    /// or unusable, or off the bus.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="queue"/> is not a queue of this device.</exception>
    public bool GarbageCompletion(int queue, CompletionRecord record, bool advanceTail = true, bool interrupt = true) =>
        Count(_model.InjectCompletion(queue, record, advanceTail, interrupt));

    /// <summary>
    /// One garbage record, chosen by <paramref name="rng"/>, into a random ring that can take one (R8): the fault
    /// ring or a configured completion ring. The same seed and device state give the same record. False when no ring
    /// can take one.
    /// </summary>
    public bool Garbage(Random rng) => Count(_model.InjectGarbage(rng));

    /// <summary>Cancels a pending return and waits (bounded) for one running now. Called by <see cref="Fa1Model.Dispose"/>.</summary>
    internal void Dispose()
    {
        ITimer? timer;
        lock (_busLock)
        {
            _disposed = true;
            _returnGeneration++;
            timer = _returnTimer;
            _returnTimer = null;
        }

        if (timer is not null)
        {
            // Waits for a callback that already started; its generation is stale, so it changes nothing.
            var stopped = timer.DisposeAsync().AsTask();
            stopped.Wait(s_timerStopBound);
        }
    }

    private bool Count(bool injected)
    {
        if (injected)
        {
            Interlocked.Increment(ref _garbage);
        }

        return injected;
    }

    private void ReturnFromTimer(long generation)
    {
        lock (_busLock)
        {
            if (_disposed || generation != _returnGeneration)
            {
                return;
            }

            _returnTimer?.Dispose();
            _returnTimer = null;
            if (_model.ComeBackOnBus())
            {
                Interlocked.Increment(ref _returns);
            }
        }
    }
}
