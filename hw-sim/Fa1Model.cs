using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>
/// The FA-1 software model: register for register the device of shared/spec/fa1-device.md, behind
/// the same seam a VFIO BAR mapping offers (one 64-bit read or write at an offset).
/// </summary>
/// <remarks>
/// Concurrency: every register access and every side effect runs under <see cref="_lock"/>, the
/// model's register bus. Device engines (later blocks) take the same lock for state changes and do
/// their modelled work outside it, so a doorbell write never waits behind a long DMA.
/// </remarks>
public sealed partial class Fa1Model : IDisposable
{
    private readonly Lock _lock = new();
    private readonly RegisterTable _registers = new();
    private readonly List<DeviceBlock> _blocks = [];
    private readonly InterruptController _interrupts;
    private readonly FaultRing _faultRing;
    private readonly MmuBlock _mmu;
    private readonly QueueBlock _queues;
    private readonly List<EngineWorker> _retired = [];
    private volatile int _retiredCount;
    private volatile bool _present = true;
    private long _powerOns;
    private bool _resetting;
    private ulong _resetDoneAt;
    private bool _fatal;
    private EngineWorker? _wakeAfterWrite;
    private ErrorRegister _error;
    private long _reads;
    private long _writes;
    private long _ignoredWrites;
    private long _unimplemented;
    private long _resets;
    private bool _disposed;

    /// <summary>A device in its reset state, built with <paramref name="options"/> (the spec's defaults when null).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range; the message names it.</exception>
    public Fa1Model(ModelOptions? options = null)
    {
        Options = options ?? new ModelOptions();
        Options.Validate();
        Clock = ModelClock.Create(Options.Clock);
        _interrupts = new InterruptController(Options.MsixVectors);
        Iommu = new ModelIommu(Options.IovaBits, Options.MemlockLimitBytes, Options.IommuMappingLimit);
        DeclareGlobalRegisters();
        _faultRing = new FaultRing(this);
        AddBlock(_faultRing);
        _mmu = new MmuBlock(Options, Clock, Iommu, _faultRing);
        AddBlock(_mmu);
        _queues = new QueueBlock(this, _mmu, _faultRing);
        AddBlock(_queues);
        Inject = new ModelFaultInjection(this);
    }

    /// <summary>The settings this model was built with.</summary>
    public ModelOptions Options { get; }

    /// <summary>The clock behind CYCLES and every modelled cost.</summary>
    internal ModelClock Clock { get; }

    /// <summary>The platform IOMMU every device access goes through (spec 6).</summary>
    public ModelIommu Iommu { get; }

    /// <summary>False while the device is off the bus (<see cref="ModelFaultInjection.RemoveFromBus"/>): every read returns all ones (spec 2).</summary>
    internal bool IsPresent => _present;

    /// <summary>
    /// Returns to the bus so far (each a cold reset, R1). A front end with state of its own that a power cycle clears
    /// (the vfio-user server's config space) compares it with the count it last saw.
    /// </summary>
    internal long PowerOns => Interlocked.Read(ref _powerOns);

    /// <summary>
    /// Fault injection: surprise removal and return, a hung engine, lost MSI-X messages, a stuck INV_DONE, FATAL,
    /// a spurious ERROR interrupt, garbage in the rings. Each acts as the device would at that moment.
    /// </summary>
    public ModelFaultInjection Inject { get; }

    /// <summary>Counters of what the model saw.</summary>
    internal ModelCounters Counters => new(
        Interlocked.Read(ref _reads),
        Interlocked.Read(ref _writes),
        Interlocked.Read(ref _ignoredWrites),
        Interlocked.Read(ref _unimplemented),
        _interrupts.Messages,
        Interlocked.Read(ref _resets));

    /// <summary>One 64-bit register read at <paramref name="offset"/> of BAR0.</summary>
    public ulong Read64(uint offset)
    {
        CheckOffset(offset);
        if (!_present)
        {
            return Fa1Identity.DeviceLost;
        }

        Interlocked.Increment(ref _reads);
        if (Clock.Mode == ClockMode.Virtual)
        {
            // A non-posted read is a round trip across the link; on the wall clock the host's own
            // access time is that cost, on the virtual clock it is charged here.
            Clock.Spend(Options.MmioReadCycles);
        }

        lock (_lock)
        {
            if (!_present)
            {
                return Fa1Identity.DeviceLost;
            }

            PollReset();
            var register = _registers.Find(offset);
            if (register is null)
            {
                // Spec 2: reads of unimplemented offsets return 0.
                Interlocked.Increment(ref _unimplemented);
                return 0;
            }

            return register.Access switch
            {
                RegisterAccess.WriteOnly => 0,
                _ => register.OnRead?.Invoke() ?? register.Value,
            };
        }
    }

    /// <summary>One 64-bit register write at <paramref name="offset"/> of BAR0 (posted: costs the host nothing).</summary>
    public void Write64(uint offset, ulong value)
    {
        CheckOffset(offset);
        if (!_present)
        {
            return;
        }

        Interlocked.Increment(ref _writes);
        EngineWorker? wake = null;
        lock (_lock)
        {
            if (!_present)
            {
                return;
            }

            PollReset();
            var register = _registers.Find(offset);
            if (register is null)
            {
                // Spec 2: writes to unimplemented offsets are ignored.
                Interlocked.Increment(ref _unimplemented);
                return;
            }

            if (_resetting || register.Access == RegisterAccess.ReadOnly)
            {
                // Decision: while RESETTING the device takes no writes; RO registers never do.
                Interlocked.Increment(ref _ignoredWrites);
                return;
            }

            switch (register.Access)
            {
                case RegisterAccess.ReadWrite:
                    register.Value = (register.Value & ~register.WritableMask) | (value & register.WritableMask);
                    register.OnWrite?.Invoke(register.Value);
                    break;
                case RegisterAccess.WriteOneToClear:
                    register.Value &= ~value;
                    register.OnWrite?.Invoke(value);
                    break;
                case RegisterAccess.WriteOnly:
                    register.OnWrite?.Invoke(value);
                    break;
            }

            (wake, _wakeAfterWrite) = (_wakeAfterWrite, null);
        }

        // Decision D38: the lane a fault response released is woken once the lock is free (its first step takes it).
        wake?.Wake.Set();
        JoinRetiredEngines();
    }

    /// <summary>
    /// Register lock held, inside a register write: <paramref name="lane"/> is to be woken once the write has released
    /// the lock (decision D38: a woken lane's first step is to take it).
    /// </summary>
    internal void WakeAfterWrite(EngineWorker lane)
    {
        _wakeAfterWrite?.Wake.Set(); // one slot: a second request in the same write (none today) is served at once
        _wakeAfterWrite = lane;
    }

    /// <summary>
    /// Connects MSI-X vectors to eventfds (what VFIO_DEVICE_SET_IRQS does on the board). Vector 0 is
    /// FAULT, 1 COMPLETION, 2 ERROR; returns how many vectors the host granted (3, or 1).
    /// The caller keeps ownership of the eventfds and must <see cref="DisconnectInterrupts"/> before closing them.
    /// </summary>
    public int ConnectInterrupts(IReadOnlyList<EventFd?> vectors)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        lock (_lock)
        {
            return _interrupts.Connect(vectors);
        }
    }

    /// <summary>Disconnects every vector; later causes still latch in IRQ_STATUS.</summary>
    public void DisconnectInterrupts()
    {
        lock (_lock)
        {
            _interrupts.Disconnect();
        }
    }

    /// <summary>Latches <paramref name="causes"/> and sends MSI-X messages for unmasked ones (device engines use this).</summary>
    internal void RaiseInterrupt(InterruptCauses causes)
    {
        lock (_lock)
        {
            if (_present)
            {
                _interrupts.Raise(causes & InterruptCauses.All);
            }
        }
    }

    /// <summary>Makes the device FATAL with <paramref name="cause"/> (spec 3), raising the ERROR interrupt.</summary>
    internal void InjectFatal(FatalCause cause, uint detail = 0)
    {
        lock (_lock)
        {
            EnterFatal(new ErrorRegister(cause, detail));
        }
    }

    /// <summary>
    /// Stops the device: every engine thread is stopped and joined (bounded: an engine notices a stop
    /// within one page of work), interrupts are disconnected, and the device reads as gone. Then the
    /// platform IOMMU drops every mapping still there, as closing a VFIO container does, and gives back
    /// the memory it held (D32).
    /// </summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _interrupts.Disconnect();
            _present = false;
            _queues.StopAll();
        }

        // A pending return (RemoveFromBus with returnAfter) is cancelled, and a return running now is waited for
        // (bounded), so no timer callback outlives the model.
        Inject.Dispose();
        JoinRetiredEngines();
        Iommu.Clear();
    }

    /// <summary>MSI-X messages lost by fault injection (R5).</summary>
    internal long LostInterruptMessages => _interrupts.Lost;

    /// <summary>Engine threads alive now (started and not yet joined): for leak checks.</summary>
    internal int EngineThreads
    {
        get
        {
            lock (_lock)
            {
                return _queues.LiveWorkers + _retired.Count;
            }
        }
    }

    /// <summary>
    /// The model's oracle for tests: what a correct driver and device never produce. Cumulative
    /// since the model was built (a reset does not clear it).
    /// </summary>
    public ModelOracle Oracle
    {
        get
        {
            lock (_lock)
            {
                return new ModelOracle(
                    _mmu.Oracle.DataAccesses,
                    _mmu.Oracle.StaleAccesses,
                    _faultRing.Raised,
                    _faultRing.Raised - _faultRing.Answered,
                    _faultRing.IgnoredResponses)
                {
                    FreedMemoryAccesses = Iommu.FreedMemoryAccesses,
                    DropinMismatches = _mmu.Oracle.DropinMismatches,
                    AuditViolations = _mmu.Oracle.AuditViolations,
                    BadRingHeadWrites = _faultRing.BadHeadWrites + _queues.BadHeadWrites,
                };
            }
        }
    }

    /// <summary>
    /// The oracle's audit (decision D33): every TLB and walk-cache entry of <paramref name="context"/> (every
    /// context when null) that serves DVAs in [<paramref name="dva"/>, + <paramref name="length"/>) is compared
    /// with the page table in memory now; each one that grants more (a TLB leaf with an IOVA or permission the
    /// table's leaf lacks, a walk-cache entry pointing at a table the live table no longer links) is a violation.
    /// Call it after a driver operation that removed or downgraded translations has returned, while no other
    /// removal covering the range is between its table change and its fence: the device cannot tell a removal
    /// in progress from a forgotten invalidation. Each violation also counts in <see cref="ModelOracle.AuditViolations"/>.
    /// </summary>
    public IReadOnlyList<TranslationAuditViolation> AuditTranslations(int? context = null, ulong dva = 0, ulong length = ulong.MaxValue)
    {
        var firstPage = dva >> PageTableFormat.PageShift;
        var end = dva + length < dva ? ulong.MaxValue : dva + length;
        var endPage = end == ulong.MaxValue ? ulong.MaxValue : (end + PageTableFormat.PageSize - 1) >> PageTableFormat.PageShift;
        return _mmu.Oracle.Audit(context, firstPage, endPage);
    }

    /// <summary>Invalidations issued since reset (diagnostics; INV_DONE counts the completed ones).</summary>
    internal long InvalidationsIssued => _mmu.InvalidationsIssued;

    /// <summary>The model's register lock: engines take it for every change of device state (see the remarks).</summary>
    internal Lock RegisterLock => _lock;

    /// <summary>Register lock held: the device may start commands (present, not FATAL, not resetting, CTRL.ENABLE).</summary>
    internal bool IsRunnableLocked =>
        _present && !_fatal && !_resetting && !_disposed && (ControlRegister.Value & (ulong)ControlBits.Enable) != 0;

    /// <summary>Register lock held: the device is FATAL (or gone), and posts nothing more.</summary>
    internal bool IsFatalLocked => _fatal || !_present || _disposed;

    /// <summary>
    /// Test hook: runs for every data access once the MMU and the IOMMU translated it, just before its
    /// bytes move, while it holds its fence ticket (spec 4.3) and its IOMMU access scope (an unmap
    /// waits for it, so a hook must not unmap itself).
    /// </summary>
    internal Action<DataAccess>? DataAccessHook { get; set; }

    /// <summary>Register lock held: MSI-X messages from now on are held for the caller (InterruptController's remarks).</summary>
    internal void DeferInterrupts() => _interrupts.BeginDeferral();

    /// <summary>Register lock held: ends <see cref="DeferInterrupts"/>; the held messages go to <paramref name="messages"/>.</summary>
    internal int EndDeferInterrupts(ref PendingMessages messages) => _interrupts.EndDeferral(ref messages);

    /// <summary>The register lock released: sends the messages <see cref="EndDeferInterrupts"/> handed back.</summary>
    internal void DeliverInterrupts(ref PendingMessages messages, int count) => _interrupts.Deliver(ref messages, count);

    /// <summary>Register lock held: latches and sends <paramref name="causes"/>.</summary>
    internal void RaiseInterruptLocked(InterruptCauses causes)
    {
        if (_present)
        {
            _interrupts.Raise(causes & InterruptCauses.All);
        }
    }

    /// <summary>
    /// Register lock held: <paramref name="worker"/> is told to stop; it is joined by
    /// <see cref="JoinRetiredEngines"/> once the lock is released, never while holding it (its last
    /// steps may need the lock).
    /// </summary>
    internal void Retire(EngineWorker worker)
    {
        worker.RequestStop();
        _retired.Add(worker);
        _retiredCount = _retired.Count;
    }

    // Joins stopped engine threads, without the register lock. A thread that does not end within the
    // bound (a test hook holding it), or that is the caller itself (a hook writing a register), stays
    // listed and is joined by a later call.
    internal void JoinRetiredEngines()
    {
        if (_retiredCount == 0)
        {
            return;
        }

        EngineWorker[] retired;
        lock (_lock)
        {
            retired = [.. _retired];
        }

        foreach (var worker in retired)
        {
            if (worker.Thread == Thread.CurrentThread || (worker.Thread.ThreadState != ThreadState.Unstarted && !worker.Thread.Join(TimeSpan.FromSeconds(10))))
            {
                continue;
            }

            lock (_lock)
            {
                if (_retired.Remove(worker))
                {
                    worker.Dispose();
                }

                _retiredCount = _retired.Count;
            }
        }
    }

    /// <summary>Adds a block (MMU, fault ring, queues) and declares its registers. Called while building the model.</summary>
    internal void AddBlock(DeviceBlock block)
    {
        lock (_lock)
        {
            block.Declare(_registers);
            _blocks.Add(block);
        }
    }

    /// <summary>Called by blocks with the lock held: the device stops and reports <paramref name="error"/> (spec 3).</summary>
    internal void EnterFatal(ErrorRegister error)
    {
        // A device off the bus has no state the host can see; what it was doing is lost with it (R2).
        if (_fatal || !_present)
        {
            return;
        }

        _fatal = true;
        _error = error;
        _interrupts.Raise(InterruptCauses.Error);
    }

    private static void CheckOffset(uint offset)
    {
        if (offset >= Fa1Identity.Bar0Size)
        {
            ThrowOffset(offset);
        }
    }

    private static void ThrowOffset(uint offset) =>
        throw new ArgumentOutOfRangeException(nameof(offset), offset, $"BAR0 offset 0x{offset:X} is outside the {Fa1Identity.Bar0Size}-byte BAR.");

    // The global block of spec 3. Every register's side effect is declared in this one table.
    private void DeclareGlobalRegisters()
    {
        var caps = Options.Capabilities.Raw;
        Declare(Fa1Registers.Id, "ID", RegisterAccess.ReadOnly, read: () => Options.IdValue);
        Declare(Fa1Registers.Version, "VERSION", RegisterAccess.ReadOnly, read: () => Options.Version.Raw);
        Declare(Fa1Registers.Caps, "CAPS", RegisterAccess.ReadOnly, read: () => caps);
        Declare(Fa1Registers.ClockHz, "CLOCK_HZ", RegisterAccess.ReadOnly, read: () => Clock.Hz);
        Declare(Fa1Registers.Cycles, "CYCLES", RegisterAccess.ReadOnly, read: () => Clock.Now);
        Declare(Fa1Registers.Scratch, "SCRATCH", RegisterAccess.ReadWrite);
        Declare(Fa1Registers.Ctrl, "CTRL", RegisterAccess.ReadWrite, write: OnControlWrite,
            mask: (ulong)(ControlBits.Enable | ControlBits.Reset));
        Declare(Fa1Registers.Status, "STATUS", RegisterAccess.ReadOnly, read: ReadStatus);
        Declare(Fa1Registers.Error, "ERROR", RegisterAccess.ReadOnly, read: () => _error.Raw);
        Declare(Fa1Registers.IrqStatus, "IRQ_STATUS", RegisterAccess.WriteOneToClear,
            read: () => _interrupts.Status, write: _interrupts.ClearStatus);
        Declare(Fa1Registers.IrqMask, "IRQ_MASK", RegisterAccess.ReadWrite,
            read: () => _interrupts.Mask, write: _interrupts.WriteMask, mask: (ulong)InterruptCauses.All);
    }

    private void Declare(uint offset, string name, RegisterAccess access, Func<ulong>? read = null, Action<ulong>? write = null, ulong mask = ulong.MaxValue) =>
        _registers.Add(new Register { Offset = offset, Name = name, Access = access, OnRead = read, OnWrite = write, WritableMask = mask });

    private ulong ReadStatus()
    {
        var status = 0UL;
        if (_resetting)
        {
            status |= (ulong)StatusBits.Resetting;
        }
        else
        {
            status |= (ulong)StatusBits.Ready;
        }

        if (_fatal)
        {
            status |= (ulong)StatusBits.Fatal;
        }

        foreach (var block in _blocks)
        {
            status |= block.StatusBits;
        }

        return status;
    }

    private void OnControlWrite(ulong value)
    {
        if ((value & (ulong)ControlBits.Reset) != 0)
        {
            StartReset();
            return;
        }

        foreach (var block in _blocks)
        {
            block.ControlChanged((value & (ulong)ControlBits.Enable) != 0);
        }
    }

    // Spec 3: a reset clears TLB, walk cache, contexts, queues, rings and counters; RESET self-clears
    // when done. The state is cleared at once and the device reports RESETTING for ResetCycles.
    private void StartReset(bool coldReset = false)
    {
        Interlocked.Increment(ref _resets);
        _registers.ResetStorage();
        _interrupts.Reset();
        _fatal = false;
        _error = default;
        foreach (var block in _blocks)
        {
            block.Reset();
        }

        if (Options.InjectDropOffBusOnReset && !coldReset)
        {
            _present = false;
        }

        Clock.Restart();
        _resetting = true;
        _resetDoneAt = Options.InjectStuckReset ? ulong.MaxValue : Options.ResetCycles;
        ControlRegister.Value = (ulong)ControlBits.Reset;
    }

    // Reset completion is evaluated when anything looks at the device, so it needs no timer thread
    // and follows the virtual clock exactly.
    private void PollReset()
    {
        if (_resetting && Clock.Now >= _resetDoneAt)
        {
            _resetting = false;
            ControlRegister.Value &= ~(ulong)ControlBits.Reset;
        }
    }

    private Register ControlRegister => _registers.Find(Fa1Registers.Ctrl)!;
}
