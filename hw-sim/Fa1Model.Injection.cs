using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>
/// Hostile-device injection: records a broken or malicious device could write, for tests of the driver's
/// distrust (spec 2: every index, count and tag the device reports is range-checked). Internal: tests reach it
/// through InternalsVisibleTo, and a fault-injection capability of the backend seam may later expose it. Each
/// hook acts as the device would at that moment (under the register lock, through the IOMMU) and returns false,
/// changing nothing, when the ring it writes is not usable.
/// </summary>
public sealed partial class Fa1Model
{
    /// <summary>
    /// Writes <paramref name="record"/> as given into the fault ring at FQ_TAIL and advances FQ_TAIL, with the
    /// FAULT interrupt: a garbage record (a wrong sequence, a context beyond CAPS, reserved bits or unknown
    /// flags set, a tag no access owns). Its tag is not live: a response to it is ignored and counted.
    /// </summary>
    internal bool InjectFaultRecord(in FaultRecord record)
    {
        lock (_lock)
        {
            return _present && _faultRing.InjectRecord(record);
        }
    }

    /// <summary>
    /// FQ_TAIL jumps ahead by <paramref name="count"/> with no record written (more than the ring's entries: a
    /// tail past the ring), with the FAULT interrupt.
    /// </summary>
    internal bool InjectFaultTailJump(uint count)
    {
        lock (_lock)
        {
            return _present && _faultRing.InjectTailJump(count);
        }
    }

    /// <summary>
    /// Writes <paramref name="record"/> as given into queue <paramref name="queue"/>'s completion ring at CQ_TAIL
    /// (PHASE word last): a tag no command owns, a status outside spec 5's, a wrong faults count. With
    /// <paramref name="advanceTail"/> CQ_TAIL passes it and, with <paramref name="interrupt"/>, COMPLETION is
    /// raised; without, the record sits in the slot unannounced (a PHASE glitch: with this lap's PHASE a driver
    /// polling memory sees a completion the device never posted; with the other lap's, a posted one it never sees).
    /// <see cref="CompletionRecord.PhaseOf"/> of CQ_TAIL and CQ_LOG2 gives this lap's PHASE.
    /// </summary>
    internal bool InjectCompletion(int queue, in CompletionRecord record, bool advanceTail = true, bool interrupt = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(queue);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(queue, Options.Queues);
        lock (_lock)
        {
            if (!_present || !_queues[queue].Registers.InjectCompletion(record, advanceTail))
            {
                return false;
            }

            if (advanceTail && interrupt)
            {
                _interrupts.Raise(InterruptCauses.Completion);
            }

            return true;
        }
    }
}
