using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>
/// Posts a queue's completions (spec 5): waits for room in the completion ring, writes the record
/// through the IOMMU as <see cref="CompletionRecord"/> lays it out, with the PHASE word last, then
/// advances CQ_TAIL and sends the completion interrupt when the descriptor asked for one.
/// </summary>
/// <remarks>Runs on a lane of the queue's engine. Every register change and the record write run under the
/// register lock after checking that the lane is still current; the wait for ring space holds no lock.</remarks>
internal sealed class CompletionWriter
{
    private readonly QueueEngine _engine;
    private readonly QueueRegisters _registers;

    public CompletionWriter(QueueEngine engine, QueueRegisters registers)
    {
        _engine = engine;
        _registers = registers;
    }

    /// <summary>
    /// Posts the completion of <paramref name="d"/> (the queue's command number <paramref name="command"/>),
    /// which started at cycle <paramref name="start"/> and ended in <paramref name="outcome"/>. False when nothing
    /// was posted: the lane was stopped, or the device is (or went) FATAL.
    /// </summary>
    /// <remarks>
    /// Several lanes of a queue post (decision D35), so reserving the slot, writing the record and advancing
    /// CQ_TAIL are one step under the register lock: CQ_TAIL only ever passes records already written, whatever
    /// order the commands end in. The record is one short DMA write, as a fault record is.
    /// </remarks>
    public unsafe bool Post(EngineWorker worker, EngineTimeline timeline, in SubmissionDescriptor d, CommandOutcome outcome, ulong start, long command)
    {
        var model = _engine.Model;

        // Spec 7: the completion is a posted write.
        timeline.Spend(_engine.Options.DmaWriteCycles);
        while (true)
        {
            // R4: a hung engine posts nothing until a reset stops this lane.
            if (!_engine.WaitWhileHung(worker))
            {
                return false;
            }

            PendingMessages messages = default;
            var pendingMessages = -1;
            lock (model.RegisterLock)
            {
                // Decision D10: a FATAL device posts nothing more.
                if (!_engine.IsCurrent(worker) || model.IsFatalLocked)
                {
                    return false;
                }

                if (_registers.TryReserveCompletion(out var slotIova, out var tail, out var log2))
                {
                    var end = timeline.Now;
                    timeline.Publish(); // CYCLES reaches the end before the driver can see the record
                    var record = CompletionRecord.Create(
                        d.Tag, outcome.Status, CompletionRecord.PhaseOf(tail, log2), outcome.Faults, outcome.Result, start, end);
                    bool written;
                    using (model.Iommu.BeginDeviceAccess())
                    {
                        // spec 5, 6: written through the IOMMU; a refusal is FATAL cause 1.
                        written = model.Iommu.TryTranslate(slotIova, DmaAccess.DeviceWrite, out var slot);
                        if (written)
                        {
                            // The driver polls host memory: it reads StatusAndPhase first, with acquire semantics, and
                            // takes the record as complete once PHASE is the one it expects for this lap. So PHASE must
                            // be the last store: Publish writes every other field first and StatusAndPhase last, as a
                            // release store, so a reader that sees the new PHASE also sees the rest of this record
                            // (never the previous lap's tag or result with this lap's PHASE).
                            CompletionRecord.Publish(ref *(CompletionRecord*)slot.Host, record);
                        }
                    }

                    if (!written)
                    {
                        model.EnterFatal(ErrorRegister.ForUnmappedIova(slotIova));
                        return false;
                    }

                    _registers.CompletionPosted(tail);
                    _engine.CommandEnded(command, end);
                    pendingMessages = 0;
                    if ((d.Flags & DescriptorFlags.Irq) != 0)
                    {
                        // Sent once the lock is released (InterruptController's remarks): the woken driver thread's
                        // first step (CQ_TAIL, or the next doorbell) needs this lock.
                        model.DeferInterrupts();
                        model.RaiseInterruptLocked(InterruptCauses.Completion);
                        pendingMessages = model.EndDeferInterrupts(ref messages);
                    }
                }
            }

            if (pendingMessages >= 0)
            {
                model.DeliverInterrupts(ref messages, pendingMessages);
                return true;
            }

            // Full (or, decision D22, CQ_HEAD garbage, which looks full): wait, without the lock, for the driver to
            // move CQ_HEAD. CQ_HEAD writes, reset and dispose set the event; one set between the check
            // above and this wait stays latched in the lane's event (LaneSignal), so no wake-up is lost.
            worker.Wake.WaitOne();
            if (worker.StopRequested)
            {
                return false;
            }
        }
    }
}
