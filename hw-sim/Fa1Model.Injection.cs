using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>
/// Hostile-device injection: records a broken or malicious device could write, for tests of the driver's
/// distrust (spec 2: every index, count and tag the device reports is range-checked), and the device-side halves
/// of <see cref="ModelFaultInjection"/> (removal, return, hangs, FATAL). Each hook acts as the device would at
/// that moment (under the register lock, through the IOMMU) and returns false, changing nothing, when it cannot
/// (the ring it writes is not usable, the device is off the bus or already in that state).
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

    /// <summary>
    /// Spec 2: the device leaves the bus. Reads return all ones, writes vanish, it sends no MSI-X and makes no DMA.
    /// What it was doing is lost (R2): every engine lane is stopped under the register lock, so none posts a
    /// completion, raises a fault or an interrupt after this, and each is joined (bounded) once the lock is
    /// released, so none writes memory after this returns (R3). False when it was already off the bus or disposed.
    /// </summary>
    /// <remarks>
    /// Invariant: after this returns no engine of this model touches host memory until the device is back. Argument:
    /// a lane moves data only after checking, inside its IOMMU access scope, that it was not told to stop
    /// (<see cref="CommandExecutor"/>); every lane was told to stop under the register lock before the join, and the
    /// join waits for each thread to end. The one lane not joined is the caller's own (a test hook calling this from
    /// inside a data access): it checks the stop request after the hook returns, before its bytes move.
    /// </remarks>
    internal bool DropOffBus()
    {
        lock (_lock)
        {
            if (_disposed || !_present)
            {
                return false;
            }

            _present = false;
            _queues.StopAll();
        }

        JoinRetiredEngines();
        return true;
    }

    /// <summary>
    /// Spec 1, spec 8: the device is back on the bus in its power-on state, as after a cold reset (R1): registers,
    /// rings, contexts, TLB and counters cleared as CTRL.RESET clears them, ENABLE 0, the injected hang, stuck
    /// invalidations and pending lost messages gone, and the MSI-X vectors disconnected (MSI-X enable is cleared by a
    /// cold reset, so the host must set its vectors up again). False when it was on the bus or the model is disposed.
    /// </summary>
    internal bool ComeBackOnBus()
    {
        lock (_lock)
        {
            if (_disposed || _present)
            {
                return false;
            }

            _present = true;
            // Published under the register lock with the return itself: a front end that sees the new count sees the
            // device back (its config space follows the cold reset, decision V11).
            Interlocked.Increment(ref _powerOns);
            _interrupts.Disconnect();
            _interrupts.ForgetLostMessages();
            StartReset(coldReset: true);
        }

        JoinRetiredEngines();
        return true;
    }

    /// <summary>Queue <paramref name="queue"/>'s engine hangs until CTRL.RESET (R4). False when off the bus or already hung.</summary>
    internal bool HangEngine(int queue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(queue);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(queue, Options.Queues);
        lock (_lock)
        {
            return _present && _queues[queue].Hang();
        }
    }

    /// <summary>The next <paramref name="count"/> MSI-X messages are lost on the way to the host (R5).</summary>
    internal void LoseMessages(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        lock (_lock)
        {
            _interrupts.LoseNext(count);
        }
    }

    /// <summary>INV_DONE stops advancing until reset (R6). False when off the bus or already stuck.</summary>
    internal bool StickInvalidationFence()
    {
        lock (_lock)
        {
            return _present && _mmu.StickInvalidations();
        }
    }

    /// <summary>
    /// Spec 3: the device enters FATAL with ERROR = (<paramref name="cause"/>, <paramref name="detail"/>), through the
    /// model's one FATAL path. False when off the bus or already FATAL (ERROR keeps its first cause).
    /// </summary>
    internal bool EnterFatal(FatalCause cause, uint detail)
    {
        lock (_lock)
        {
            if (!_present || _disposed || _fatal)
            {
                return false;
            }

            EnterFatal(new ErrorRegister(cause, detail));
            return true;
        }
    }

    /// <summary>An ERROR interrupt (latched, vector 2) with STATUS.FATAL and ERROR unchanged (R7). False when off the bus.</summary>
    internal bool RaiseSpuriousError()
    {
        lock (_lock)
        {
            if (!_present || _disposed)
            {
                return false;
            }

            _interrupts.Raise(InterruptCauses.Error);
            return true;
        }
    }

    /// <summary>
    /// One garbage record chosen by <paramref name="rng"/> (R8): into the fault ring (a record with a wrong sequence,
    /// a context beyond CAPS, reserved bits set and a tag no access owns; or FQ_TAIL jumping past the ring), or into a
    /// configured completion ring (a random tag with a status spec 5 does not define, with this lap's PHASE: posted
    /// with CQ_TAIL and the COMPLETION interrupt, or, one time in four, left unannounced, a PHASE glitch). The rings that can take one are listed in a fixed order,
    /// so a seed and a device state give the same record. False when no ring can take one.
    /// </summary>
    internal bool InjectGarbage(Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        Span<int> targets = stackalloc int[Options.Queues + 1];
        lock (_lock)
        {
            if (!_present || _disposed)
            {
                return false;
            }

            // -1 is the fault ring; 0.. the queues whose completion ring has room.
            var count = 0;
            if (_faultRing.CanTakeRecord)
            {
                targets[count++] = -1;
            }

            for (var q = 0; q < Options.Queues; q++)
            {
                if (_queues[q].Registers.TryReserveCompletion(out _, out _, out _))
                {
                    targets[count++] = q;
                }
            }

            if (count == 0)
            {
                return false;
            }

            var target = targets[rng.Next(count)];
            if (target < 0)
            {
                if (rng.Next(4) == 0)
                {
                    return _faultRing.InjectTailJump((uint)rng.Next(1 << RingLimits.FaultRingMaxLog2, int.MaxValue));
                }

                var record = new FaultRecord
                {
                    Dva = (ulong)rng.NextInt64(),
                    Tag = (ushort)rng.Next(ushort.MaxValue + 1),
                    Context = (byte)rng.Next(Options.Contexts, 256),
                    Flags = (FaultRecordFlags)rng.Next(4, 256),
                    Queue = (ushort)rng.Next(ushort.MaxValue + 1),
                    Reserved0 = (ushort)rng.Next(1, ushort.MaxValue + 1),
                    Cycle = (ulong)rng.NextInt64(),
                    Sequence = (uint)rng.Next(1, int.MaxValue) + _faultRing.Tail,
                    Reserved1 = (uint)rng.Next(1, int.MaxValue),
                };
                return _faultRing.InjectRecord(record);
            }

            var registers = _queues[target].Registers;
            registers.TryReserveCompletion(out _, out var tail, out var log2);
            // R8: the status is always one spec 5 does not define, so a driver that checks what the device reports
            // never takes garbage for a success, whatever tag it names (a random tag may name a command in flight).
            var glitch = rng.Next(4) == 0;
            var status = (CompletionStatus)rng.Next((int)CompletionStatus.ContextDisabled + 1, CompletionRecord.StatusMask + 1);
            var completion = CompletionRecord.Create(
                (uint)rng.Next(), status, CompletionRecord.PhaseOf(tail, log2), (ushort)rng.Next(ushort.MaxValue + 1), (ulong)rng.NextInt64(), 0, 0);
            if (!registers.InjectCompletion(completion, advanceTail: !glitch))
            {
                return false;
            }

            if (!glitch)
            {
                _interrupts.Raise(InterruptCauses.Completion);
            }

            return true;
        }
    }
}
