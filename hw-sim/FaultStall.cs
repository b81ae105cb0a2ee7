using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>A translation fault as the data mover saw it, before it is raised (spec 4.4).</summary>
/// <param name="Dva">The exact faulting DVA.</param>
/// <param name="Write">The access was a write.</param>
/// <param name="Present">A valid leaf existed but lacked the permission.</param>
internal readonly record struct PendingFault(ulong Dva, bool Write, bool Present);

/// <summary>What a stalled access does once its fault is answered.</summary>
internal enum FaultAnswer
{
    /// <summary>RETRY or DROPIN: translate the page again and go on.</summary>
    Restart,

    /// <summary>ABORT, or NOFAULT, or no fault ring: the command completes FAULT.</summary>
    Abort,

    /// <summary>The worker was stopped or the device went FATAL: no completion.</summary>
    Abandon,
}

/// <summary>
/// The fault stall and restart protocol of one queue (spec 4.4): a translation fault stalls the access
/// that raised it. CTX_FAULTS counts it. Under NOFAULT (or with no fault ring, decision D25) the command
/// ends at once (decision D18: the fault still counts). Otherwise the record goes to the ring once it has
/// room (after the fault-to-MSI-X cost), and the access waits for the response naming its tag: RETRY and
/// DROPIN restart it, ABORT ends the command.
/// </summary>
/// <remarks>
/// Runs on the queue's engine thread. Raising the fault, writing its record and taking its response run
/// under the register lock, each after checking that the worker is still current (and the device not
/// FATAL); the waits (ring space, the response) hold no lock and no fence ticket (decision D28: the data
/// mover released it before calling here). Invariant (spec 4.4, faults are never dropped): a fault
/// raised here leaves the ring's outstanding set on every path out (<see cref="FaultRing.Finish"/> in a
/// finally block), unless a reset emptied the set first.
/// </remarks>
internal sealed class FaultStall
{
    private readonly QueueEngine _engine;
    private readonly MmuBlock _mmu;
    private readonly FaultRing _faultRing;

    public FaultStall(QueueEngine engine, MmuBlock mmu, FaultRing faultRing)
    {
        _engine = engine;
        _mmu = mmu;
        _faultRing = faultRing;
    }

    private ModelOptions Options => _engine.Options;

    /// <summary>
    /// Stalls the access that raised <paramref name="pending"/> in context <paramref name="ctx"/> until
    /// the fault is answered; returns what the access does next.
    /// </summary>
    public FaultAnswer Wait(EngineWorker worker, EngineTimeline timeline, int ctx, PendingFault pending)
    {
        _mmu.CountFault(ctx);
        DeviceFault fault;
        var detected = timeline.Now;
        lock (_engine.Model.RegisterLock)
        {
            if (!_engine.IsCurrent(worker))
            {
                return FaultAnswer.Abandon;
            }

            if (_mmu.IsNoFault(ctx) || !_faultRing.IsConfigured)
            {
                _faultRing.CountImmediateAbort();
                return FaultAnswer.Abort;
            }

            fault = _faultRing.Raise((byte)ctx, pending.Dva, pending.Write, pending.Present, _engine.Queue, detected, worker);
        }

        try
        {
            // spec 7: fault detected to MSI-X sent. The record shows the detection cycle; CYCLES has
            // caught up with it by the time the driver can see the record.
            timeline.Spend(Options.FaultToInterruptCycles);
            timeline.Publish();
            PendingMessages messages = default;
            while (true)
            {
                bool recorded;
                var pendingMessages = 0;
                lock (_engine.Model.RegisterLock)
                {
                    if (!_engine.IsCurrent(worker) || _engine.Model.IsFatalLocked)
                    {
                        return FaultAnswer.Abandon;
                    }

                    // D25: with no ring a fault ends its command at once. A fault still held for room when the
                    // driver detaches the ring (FQ_LOG2 = 0) is such a fault: it aborts, and no record goes to the
                    // detached ring (its base maps nothing: a write there would be FATAL).
                    if (!fault.Recorded && !_faultRing.IsConfigured)
                    {
                        _faultRing.AbortHeld();
                        return FaultAnswer.Abort;
                    }

                    // The record's message (vector 0) is sent once the lock is released (InterruptController's
                    // remarks): the woken fault service's first step is a register access that needs this lock.
                    _engine.Model.DeferInterrupts();
                    try
                    {
                        recorded = fault.Recorded || _faultRing.TryWriteRecord(fault);
                    }
                    finally
                    {
                        pendingMessages = _engine.Model.EndDeferInterrupts(ref messages);
                    }
                }

                _engine.Model.DeliverInterrupts(ref messages, pendingMessages);
                if (recorded)
                {
                    break;
                }

                // Held (ring full): FQ_HEAD writes, responses, reset and dispose wake us; a wake
                // between the check and the wait stays latched in the event.
                worker.Wake.WaitOne();
            }

            FaultResponseCode response;
            while (true)
            {
                lock (_engine.Model.RegisterLock)
                {
                    if (!_engine.IsCurrent(worker) || _engine.Model.IsFatalLocked)
                    {
                        return FaultAnswer.Abandon;
                    }

                    response = fault.Response;
                    if (response != FaultResponseCode.None)
                    {
                        // Spec 4.4 DROPIN: install FAULT_PTE unless an invalidation issued after the fault
                        // was raised killed the tag; the kill bit is set under this same lock, so the
                        // check and the install are one step. Decision D26: without CAPS.DROPIN a DROPIN
                        // is a RETRY.
                        if (response == FaultResponseCode.Dropin && !fault.Killed && Options.Dropin)
                        {
                            _mmu.InstallDropin(ctx, fault.Dva, fault.DropinPte);
                        }

                        fault.Sleeping = false;
                        break;
                    }

                    // Checked and marked under the lock the response is written under: a response from now on sets
                    // the event (latched if it comes before the wait), so none is missed.
                    fault.Sleeping = true;
                }

                worker.Wake.WaitOne();
            }

            timeline.Spend(Options.FaultResponseCycles);
            return response == FaultResponseCode.Abort ? FaultAnswer.Abort : FaultAnswer.Restart;
        }
        finally
        {
            lock (_engine.Model.RegisterLock)
            {
                _faultRing.Finish(fault);
            }
        }
    }
}
