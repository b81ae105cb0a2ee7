using System.Numerics;
using System.Runtime.InteropServices;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>One data access the device is about to make, shown to the test hook.</summary>
/// <param name="Queue">Queue of the command.</param>
/// <param name="Context">Its context.</param>
/// <param name="Dva">First DVA of the access.</param>
/// <param name="Iova">What the MMU translated it to.</param>
/// <param name="Length">Bytes (within one 4 KiB page).</param>
/// <param name="Write">A write (else a read).</param>
internal readonly record struct DataAccess(int Queue, int Context, ulong Dva, ulong Iova, ulong Length, bool Write);

/// <summary>The thread that runs a queue, with its wake-up event and stop request.</summary>
internal sealed class EngineWorker : IDisposable
{
    private volatile bool _stop;

    public EngineWorker(string name, Action<EngineWorker> body) =>
        Thread = new Thread(() => body(this)) { IsBackground = true, Name = name };

    public Thread Thread { get; }

    /// <summary>Set by the doorbell, CQ_HEAD, CTRL and stop requests; the engine waits on it when idle.</summary>
    public AutoResetEvent Wake { get; } = new(false);

    public bool StopRequested => _stop;

    public void RequestStop()
    {
        _stop = true;
        Wake.Set();
    }

    public void Dispose() => Wake.Dispose();
}

/// <summary>
/// One queue (spec 5): its eight registers and the engine that consumes its submission ring, runs
/// the commands through the MMU and the IOMMU, and posts completions.
/// </summary>
/// <remarks>
/// <para>Threads: one <see cref="EngineWorker"/> per queue, started by the first doorbell, idle on its
/// event (no polling) while there is nothing to do, stopped by reset and dispose.</para>
/// <para>Invariant: the queue's registers (fields below) change only under the model's register lock,
/// and an engine thread changes them only while it is the queue's current worker
/// (<see cref="IsCurrent"/>). Reset and dispose replace the worker under that lock, so a stopped
/// worker that is still finishing a page can no longer touch the queue or the device state, and
/// Fa1Model joins it after releasing the lock (never waiting while holding it). Modelled work and
/// DMA run with no lock held; commands of one queue run one after another, which satisfies FENCE
/// and in-order start (spec 5).</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "A worker is handed to Fa1Model.Retire, which disposes it after joining its thread.")]
internal sealed class QueueEngine
{
    private const ulong PageMask = PageTableFormat.PageSize - 1;

    private readonly Fa1Model _model;
    private readonly MmuBlock _mmu;
    private readonly FaultRing _faultRing;
    private readonly int _queue;
    private readonly Queue<(ulong Tail, ulong Cycle)> _doorbells = new();
    private ulong _lastDoorbell;
    private EngineWorker? _worker;
    private ulong _sqBase;
    private ulong _sqLog2;
    private ulong _sqTail;
    private ulong _sqHead;
    private ulong _cqBase;
    private ulong _cqLog2;
    private ulong _cqHead;
    private ulong _cqTail;

    public QueueEngine(Fa1Model model, MmuBlock mmu, FaultRing faultRing, int queue)
    {
        _model = model;
        _mmu = mmu;
        _faultRing = faultRing;
        _queue = queue;
    }

    private ModelOptions Options => _model.Options;

    /// <summary>Register lock held: this queue has an engine thread.</summary>
    public bool HasWorker => _worker is not null;

    public void Declare(RegisterTable table)
    {
        var q = _queue;
        DeviceBlock.Declare(table, Fa1Registers.Queue(q, Fa1Registers.SqBase), $"SQ_BASE[{q}]", RegisterAccess.ReadWrite,
            () => _sqBase, v => { _sqBase = v; CheckBase(v, Fa1Registers.SqBase); });
        DeviceBlock.Declare(table, Fa1Registers.Queue(q, Fa1Registers.SqLog2), $"SQ_LOG2[{q}]", RegisterAccess.ReadWrite,
            () => _sqLog2, OnSqLog2Write);
        DeviceBlock.Declare(table, Fa1Registers.Queue(q, Fa1Registers.SqTail), $"SQ_TAIL[{q}]", RegisterAccess.ReadWrite,
            () => _sqTail, OnDoorbell);
        DeviceBlock.Declare(table, Fa1Registers.Queue(q, Fa1Registers.SqHead), $"SQ_HEAD[{q}]", RegisterAccess.ReadOnly,
            () => _sqHead);
        DeviceBlock.Declare(table, Fa1Registers.Queue(q, Fa1Registers.CqBase), $"CQ_BASE[{q}]", RegisterAccess.ReadWrite,
            () => _cqBase, v => { _cqBase = v; CheckBase(v, Fa1Registers.CqBase); });
        DeviceBlock.Declare(table, Fa1Registers.Queue(q, Fa1Registers.CqLog2), $"CQ_LOG2[{q}]", RegisterAccess.ReadWrite,
            () => _cqLog2, OnCqLog2Write);
        DeviceBlock.Declare(table, Fa1Registers.Queue(q, Fa1Registers.CqHead), $"CQ_HEAD[{q}]", RegisterAccess.ReadWrite,
            () => _cqHead, v => { _cqHead = v; _worker?.Wake.Set(); });
        DeviceBlock.Declare(table, Fa1Registers.Queue(q, Fa1Registers.CqTail), $"CQ_TAIL[{q}]", RegisterAccess.ReadOnly,
            () => _cqTail);
    }

    /// <summary>Register lock held. Spec 3: a reset clears the queue and stops its engine.</summary>
    public void Reset()
    {
        StopWorker();
        _sqBase = _sqLog2 = _sqTail = _sqHead = _lastDoorbell = 0;
        _cqBase = _cqLog2 = _cqHead = _cqTail = 0;
        _doorbells.Clear();
    }

    /// <summary>Register lock held: stops the engine thread; the model joins it once the lock is released.</summary>
    public void StopWorker()
    {
        if (_worker is { } worker)
        {
            _worker = null;
            _model.Retire(worker);
        }
    }

    /// <summary>Register lock held: CTRL changed; an idle engine re-checks whether it may start.</summary>
    public void Wake() => _worker?.Wake.Set();

    // Decision D14: a ring base that is not 4 KiB aligned is bad ring configuration (FATAL cause 2)
    // the moment it is written, with the register's BAR0 offset as detail.
    private void CheckBase(ulong value, uint register)
    {
        if (value % RingLimits.Alignment != 0)
        {
            _model.EnterFatal(FatalCause.BadRingConfiguration, Fa1Registers.Queue(_queue, register));
        }
    }

    // Decision D15: writing SQ_LOG2 (or CQ_LOG2) starts that ring afresh, head and tail at 0, as
    // FQ_LOG2 does (spec 4.4). 0 disables the queue (spec 5); above 16 is FATAL cause 2 (D7).
    private void OnSqLog2Write(ulong value)
    {
        _sqLog2 = value;
        _sqHead = _sqTail = _lastDoorbell = 0;
        _doorbells.Clear();
        if (value > RingLimits.QueueRingMaxLog2)
        {
            _model.EnterFatal(FatalCause.BadRingConfiguration, Fa1Registers.Queue(_queue, Fa1Registers.SqLog2));
        }
    }

    private void OnCqLog2Write(ulong value)
    {
        _cqLog2 = value;
        _cqHead = _cqTail = 0;

        // 0 is the reset value and what a driver tearing a queue down may write: refused only when
        // an enabled queue is used with it (RingsAreValid), so a teardown never kills the device.
        if (value > RingLimits.QueueRingMaxLog2)
        {
            _model.EnterFatal(FatalCause.BadRingConfiguration, Fa1Registers.Queue(_queue, Fa1Registers.CqLog2));
        }
    }

    // SQ_TAIL (spec 5): the doorbell. The cycle is remembered so that, on the virtual clock, the
    // commands it submits start no earlier (EngineTimeline).
    private void OnDoorbell(ulong tail)
    {
        _sqTail = tail;
        // Only a tail that moved submits something; the queue of doorbells is bounded by the ring size
        // because the engine drops those it has consumed (a driver bug beyond that is FATAL, D16).
        if (tail != _lastDoorbell && _doorbells.Count <= 1 << RingLimits.QueueRingMaxLog2)
        {
            _lastDoorbell = tail;
            _doorbells.Enqueue((tail, _model.Clock.Now));
        }

        if (_worker is null)
        {
            _worker = new EngineWorker($"FA-1 queue {_queue}", Run);
            _worker.Thread.Start();
        }
        else
        {
            _worker.Wake.Set();
        }
    }

    private bool IsCurrent(EngineWorker worker) => ReferenceEquals(_worker, worker);

    // The engine thread's root. A bug in the model must not take the host process down with it:
    // anything unexpected makes the device FATAL with cause 3 (internal), as a hardware assertion would.
    private void Run(EngineWorker worker)
    {
        var timeline = new EngineTimeline(_model.Clock);
        try
        {
            while (!worker.StopRequested)
            {
                // A stop request may have been consumed by a wait inside Step (CQ space, a fault's
                // response): check the flag again before sleeping, or the thread would never wake.
                if (!Step(worker, timeline) && !worker.StopRequested)
                {
                    worker.Wake.WaitOne();
                }
            }
        }
        catch (Exception)
        {
            lock (_model.RegisterLock)
            {
                if (IsCurrent(worker))
                {
                    _model.EnterFatal(FatalCause.Internal, (uint)_queue);
                }
            }
        }
    }

    // One command: fetch, execute, post. Returns false when there is nothing to do (wait for a wake).
    private unsafe bool Step(EngineWorker worker, EngineTimeline timeline)
    {
        ulong descriptorIova;
        ulong doorbellCycle;
        lock (_model.RegisterLock)
        {
            if (!IsCurrent(worker) || !_model.IsRunnableLocked || _sqLog2 == 0 || _sqHead == _sqTail)
            {
                return false;
            }

            if (!RingsAreValid())
            {
                return false;
            }

            var entries = 1UL << (int)_sqLog2;
            descriptorIova = _sqBase + ((_sqHead & (entries - 1)) * SubmissionDescriptor.Size);
            doorbellCycle = 0;
            while (_doorbells.TryPeek(out var d) && (long)(d.Tail - _sqHead) <= 0)
            {
                // This doorbell submitted only descriptors already consumed.
                _doorbells.Dequeue();
            }

            if (_doorbells.TryPeek(out var pending))
            {
                doorbellCycle = pending.Cycle;
            }
        }

        // spec 5, 6: the descriptor is read from the ring through the IOMMU; a refusal is FATAL cause 1.
        // A 64-byte slot of a 4 KiB aligned ring never crosses a page.
        SubmissionDescriptor descriptor = default;
        bool fetched;
        using (_model.Iommu.BeginDeviceAccess())
        {
            fetched = _model.Iommu.TryTranslate(descriptorIova, IommuAccess.Read, out var slot);
            if (fetched)
            {
                descriptor = ReadDescriptor(slot.Host);
            }
        }

        if (!fetched)
        {
            FatalUnmapped(worker, descriptorIova); // outside the access scope: it takes the register lock
            return false;
        }

        timeline.BeginCommand(doorbellCycle);
        timeline.Spend(Options.DmaReadCycles);
        lock (_model.RegisterLock)
        {
            if (!IsCurrent(worker))
            {
                return false;
            }

            _sqHead++;
        }

        var start = timeline.Now;
        var outcome = Execute(worker, timeline, descriptor);
        if (outcome is null)
        {
            return false; // stopped, or the device went FATAL (D10): no completion
        }

        return PostCompletion(worker, timeline, descriptor, outcome.Value, start);
    }

    // spec 5: 64-byte descriptors. Eight single 8-byte reads: the driver fills the slot before the
    // doorbell, so their order does not matter.
    private static unsafe SubmissionDescriptor ReadDescriptor(nint host)
    {
        var d = default(SubmissionDescriptor);
        var words = (ulong*)host;
        var target = (ulong*)&d;
        for (var i = 0; i < SubmissionDescriptor.Size / sizeof(ulong); i++)
        {
            target[i] = Volatile.Read(ref words[i]);
        }

        return d;
    }

    // Checked when the engine is about to use the rings (register lock held): spec 5, D7, D14.
    private bool RingsAreValid()
    {
        uint? bad = null;
        if (_sqLog2 is < RingLimits.QueueRingMinLog2 or > RingLimits.QueueRingMaxLog2)
        {
            bad = Fa1Registers.SqLog2;
        }
        else if (_cqLog2 is < RingLimits.QueueRingMinLog2 or > RingLimits.QueueRingMaxLog2)
        {
            bad = Fa1Registers.CqLog2;
        }
        else if (_sqBase % RingLimits.Alignment != 0)
        {
            bad = Fa1Registers.SqBase;
        }
        else if (_cqBase % RingLimits.Alignment != 0)
        {
            bad = Fa1Registers.CqBase;
        }
        else if (_sqTail - _sqHead > 1UL << (int)_sqLog2)
        {
            // Decision D16: a doorbell more than a ring ahead of SQ_HEAD (or behind it) is bad ring
            // configuration: the device cannot tell which descriptors are meant.
            bad = Fa1Registers.SqTail;
        }

        if (bad is { } register)
        {
            _model.EnterFatal(FatalCause.BadRingConfiguration, Fa1Registers.Queue(_queue, register));
            return false;
        }

        return true;
    }

    private void FatalUnmapped(EngineWorker worker, ulong iova)
    {
        lock (_model.RegisterLock)
        {
            if (IsCurrent(worker))
            {
                // spec 3: cause 1, detail = the IOVA page (IOVA >> 12, low 32 bits).
                _model.EnterFatal(FatalCause.UnmappedIova, (uint)(iova >> PageTableFormat.PageShift));
            }
        }
    }

    private CommandOutcome? Execute(EngineWorker worker, EngineTimeline timeline, in SubmissionDescriptor d)
    {
        // spec 5: reserved bytes 40..63 must be zero.
        if ((d.Reserved0 | d.Reserved1 | d.Reserved2) != 0)
        {
            return CommandOutcome.Of(CompletionStatus.BadDescriptor);
        }

        bool readsSource, writesDestination;
        switch (d.Opcode)
        {
            case Opcode.Nop:
                return CommandOutcome.Of(CompletionStatus.Ok);
            case Opcode.Copy:
                (readsSource, writesDestination) = (true, true);
                break;
            case Opcode.Fill:
                (readsSource, writesDestination) = (false, true);
                break;
            case Opcode.Crc32C:
                (readsSource, writesDestination) = (true, false);
                break;
            default:
                return CommandOutcome.Of(CompletionStatus.BadDescriptor);
        }

        // spec 5: LEN 0, or a range past 2^VA bits, is a bad descriptor. Decision D17: so is a
        // context number beyond CAPS.contexts (there is no such context to be disabled).
        if (d.Length == 0
            || (readsSource && OutsideVa(d.Source, d.Length))
            || (writesDestination && OutsideVa(d.Destination, d.Length))
            || d.Context >= Options.Contexts)
        {
            return CommandOutcome.Of(CompletionStatus.BadDescriptor);
        }

        if (!_mmu.IsContextUsable(d.Context))
        {
            return CommandOutcome.Of(CompletionStatus.ContextDisabled);
        }

        return MoveData(worker, timeline, d, readsSource, writesDestination);
    }

    private bool OutsideVa(ulong address, ulong length)
    {
        var limit = 1UL << Options.VaBits;
        return address >= limit || length > limit - address;
    }

    // spec 5: every data access goes through the context's MMU page by page, then the IOMMU (spec 6).
    // The range is cut at every 4 KiB boundary of the source and of the destination, so each piece
    // is one page on each side: one translation, one IOMMU look-up, one host copy.
    // Costs (spec 7, decision D23): one read round trip to fill the read pipeline, then 32 bytes per
    // cycle with reads and writes streaming side by side, a TLB hit or a walk per page translated,
    // and one posted write to drain the last data write.
    private unsafe CommandOutcome? MoveData(EngineWorker worker, EngineTimeline timeline, in SubmissionDescriptor d, bool readsSource, bool writesDestination)
    {
        var ctx = d.Context;
        var crc = Crc32C.Initial;
        var faults = 0;
        if (readsSource)
        {
            timeline.Spend(Options.DmaReadCycles);
        }

        for (var done = 0UL; done < d.Length;)
        {
            var src = d.Source + done;
            var dst = d.Destination + done;
            var n = d.Length - done;
            if (readsSource)
            {
                n = Math.Min(n, PageTableFormat.PageSize - (src & PageMask));
            }

            if (writesDestination)
            {
                n = Math.Min(n, PageTableFormat.PageSize - (dst & PageMask));
            }

            // One piece, retried after each fault the driver answers with RETRY or DROPIN (spec 4.4).
            while (true)
            {
                if (worker.StopRequested)
                {
                    return null;
                }

                var cycles = (n + Options.BytesPerCycle - 1) / Options.BytesPerCycle;
                var fault = default(PendingFault);
                var result = AccessResult.Proceed;

                // The ticket covers translation and data movement, and is released before a fault (D28)
                // waits for the driver: an invalidation the driver issues while servicing the fault
                // must not wait for this stalled access (spec 4.3 waits for accesses in flight only).
                var ticket = _mmu.BeginAccess();
                try
                {
                    Translation srcTranslation = default, dstTranslation = default;
                    if (readsSource)
                    {
                        result = TranslateSide(worker, ctx, src, write: false, ref cycles, out srcTranslation, ref fault);
                    }

                    if (writesDestination && result == AccessResult.Proceed)
                    {
                        result = TranslateSide(worker, ctx, dst, write: true, ref cycles, out dstTranslation, ref fault);
                    }

                    // spec 6: then the IOMMU, inside a device-access scope so that an unmap returns
                    // only once these bytes have moved (ModelIommu remarks).
                    using var scope = _model.Iommu.BeginDeviceAccess();
                    nint srcHost = 0, dstHost = 0;
                    if (result == AccessResult.Proceed
                        && ((readsSource && !TryIommu(ctx, src, n, write: false, srcTranslation, out srcHost))
                            || (writesDestination && !TryIommu(ctx, dst, n, write: true, dstTranslation, out dstHost))))
                    {
                        result = AccessResult.DmaError;
                    }

                    if (result == AccessResult.Proceed)
                    {
                        switch (d.Opcode)
                        {
                            case Opcode.Copy:
                                Buffer.MemoryCopy((void*)srcHost, (void*)dstHost, (long)n, (long)n);
                                break;
                            case Opcode.Fill:
                                FillPattern(new Span<byte>((void*)dstHost, (int)n), d.Pattern, done);
                                break;
                            case Opcode.Crc32C:
                                crc = Crc32C.Update(crc, new ReadOnlySpan<byte>((void*)srcHost, (int)n));
                                break;
                        }
                    }
                }
                finally
                {
                    _mmu.EndAccess(ticket);
                }

                timeline.Spend(cycles);
                if (result == AccessResult.Proceed)
                {
                    break;
                }

                if (result == AccessResult.Fault)
                {
                    faults++;
                    var answer = ServiceFault(worker, timeline, ctx, fault);
                    if (answer == FaultAnswer.Restart)
                    {
                        continue;
                    }

                    if (answer == FaultAnswer.Abandon)
                    {
                        return null;
                    }
                }

                return result switch
                {
                    AccessResult.Fault => CommandOutcome.Of(CompletionStatus.Fault, faults),
                    AccessResult.DmaError => CommandOutcome.Of(CompletionStatus.DmaError, faults),
                    AccessResult.ContextDisabled => CommandOutcome.Of(CompletionStatus.ContextDisabled, faults),
                    _ => null,
                };
            }

            done += n;
        }

        if (writesDestination)
        {
            timeline.Spend(Options.DmaWriteCycles);
        }

        return new CommandOutcome(CompletionStatus.Ok, (ushort)Math.Min(faults, ushort.MaxValue), d.Opcode == Opcode.Crc32C ? Crc32C.Finish(crc) : 0);
    }

    // One page of one side of a data access through the MMU. Proceed: translated; Fault:
    // <paramref name="fault"/> says what faulted; Abandon: the device went FATAL on a page-table
    // read, no completion.
    private AccessResult TranslateSide(EngineWorker worker, int ctx, ulong dva, bool write, ref ulong cycles, out Translation translation, ref PendingFault fault)
    {
        translation = _mmu.Translate(ctx, dva, write);
        cycles += translation.Cycles;
        switch (translation.Status)
        {
            case TranslationStatus.ContextDisabled:
                return AccessResult.ContextDisabled;
            case TranslationStatus.UnmappedTable:
                FatalUnmapped(worker, translation.Iova);
                return AccessResult.Abandon;
            case TranslationStatus.Fault:
                fault = new PendingFault(dva, write, translation.Present);
                return AccessResult.Fault;
        }

        return AccessResult.Proceed;
    }

    // spec 6: the IOMMU refusing a data access completes the command DMA_ERROR. Every access that
    // passes is checked by the oracle against the IOMMU page generation it used.
    private bool TryIommu(int ctx, ulong dva, ulong length, bool write, in Translation translation, out nint host)
    {
        if (!_model.Iommu.TryTranslate(translation.Iova, write ? IommuAccess.Write : IommuAccess.Read, out var page))
        {
            host = 0;
            return false;
        }

        _mmu.Oracle.CheckAccess(ctx, dva, write, translation, page.Generation);
        _model.DataAccessHook?.Invoke(new DataAccess(_queue, ctx, dva, translation.Iova, length, write));
        host = page.Host;
        return true;
    }

    // Spec 4.4: a translation fault stalls the access. CTX_FAULTS counts it. Under NOFAULT (or with no
    // fault ring, decision D25) the command ends at once (decision D18: the fault still counts).
    // Otherwise the record goes to the ring once it has room (after the fault-to-MSI-X cost), and the
    // access waits for the response naming its tag: RETRY and DROPIN restart it, ABORT ends the command.
    private FaultAnswer ServiceFault(EngineWorker worker, EngineTimeline timeline, int ctx, PendingFault pending)
    {
        _mmu.CountFault(ctx);
        DeviceFault fault;
        var detected = timeline.Now;
        lock (_model.RegisterLock)
        {
            if (!IsCurrent(worker))
            {
                return FaultAnswer.Abandon;
            }

            if (_mmu.IsNoFault(ctx) || !_faultRing.IsConfigured)
            {
                _faultRing.CountImmediateAbort();
                return FaultAnswer.Abort;
            }

            fault = _faultRing.Raise((byte)ctx, pending.Dva, pending.Write, pending.Present, _queue, detected);
        }

        try
        {
            // spec 7: fault detected to MSI-X sent. The record shows the detection cycle; CYCLES has
            // caught up with it by the time the driver can see the record.
            timeline.Spend(Options.FaultToInterruptCycles);
            timeline.Publish();
            while (true)
            {
                lock (_model.RegisterLock)
                {
                    if (!IsCurrent(worker) || _model.IsFatalLocked)
                    {
                        return FaultAnswer.Abandon;
                    }

                    if (fault.Recorded || _faultRing.TryWriteRecord(fault))
                    {
                        break;
                    }
                }

                // Held (ring full): FQ_HEAD writes, responses, reset and dispose wake us; a wake
                // between the check and the wait stays latched in the event.
                worker.Wake.WaitOne();
            }

            FaultResponseCode response;
            while (true)
            {
                lock (_model.RegisterLock)
                {
                    if (!IsCurrent(worker) || _model.IsFatalLocked)
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

                        break;
                    }
                }

                worker.Wake.WaitOne();
            }

            timeline.Spend(Options.FaultResponseCycles);
            return response == FaultResponseCode.Abort ? FaultAnswer.Abort : FaultAnswer.Restart;
        }
        finally
        {
            lock (_model.RegisterLock)
            {
                _faultRing.Finish(fault);
            }
        }
    }

    // Decision D19: the FILL pattern is anchored at DST: byte i of the range is byte (i mod 8) of
    // PATTERN (little-endian), whatever DST's alignment.
    private static void FillPattern(Span<byte> target, ulong pattern, ulong offsetInCommand)
    {
        var rotated = BitOperations.RotateRight(pattern, 8 * (int)(offsetInCommand & 7));
        var whole = target.Length & ~7;
        MemoryMarshal.Cast<byte, ulong>(target[..whole]).Fill(rotated);
        for (var i = whole; i < target.Length; i++)
        {
            target[i] = (byte)(rotated >> (8 * (i & 7)));
        }
    }

    // spec 5: a completion goes to slot CQ_TAIL mod entries once there is room (never overrun),
    // with PHASE 1 on the first lap; written through the IOMMU (refused: FATAL cause 1).
    private unsafe bool PostCompletion(EngineWorker worker, EngineTimeline timeline, in SubmissionDescriptor d, CommandOutcome outcome, ulong start)
    {
        ulong slotIova;
        ulong tail;
        int log2;
        while (true)
        {
            lock (_model.RegisterLock)
            {
                // Decision D10: a FATAL device posts nothing more.
                if (!IsCurrent(worker) || _model.IsFatalLocked)
                {
                    return false;
                }

                if (_cqLog2 is >= RingLimits.QueueRingMinLog2 and <= RingLimits.QueueRingMaxLog2
                    && _cqTail - _cqHead < 1UL << (int)_cqLog2)
                {
                    log2 = (int)_cqLog2;
                    tail = _cqTail;
                    slotIova = _cqBase + ((tail & ((1UL << log2) - 1)) * CompletionRecord.Size);
                    break;
                }
            }

            // Full (or, decision D22, CQ_HEAD garbage, which looks full): wait, without the lock, for the driver to
            // move CQ_HEAD. CQ_HEAD writes, reset and dispose set the event; one set between the check
            // above and this wait stays latched in the AutoResetEvent, so no wake-up is lost.
            worker.Wake.WaitOne();
        }

        timeline.Spend(Options.DmaWriteCycles);
        var end = timeline.Now;
        var phase = ((tail >> log2) & 1) == 0 ? CompletionRecord.PhaseBit : (ushort)0;
        bool written;
        using (_model.Iommu.BeginDeviceAccess())
        {
            written = _model.Iommu.TryTranslate(slotIova, IommuAccess.Write, out var slot);
            if (written)
            {
                // The word holding PHASE is written last, so a driver polling host memory sees a whole record.
                var words = (ulong*)slot.Host;
                Volatile.Write(ref words[1], outcome.Result);
                Volatile.Write(ref words[2], start);
                Volatile.Write(ref words[3], end);
                Volatile.Write(ref words[0], d.Tag | ((ulong)((ushort)outcome.Status | phase) << 32) | ((ulong)outcome.Faults << 48));
            }
        }

        if (!written)
        {
            FatalUnmapped(worker, slotIova);
            return false;
        }

        timeline.Publish();

        lock (_model.RegisterLock)
        {
            if (!IsCurrent(worker))
            {
                return false;
            }

            _cqTail = tail + 1;
            if ((d.Flags & DescriptorFlags.Irq) != 0)
            {
                _model.RaiseInterruptLocked(InterruptCauses.Completion);
            }
        }

        return true;
    }

    private enum FaultAnswer
    {
        Restart,
        Abort,
        Abandon,
    }

    private readonly record struct PendingFault(ulong Dva, bool Write, bool Present);

    private enum AccessResult
    {
        Proceed,
        Fault,
        DmaError,
        ContextDisabled,
        Abandon,
    }

    private readonly record struct CommandOutcome(CompletionStatus Status, ushort Faults, ulong Result)
    {
        public static CommandOutcome Of(CompletionStatus status, int faults = 0) => new(status, (ushort)Math.Min(faults, ushort.MaxValue), 0);
    }
}

/// <summary>The queues of spec 5 as one register block.</summary>
internal sealed class QueueBlock : DeviceBlock
{
    private readonly QueueEngine[] _engines;

    public QueueBlock(Fa1Model model, MmuBlock mmu, FaultRing faultRing)
    {
        _engines = new QueueEngine[model.Options.Queues];
        for (var q = 0; q < _engines.Length; q++)
        {
            _engines[q] = new QueueEngine(model, mmu, faultRing, q);
        }

        // Register lock held: a fault response wakes its queue's engine; ring space wakes them all.
        faultRing.WakeEngines = queue =>
        {
            if (queue is { } q && q < _engines.Length)
            {
                _engines[q].Wake();
            }
            else
            {
                foreach (var engine in _engines)
                {
                    engine.Wake();
                }
            }
        };
    }

    public override void Declare(RegisterTable table)
    {
        foreach (var engine in _engines)
        {
            engine.Declare(table);
        }
    }

    public override void Reset()
    {
        foreach (var engine in _engines)
        {
            engine.Reset();
        }
    }

    // spec 3: CTRL.ENABLE gates new commands; setting it wakes idle engines.
    public override void ControlChanged(bool enabled)
    {
        foreach (var engine in _engines)
        {
            engine.Wake();
        }
    }

    /// <summary>Register lock held: queues with an engine thread.</summary>
    public int LiveWorkers => _engines.Count(e => e.HasWorker);

    /// <summary>Register lock held: every engine thread stops (model dispose).</summary>
    public void StopAll()
    {
        foreach (var engine in _engines)
        {
            engine.StopWorker();
        }
    }
}
