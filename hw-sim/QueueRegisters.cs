using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>
/// One queue's eight registers (spec 5) and their side effects, declared in the model's one
/// <see cref="RegisterTable"/>, with the doorbells the engine has not consumed yet.
/// </summary>
/// <remarks>
/// Every member runs with the model's register lock held. The engine thread changes SQ_HEAD and
/// CQ_TAIL only while it is the queue's current worker (<see cref="QueueEngine"/> remarks).
/// </remarks>
internal sealed class QueueRegisters
{
    private readonly Fa1Model _model;
    private readonly int _queue;
    private readonly Action _doorbellRung;
    private readonly Action _completionsConsumed;
    private readonly Queue<(ulong Tail, ulong Cycle)> _doorbells = new();
    private ulong _lastDoorbell;
    private ulong _sqBase;
    private ulong _sqLog2;
    private ulong _sqTail;
    private ulong _sqHead;
    private ulong _cqBase;
    private ulong _cqLog2;
    private ulong _cqHead;
    private ulong _cqTail;
    private long _badHeadWrites;

    /// <param name="model">The device the queue belongs to.</param>
    /// <param name="queue">The queue's number.</param>
    /// <param name="doorbellRung">Runs after an SQ_TAIL write: the engine starts or wakes.</param>
    /// <param name="completionsConsumed">Runs after a CQ_HEAD write: an engine waiting for ring space wakes.</param>
    public QueueRegisters(Fa1Model model, int queue, Action doorbellRung, Action completionsConsumed)
    {
        _model = model;
        _queue = queue;
        _doorbellRung = doorbellRung;
        _completionsConsumed = completionsConsumed;
    }

    /// <summary>CQ_HEAD writes ahead of CQ_TAIL or more than a ring behind it (decision D22; not cleared by reset).</summary>
    public long BadHeadWrites => Interlocked.Read(ref _badHeadWrites);

    /// <summary>The queue is enabled (SQ_LOG2 != 0) and SQ_HEAD is behind SQ_TAIL: a descriptor waits.</summary>
    public bool HasSubmissions => _sqLog2 != 0 && _sqHead != _sqTail;

    /// <summary>Adds the queue's registers, each with its side effect, to the table.</summary>
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
            () => _cqHead, OnCqHeadWrite);
        DeviceBlock.Declare(table, Fa1Registers.Queue(q, Fa1Registers.CqTail), $"CQ_TAIL[{q}]", RegisterAccess.ReadOnly,
            () => _cqTail);
    }

    /// <summary>Spec 3: a reset clears the queue's registers and forgets its doorbells.</summary>
    public void Reset()
    {
        _sqBase = _sqLog2 = _sqTail = _sqHead = _lastDoorbell = 0;
        _cqBase = _cqLog2 = _cqHead = _cqTail = 0;
        _doorbells.Clear();
    }

    /// <summary>
    /// Checked when the engine is about to use the rings (spec 5, D7, D14, D16). False, with the device
    /// FATAL (cause 2, the offending register's offset as detail), when they are not usable.
    /// </summary>
    public bool RingsAreValid()
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
            BadConfiguration(register);
            return false;
        }

        return true;
    }

    /// <summary>
    /// IOVA of the descriptor at SQ_HEAD (slot SQ_HEAD mod entries, spec 5), and in
    /// <paramref name="doorbellCycle"/> the CYCLES of the doorbell that submitted it (0 if none is known).
    /// Call after <see cref="HasSubmissions"/> and <see cref="RingsAreValid"/>.
    /// </summary>
    public ulong NextDescriptor(out ulong doorbellCycle)
    {
        var entries = 1UL << (int)_sqLog2;
        var descriptorIova = _sqBase + ((_sqHead & (entries - 1)) * SubmissionDescriptor.Size);
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

        return descriptorIova;
    }

    /// <summary>The engine read the descriptor at SQ_HEAD: SQ_HEAD advances.</summary>
    public void ConsumeDescriptor() => _sqHead++;

    /// <summary>
    /// Spec 5: a completion goes to slot CQ_TAIL mod entries, and only when the ring has room (never
    /// overrun). True with the slot's IOVA, CQ_TAIL and CQ_LOG2 when there is room; false while the ring is
    /// full, or (decision D22) while CQ_HEAD is out of range, which looks full.
    /// </summary>
    public bool TryReserveCompletion(out ulong slotIova, out ulong tail, out int log2)
    {
        if (_cqLog2 is >= RingLimits.QueueRingMinLog2 and <= RingLimits.QueueRingMaxLog2
            && _cqTail - _cqHead < 1UL << (int)_cqLog2)
        {
            log2 = (int)_cqLog2;
            tail = _cqTail;
            slotIova = _cqBase + ((tail & ((1UL << log2) - 1)) * CompletionRecord.Size);
            return true;
        }

        slotIova = tail = 0;
        log2 = 0;
        return false;
    }

    /// <summary>
    /// Fault injection, register lock held: writes <paramref name="record"/> as given (any tag, status or PHASE)
    /// into the slot at CQ_TAIL, PHASE word last, and advances CQ_TAIL when <paramref name="advanceTail"/> (else the
    /// record sits in the slot unannounced: a PHASE glitch). False (nothing done) when the ring is full or
    /// unusable, or the IOMMU refuses the slot.
    /// </summary>
    public unsafe bool InjectCompletion(in CompletionRecord record, bool advanceTail)
    {
        if (!TryReserveCompletion(out var slotIova, out var tail, out _))
        {
            return false;
        }

        using (_model.Iommu.BeginDeviceAccess())
        {
            if (!_model.Iommu.TryTranslate(slotIova, Interop.DmaAccess.DeviceWrite, out var slot))
            {
                return false;
            }

            CompletionRecord.Publish(ref *(CompletionRecord*)slot.Host, record);
        }

        if (advanceTail)
        {
            CompletionPosted(tail);
        }

        return true;
    }

    /// <summary>The record at <paramref name="tail"/> was written: CQ_TAIL passes it.</summary>
    public void CompletionPosted(ulong tail) => _cqTail = tail + 1;

    // Decision D22: a CQ_HEAD out of range is kept, counted, and looks like a full ring until the driver fixes it.
    private void OnCqHeadWrite(ulong value)
    {
        _cqHead = value;
        if (_cqLog2 is >= RingLimits.QueueRingMinLog2 and <= RingLimits.QueueRingMaxLog2 && _cqTail - _cqHead > 1UL << (int)_cqLog2)
        {
            Interlocked.Increment(ref _badHeadWrites);
        }

        _completionsConsumed();
    }

    private void BadConfiguration(uint register) =>
        _model.EnterFatal(ErrorRegister.ForBadRingConfiguration(Fa1Registers.Queue(_queue, register)));

    // Decision D14: a ring base that is not 4 KiB aligned is bad ring configuration (FATAL cause 2)
    // the moment it is written, with the register's BAR0 offset as detail.
    private void CheckBase(ulong value, uint register)
    {
        if (value % RingLimits.Alignment != 0)
        {
            BadConfiguration(register);
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
            BadConfiguration(Fa1Registers.SqLog2);
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
            BadConfiguration(Fa1Registers.CqLog2);
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

        _doorbellRung();
    }
}
