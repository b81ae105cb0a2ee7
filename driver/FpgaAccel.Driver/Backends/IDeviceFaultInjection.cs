using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver.Backends;

/// <summary>
/// Fault injection through the backend seam, for test harnesses and <c>fpgaaccel stress --inject</c>: what a real
/// device, its link or its board can do to the driver. The model offers it (<see cref="IDeviceBackend.FaultInjection"/>,
/// reached as <see cref="FpgaDevice.FaultInjection"/>); a board has none. Each call acts as the device would at that
/// moment and is undone by what undoes it on a real device (a reset, or the return to the bus in the power-on state).
/// The driver's own layers never call it.
/// </summary>
/// <remarks>Every member is thread-safe. What each does in detail, and what the spec leaves open, is in
/// firmware-iface/DECISIONS.md, R1-R9.</remarks>
public interface IDeviceFaultInjection
{
    /// <summary>What took effect so far (cumulative since the backend was created; resets do not clear it).</summary>
    DeviceFaultInjectionCounts Counts { get; }

    /// <summary>
    /// Surprise removal: every read returns all ones (ID too), writes are dropped, no DMA, no MSI-X; engine work in
    /// flight is lost (never completes, writes no memory after this returns). With <paramref name="returnAfter"/> the
    /// device comes back after that long (a timer) in its power-on state, as <see cref="ReturnToBus"/> brings it.
    /// </summary>
    void RemoveFromBus(TimeSpan? returnAfter = null);

    /// <summary>
    /// The device comes back now in its power-on state, as after a cold reset (spec 1, spec 8): ENABLE 0, contexts,
    /// queues and rings unconfigured, MSI-X vectors disconnected (the host connects them again). A pending timed return
    /// is cancelled; nothing happens when the device is on the bus.
    /// </summary>
    void ReturnToBus();

    /// <summary>
    /// Queue <paramref name="queue"/>'s engine hangs: no descriptor consumed, started commands never complete;
    /// doorbells still latch SQ_TAIL. CTRL.RESET ends it.
    /// </summary>
    void StopEngine(int queue);

    /// <summary>The next <paramref name="count"/> MSI-X messages (any vector) are not delivered; IRQ_STATUS still latches.</summary>
    void LoseInterrupts(int count);

    /// <summary>INV_DONE stops advancing: invalidations are accepted and never complete, until a reset.</summary>
    void StickInvalidations();

    /// <summary>
    /// The device enters FATAL with ERROR = (<paramref name="cause"/>, <paramref name="detail"/>): IRQ_STATUS.ERROR
    /// latches, MSI-X vector 2 is sent, engines stop (spec 3). Nothing happens off the bus or when already FATAL.
    /// </summary>
    void RaiseFatal(FatalCause cause, uint detail);

    /// <summary>An ERROR interrupt (vector 2) with STATUS.FATAL clear: a glitch the driver must ignore.</summary>
    void RaiseSpuriousError();

    /// <summary>Writes <paramref name="record"/> as given into the fault ring at FQ_TAIL, with FAULT. False when no ring can take it.</summary>
    bool GarbageFaultRecord(FaultRecord record);

    /// <summary>FQ_TAIL jumps ahead by <paramref name="count"/> with no record written, with FAULT. False without a ring.</summary>
    bool FaultTailJump(uint count);

    /// <summary>
    /// Writes <paramref name="record"/> as given into queue <paramref name="queue"/>'s completion ring at CQ_TAIL; with
    /// <paramref name="advanceTail"/> CQ_TAIL passes it and, with <paramref name="interrupt"/>, COMPLETION is raised;
    /// without, it sits unannounced (a PHASE glitch). False when the ring cannot take it.
    /// </summary>
    bool GarbageCompletion(int queue, CompletionRecord record, bool advanceTail = true, bool interrupt = true);

    /// <summary>
    /// One garbage record chosen by <paramref name="rng"/> into a random ring that can take one (the fault ring or a
    /// configured completion ring), each detectably wrong (a status spec 5 does not define, a context beyond CAPS,
    /// reserved bits set, a wrong sequence, a tail past the ring). False when no ring can take one.
    /// </summary>
    bool Garbage(Random rng);
}

/// <summary>How often each injection of <see cref="IDeviceFaultInjection"/> took effect.</summary>
/// <param name="Removals">Times the device left the bus.</param>
/// <param name="Returns">Times it came back (in its power-on state).</param>
/// <param name="EngineStops">Queue engines hung.</param>
/// <param name="LostInterrupts">MSI-X messages lost on the way to the host.</param>
/// <param name="StuckInvalidations">Times INV_DONE was made to stop advancing.</param>
/// <param name="Fatals">Times the device entered FATAL by injection.</param>
/// <param name="SpuriousErrors">ERROR interrupts sent with STATUS.FATAL clear.</param>
/// <param name="Garbage">Garbage records written into a ring (or fault-ring tail jumps).</param>
public sealed record DeviceFaultInjectionCounts(
    long Removals, long Returns, long EngineStops, long LostInterrupts, long StuckInvalidations, long Fatals, long SpuriousErrors, long Garbage);
