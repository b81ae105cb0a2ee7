using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>
/// One translation fault from its detection until the stalled access restarts (spec 4.4).
/// Fields change only under the model's register lock.
/// </summary>
internal sealed class DeviceFault
{
    public required ushort Tag { get; init; }

    public required byte Context { get; init; }

    public required ulong Dva { get; init; }

    public required bool Write { get; init; }

    public required bool Present { get; init; }

    public required int Queue { get; init; }

    public required ulong Cycle { get; init; }

    /// <summary>The record is in the ring (the tag is live until the response).</summary>
    public bool Recorded { get; set; }

    /// <summary>The fault waited for ring space at least once (counted once in FQ_STALLS).</summary>
    public bool Stalled { get; set; }

    /// <summary>The driver's answer; None while waiting.</summary>
    public FaultResponseCode Response { get; set; }

    /// <summary>The engine lane stalled on this fault: the one lane a response must wake.</summary>
    public required EngineWorker Waiter { get; init; }

    /// <summary>The waiter sleeps on its event, or is about to (register lock): a response must set the event.</summary>
    public bool Sleeping { get; set; }

    /// <summary>FAULT_PTE when the DROPIN response arrived.</summary>
    public ulong DropinPte { get; set; }

    /// <summary>An invalidation was issued after the fault was raised (spec 4.3 b): a DROPIN must walk instead.</summary>
    public bool Killed { get; set; }
}

/// <summary>
/// The fault ring (spec 4.4): FQ_* registers, FAULT_RESP and FAULT_PTE, tags, records, the kill bit.
/// </summary>
/// <remarks>
/// Every member runs with the model's register lock held. The faulting engine thread drives its
/// own fault (it is stalled anyway): it raises it here, waits for ring space, has the record written,
/// waits for the response, and finishes it. Writing a 32-byte record under the register lock is
/// one short DMA write; the modelled costs (fault to MSI-X, response to restart) are spent by the
/// engine on its own timeline without the lock.
/// Invariant (spec 4.4, faults are never dropped): a raised fault is in <see cref="_outstanding"/>
/// until its engine finishes it; it gets a record as soon as the ring has room (held faults are
/// retried on every FQ_HEAD write), and it is live (answerable) from its record to its response.
/// </remarks>
internal sealed class FaultRing : DeviceBlock
{
    // FAULT_RESP's defined bits: [15:0] tag, [23:16] ctx, [27:24] code (spec 4.4).
    private const ulong FaultResponseBits = 0x0FFF_FFFF;

    private readonly Fa1Model _model;
    private readonly Dictionary<ushort, DeviceFault> _live = [];
    private readonly HashSet<DeviceFault> _outstanding = [];
    private ulong _base;
    private ulong _log2;
    private uint _tail;
    private uint _head;
    private ulong _stalls;
    private ulong _faultPte;
    private ushort _nextTag;
    private long _raised;
    private long _answered;
    private long _ignoredResponses;
    private long _badHeadWrites;

    public FaultRing(Fa1Model model) => _model = model;

    /// <summary>Called (register lock held) when a fault's response arrives or the ring gains room.</summary>
    public Action<int?>? WakeEngines { get; set; }

    /// <summary>Faults raised since the model was built (not cleared by reset: an oracle, not a register).</summary>
    public long Raised => Interlocked.Read(ref _raised);

    /// <summary>Faults that got their answer: a response, or an immediate abort (NOFAULT, no ring).</summary>
    public long Answered => Interlocked.Read(ref _answered);

    /// <summary>FAULT_RESP writes naming a tag that was not live (spec 4.4: ignored and counted).</summary>
    public long IgnoredResponses => Interlocked.Read(ref _ignoredResponses);

    /// <summary>FQ_HEAD writes ahead of FQ_TAIL or more than a ring behind it (decision D36; not cleared by reset).</summary>
    public long BadHeadWrites => Interlocked.Read(ref _badHeadWrites);

    /// <summary>Decision D25: FQ_LOG2 0 (its reset value) means no fault ring.</summary>
    public bool IsConfigured => _log2 != 0;

    private uint Entries => 1u << (int)_log2;

    // 32-bit free-running counts (spec 4.4). Decision D36: an FQ_HEAD out of range (ahead of FQ_TAIL, or more
    // than a ring behind it) makes the ring look full, as the hardware's (tail - head) >= entries compare does;
    // nothing is overwritten and held faults wait for a sane FQ_HEAD.
    private bool IsFull => IsConfigured && _tail - _head >= Entries;

    /// <summary>Fault injection: the ring is configured and has room for one more record.</summary>
    public bool CanTakeRecord => IsConfigured && !IsFull;

    /// <summary>FQ_TAIL now.</summary>
    public uint Tail => _tail;

    public override ulong StatusBits => IsFull ? (ulong)FirmwareInterface.StatusBits.FaultQueueFull : 0;

    public override void Declare(RegisterTable table)
    {
        Declare(table, Fa1Registers.FqBase, "FQ_BASE", RegisterAccess.ReadWrite, () => _base, OnBaseWrite);
        Declare(table, Fa1Registers.FqLog2, "FQ_LOG2", RegisterAccess.ReadWrite, () => _log2, OnLog2Write);
        Declare(table, Fa1Registers.FqTail, "FQ_TAIL", RegisterAccess.ReadOnly, () => _tail);
        Declare(table, Fa1Registers.FqHead, "FQ_HEAD", RegisterAccess.ReadWrite, () => _head, OnHeadWrite, mask: uint.MaxValue);
        Declare(table, Fa1Registers.FqStalls, "FQ_STALLS", RegisterAccess.ReadOnly, () => _stalls);
        Declare(table, Fa1Registers.FaultResp, "FAULT_RESP", RegisterAccess.WriteOnly, write: OnResponse);
        Declare(table, Fa1Registers.FaultPte, "FAULT_PTE", RegisterAccess.ReadWrite, () => _faultPte, v => _faultPte = v);
    }

    // Spec 3: reset clears the ring. Faults still outstanding belong to engines being stopped; they
    // end unanswered (the oracle counts them lost, which is what they are to the driver).
    public override void Reset()
    {
        _base = _log2 = _stalls = _faultPte = 0;
        _tail = _head = 0;
        _nextTag = 0;
        _live.Clear();
        _outstanding.Clear();
    }

    /// <summary>A fault is detected: it gets a tag not live now and is outstanding until finished.</summary>
    public DeviceFault Raise(byte context, ulong dva, bool write, bool present, int queue, ulong cycle, EngineWorker waiter)
    {
        // Tags are unique among live faults device-wide; at most one fault per command in flight is
        // outstanding (Queues x CommandsInFlight, far below 65536), so a free tag is always found within
        // that many + 1 tries.
        while (_live.ContainsKey(_nextTag))
        {
            _nextTag++;
        }

        var fault = new DeviceFault { Tag = _nextTag++, Context = context, Dva = dva, Write = write, Present = present, Queue = queue, Cycle = cycle, Waiter = waiter };
        _outstanding.Add(fault);
        Interlocked.Increment(ref _raised);
        return fault;
    }

    /// <summary>A fault answered at once, with no record (NOFAULT context or no ring).</summary>
    public void CountImmediateAbort()
    {
        Interlocked.Increment(ref _raised);
        Interlocked.Increment(ref _answered);
    }

    /// <summary>A fault held for room (raised, never recorded) ends without a record: the ring went away under it.</summary>
    public void AbortHeld() => Interlocked.Increment(ref _answered);

    /// <summary>
    /// Writes <paramref name="fault"/>'s record if the ring has room: slot FQ_TAIL mod entries, then
    /// FQ_TAIL advances, IRQ_STATUS.FAULT latches and vector 0 fires. False while the ring is full
    /// (the fault is held; FQ_STALLS counts it once) or when the IOMMU refused the ring (FATAL).
    /// </summary>
    public unsafe bool TryWriteRecord(DeviceFault fault)
    {
        if (IsFull)
        {
            if (!fault.Stalled)
            {
                fault.Stalled = true;
                _stalls++;
            }

            return false;
        }

        var seq = _tail;
        var slotIova = _base + ((ulong)(seq & (Entries - 1)) * FaultRecord.Size);
        using var scope = _model.Iommu.BeginDeviceAccess();
        if (!_model.Iommu.TryTranslate(slotIova, DmaAccess.DeviceWrite, out var slot))
        {
            // spec 3, 6: a refused ring access is FATAL cause 1 with the IOVA page.
            _model.EnterFatal(ErrorRegister.ForUnmappedIova(slotIova));
            return false;
        }

        var record = new FaultRecord
        {
            Dva = fault.Dva,
            Tag = fault.Tag,
            Context = fault.Context,
            Flags = (fault.Write ? FaultRecordFlags.Write : 0) | (fault.Present ? FaultRecordFlags.Present : 0),
            Queue = (ushort)fault.Queue,
            Cycle = fault.Cycle,
            Sequence = seq,
        };
        var words = (ulong*)slot.Host;
        var source = (ulong*)&record;
        for (var i = 0; i < FaultRecord.Size / sizeof(ulong); i++)
        {
            Volatile.Write(ref words[i], source[i]);
        }

        _tail = seq + 1;
        fault.Recorded = true;
        _live[fault.Tag] = fault;
        _model.RaiseInterruptLocked(InterruptCauses.Fault);
        return true;
    }

    /// <summary>Spec 4.3 (b): an invalidation kills every fault outstanding when it is issued.</summary>
    public void KillOutstanding()
    {
        foreach (var fault in _outstanding)
        {
            fault.Killed = true;
        }
    }

    /// <summary>The engine is done with <paramref name="fault"/> (restarted, aborted, or stopped).</summary>
    public void Finish(DeviceFault fault)
    {
        _outstanding.Remove(fault);

        // Only this fault's tag: after a reset the same tag may name a newer fault.
        if (_live.TryGetValue(fault.Tag, out var live) && ReferenceEquals(live, fault))
        {
            _live.Remove(fault.Tag);
        }
    }

    /// <summary>Outstanding faults now (raised, not yet finished by their engine).</summary>
    public int Outstanding => _outstanding.Count;

    // Decision D14 applies to FQ_BASE too: misaligned is FATAL cause 2, detail the register offset.
    private void OnBaseWrite(ulong value)
    {
        _base = value;
        if (value % RingLimits.Alignment != 0)
        {
            _model.EnterFatal(ErrorRegister.ForBadRingConfiguration(Fa1Registers.FqBase));
        }
    }

    // Spec 4.4: writing FQ_LOG2 resets head and tail; 6..16, or 0 for no ring (D25); else FATAL cause 2.
    private void OnLog2Write(ulong value)
    {
        _log2 = value;
        _tail = _head = 0;
        if (value != 0 && value is < RingLimits.FaultRingMinLog2 or > RingLimits.FaultRingMaxLog2)
        {
            _log2 = 0;
            _model.EnterFatal(ErrorRegister.ForBadRingConfiguration(Fa1Registers.FqLog2));
        }

        WakeEngines?.Invoke(null);
    }

    // Decision D36: FQ_HEAD is a 32-bit count (bits 63:32 are not stored). One ahead of FQ_TAIL or more than a
    // ring behind it is kept and counted, and the ring looks full until the driver writes a sane value: not
    // FATAL, as for CQ_HEAD (D22), since the driver may still fix it and no record is lost meanwhile.
    private void OnHeadWrite(ulong value)
    {
        _head = (uint)value;
        if (IsConfigured && _tail - _head > Entries)
        {
            Interlocked.Increment(ref _badHeadWrites);
        }

        WakeEngines?.Invoke(null); // held faults may now fit
    }

    /// <summary>
    /// Fault injection, register lock held: writes <paramref name="record"/> as given (any sequence, context,
    /// tag, flags or reserved bits) into the slot at FQ_TAIL, advances FQ_TAIL, latches FAULT and sends
    /// vector 0, as if the device had produced it. Nothing becomes live: a response naming its tag is ignored
    /// and counted unless that tag happens to be live. False (nothing done) when there is no ring, it is
    /// full, or the IOMMU refuses the slot.
    /// </summary>
    public unsafe bool InjectRecord(in FaultRecord record)
    {
        if (!IsConfigured || IsFull)
        {
            return false;
        }

        var slotIova = _base + ((ulong)(_tail & (Entries - 1)) * FaultRecord.Size);
        using (_model.Iommu.BeginDeviceAccess())
        {
            if (!_model.Iommu.TryTranslate(slotIova, DmaAccess.DeviceWrite, out var slot))
            {
                return false;
            }

            fixed (FaultRecord* source = &record)
            {
                for (var i = 0; i < FaultRecord.Size / sizeof(ulong); i++)
                {
                    Volatile.Write(ref ((ulong*)slot.Host)[i], ((ulong*)source)[i]);
                }
            }
        }

        _tail++;
        _model.RaiseInterruptLocked(InterruptCauses.Fault);
        return true;
    }

    /// <summary>
    /// Fault injection, register lock held: FQ_TAIL jumps by <paramref name="count"/> without any record written
    /// (past the ring when <paramref name="count"/> exceeds its entries), and FAULT is raised. False without a ring.
    /// </summary>
    public bool InjectTailJump(uint count)
    {
        if (!IsConfigured)
        {
            return false;
        }

        _tail += count;
        _model.RaiseInterruptLocked(InterruptCauses.Fault);
        return true;
    }

    // Spec 4.4: a response names a live tag and its context; anything else is ignored and counted (D27). So is
    // one with bits above the code set (D37): a torn or garbage write must not release a stalled access.
    private void OnResponse(ulong raw)
    {
        var response = FaultResponse.FromRaw(raw);
        if ((raw & ~FaultResponseBits) != 0
            || !_live.TryGetValue(response.Tag, out var fault)
            || fault.Context != response.Context
            || response.Code is not (FaultResponseCode.Retry or FaultResponseCode.Abort or FaultResponseCode.Dropin))
        {
            Interlocked.Increment(ref _ignoredResponses);
            return;
        }

        _live.Remove(response.Tag);
        fault.DropinPte = _faultPte;
        fault.Response = response.Code;
        Interlocked.Increment(ref _answered);

        // Decision D38: only the stalled lane needs the answer, and it is woken once the write has released the lock (a lane
        // that has not gone to sleep yet finds the response when it looks under the lock).
        if (fault.Sleeping)
        {
            _model.WakeAfterWrite(fault.Waiter);
        }
    }
}
