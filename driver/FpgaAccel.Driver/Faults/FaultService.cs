using System.Diagnostics;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Dma;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver.Faults;

/// <summary>
/// The device page-fault service (spec 4.4): a dedicated thread that waits on the FAULT eventfd,
/// drains the fault ring in batches, validates every record (the device is not trusted), looks each
/// address up in the context's mirror without a lock, and answers DROPIN, RETRY or ABORT.
/// </summary>
/// <remarks>
/// No fault is lost: the thread clears IRQ_STATUS.FAULT before it reads FQ_TAIL, so a record produced
/// after that read raises a new message (spec 3), which wakes the next wait; and a blocked wait is
/// bounded by <see cref="FaultServiceOptions.IdlePoll"/>, so even a lost message delays a fault, never
/// strands it. Each record is answered exactly once, in ring order, and FQ_HEAD advances only past
/// records already answered. The steady-state path allocates nothing: records are read in place,
/// the mirror lookup and the page-table install use preallocated state, metrics take no tags.
///
/// Device failure (issue 12): a lost device (FQ_TAIL all ones, confirmed by ID) and a tail that jumps past the ring
/// (records overwritten unread: their accesses would stall for good) are reported to the device's health, which
/// releases every command; the thread then blocks (no timeout, no register reads) until <see cref="Reattach"/> gives it
/// a fresh ring after the reset, or Dispose stops it. <see cref="_drainLock"/> keeps a drain and a reattach apart.
/// </remarks>
public sealed partial class FaultService : IDisposable
{
    private const ulong StopToken = 1;
    private const ulong FaultToken = 2;
    // 1 while the service thread answers a batch and runs its reclaim (WaitUntilIdle).
    private int _busy;

    private readonly FpgaDevice _device;
    private readonly DeviceMmu _mmu;
    private readonly FaultServiceOptions _options;
    private readonly ILogger _logger;
    private readonly DmaMemory? _ring;
    private readonly uint _entries;
    private readonly EventFd? _stop;
    private readonly EventFd? _wake;
    private readonly bool _ownsWake;
    private readonly Epoll? _epoll;
    private readonly Thread? _thread;
    private readonly Action _onWake;
    private readonly bool _dropin;
    private readonly double _microsecondsPerCycle;
    private readonly HashSet<uint> _abortLogged = [];
    private long _lastFailureLog;
    private long _unloggedFailures;
    private uint _head;
    private long _allocatedBytes;
    private volatile bool _running = true;
    private readonly Lock _drainLock = new();
    private int _disposed;

    internal FaultService(FpgaDevice device, FaultServiceOptions options, ILogger logger)
    {
        options.Validate();
        _device = device;
        _mmu = device.Mmu;
        _options = options;
        _logger = logger;
        _entries = 1u << options.RingLog2;
        _dropin = options.UseDropin && device.Info.Capabilities.Dropin;
        _microsecondsPerCycle = 1e6 / device.Info.ClockHz;
        _trace = options.TraceStages ? new FaultStageTrace(device.Backend, device.Info.ClockHz) : null;
        Metrics = new FaultMetrics(() => _mmu.Pager.Evictions, () => _mmu.Pager.PinnedPages, () => _mmu.Pager.LimitEvictions);
        _onWake = () => _wake!.Signal();
        EventFd? claimed = null;
        try
        {
            _ring = DmaMemory.Allocate(_mmu.Iommu, _entries * (ulong)FaultRecord.Size);
            _stop = EventFd.Create();
            _epoll = Epoll.Create();
            claimed = device.Interrupts.Claim(InterruptCauses.Fault);
            if (claimed is not null)
            {
                _wake = claimed;
                _ownsWake = false;
            }
            else
            {
                // One vector for every cause: the dispatcher demultiplexes and forwards FAULT to us.
                _wake = EventFd.Create();
                _ownsWake = true;
                device.Interrupts.Subscribe(InterruptCauses.Fault, _onWake);
            }

            _epoll.Add(_stop.Handle, EpollEvents.In, StopToken);
            _epoll.Add(_wake.Handle, EpollEvents.In, FaultToken);

            var b = device.Backend;
            b.Write64(Fa1Registers.FqBase, _ring.Iova);
            b.Write64(Fa1Registers.FqLog2, (ulong)options.RingLog2); // spec 4.4: resets head and tail
            var tail = b.Read64(Fa1Registers.FqTail);
            if (tail != 0)
            {
                // Spec 4.4: writing FQ_LOG2 resets the tail. Anything else is a device not to be trusted.
                throw tail == Fa1Identity.DeviceLost
                    ? new DeviceLostException("while starting the fault service (FQ_TAIL)", b.Description)
                    : new DeviceProtocolException($"FQ_TAIL reads {tail} right after FQ_LOG2 was written; spec 4.4 resets it to 0. The device cannot be trusted with faults: reset it.");
            }

            _head = 0;
            b.Write64(Fa1Registers.FqHead, _head);
            _thread = new Thread(Run) { IsBackground = true, Name = "fpgaaccel-faults" };
            _thread.Start();
        }
        catch
        {
            Detach();
            ReleaseInterrupt();
            _epoll?.Dispose();
            _stop?.Dispose();
            if (_ownsWake)
            {
                _wake?.Dispose();
            }

            _ring?.Dispose();
            Metrics.Dispose();
            throw;
        }

        LogStarted(_logger, _entries, options.Mode, _dropin, claimed is not null);
    }

    /// <summary>Counters and instruments of the fault path.</summary>
    public FaultMetrics Metrics { get; }

    /// <summary>
    /// Bytes the service thread has allocated since it started (GC.GetAllocatedBytesForCurrentThread,
    /// sampled after each batch): the steady-state fault path should add nothing.
    /// </summary>
    public long AllocatedBytes => Interlocked.Read(ref _allocatedBytes);

    /// <summary>Wait mode.</summary>
    public FaultWaitMode Mode => _options.Mode;

    /// <summary>True while the service thread runs.</summary>
    public bool IsRunning => _running && _thread is { IsAlive: true };

    /// <summary>
    /// Stops the service: the thread first (bounded: it wakes at once, and finishes the batch it is in), then the ring
    /// is detached from the device (FQ_LOG2 = 0, FQ_BASE = 0: with no ring a fault aborts its command at once, decision
    /// D25), records the device wrote before that are answered ABORT, the interrupt vector or handler is given back,
    /// and only then is the ring freed. A new service may be started afterwards.
    /// </summary>
    /// <remarks>
    /// Why this order: a ring still configured after it is freed would receive the next fault record (on a board, in
    /// whatever memory later reuses that IOVA; on the model, a FATAL unmapped access). Detaching while the thread
    /// still drains would pull the tail from under it, so the thread goes first; the faults it did not see are in the
    /// ring with their sequence numbers (the device writes a record before it advances FQ_TAIL, and the FQ_LOG2 write
    /// is ordered after those writes by the read that follows it), so each gets its answer and no access stays stalled.
    /// </remarks>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        ScheduleHooks.At(SchedulePoint.FaultServiceStopping);
        _running = false;
        _stop!.Signal();
        var stopped = _thread!.Join(_device.Options.DeviceTimeout + TimeSpan.FromSeconds(5));
        if (!stopped)
        {
            LogStuck(_logger);
        }

        try
        {
            Detach();
            AnswerStranded();
        }
        catch (FpgaAccelException ex)
        {
            LogDetachFailed(_logger, ex);
        }

        ReleaseInterrupt();
        _device.OnFaultServiceStopped(this);
        if (!stopped)
        {
            // The thread may still read the ring and wait on the descriptors: leak them rather than free them under it.
            return;
        }

        _epoll!.Dispose();
        _stop.Dispose();
        if (_ownsWake)
        {
            _wake!.Dispose();
        }

        // The ring's IOMMU mapping goes with it: a late record write is refused, not misplaced.
        _ring!.Dispose();
        Metrics.Dispose();
    }

    // Spec 4.4 and D25: no ring. Writing FQ_LOG2 also resets head and tail; reading it back orders the writes after
    // every record the device wrote before them (a read completion pushes earlier posted writes on PCIe).
    private void Detach()
    {
        var b = _device.Backend;
        b.Write64(Fa1Registers.FqLog2, 0);
        b.Write64(Fa1Registers.FqBase, 0);
        if (b.Read64(Fa1Registers.FqLog2) == Fa1Identity.DeviceLost)
        {
            throw new DeviceLostException("while detaching the fault ring", b.Description);
        }
    }

    // Records written after the thread's last batch: those whose sequence follows on from the head, in ring order,
    // are answered ABORT (their tags are live and their accesses stalled); the first slot that does not continue the
    // sequence ends the scan (a stale slot from an earlier lap). At most one ring's worth.
    private unsafe void AnswerStranded()
    {
        if (_ring is null)
        {
            return;
        }

        var records = (FaultRecord*)_ring.Pointer;
        for (var i = 0u; i < _entries; i++)
        {
            var expected = _head + i;
            var record = records[expected & (_entries - 1)];
            if (record.Sequence != expected || !IsWellFormed(in record))
            {
                return;
            }

            _device.Backend.Write64(Fa1Registers.FaultResp, new FaultResponse(record.Tag, record.Context, FaultResponseCode.Abort).Raw);
            Metrics.Fault();
            Metrics.Abort();
        }
    }

    private void ReleaseInterrupt()
    {
        if (_wake is null)
        {
            return;
        }

        if (_ownsWake)
        {
            _device.Interrupts.Unsubscribe(InterruptCauses.Fault, _onWake);
        }
        else
        {
            _device.Interrupts.Release(InterruptCauses.Fault);
        }
    }

    /// <summary>
    /// Waits (at most <paramref name="timeout"/>) until the service is between batches: no fault being answered and no
    /// reclaim batch in progress. A harness that audits the device's caches against the tables (IDeviceOracle.Audit)
    /// calls it first, since the reclaim after an answered batch (decision F3) clears entries before its fence on this
    /// thread, after the commands its answers completed have already returned. False on timeout.
    /// </summary>
    public bool WaitUntilIdle(TimeSpan timeout)
    {
        var start = Stopwatch.GetTimestamp();
        while (Volatile.Read(ref _busy) != 0)
        {
            if (Stopwatch.GetElapsedTime(start) > timeout)
            {
                return false;
            }

            Thread.Sleep(1);
        }

        return true;
    }

    private void Run()
    {
        _trace?.Own();
        _mmu.FaultTrace = _trace;
        Span<EpollReady> ready = stackalloc EpollReady[2];
        var idleMs = (int)Math.Clamp(_options.IdlePoll.TotalMilliseconds, 1, int.MaxValue);
        var allocatedAtStart = GC.GetAllocatedBytesForCurrentThread();
        var health = _device.Health;
        try
        {
            while (_running)
            {
                var ready0 = health.IsReady;
                try
                {
                    if (ready0)
                    {
                        // Busy from before the batch's answers to the end of its reclaim: a command those answers complete
                        // finds the service busy until the reclaim has fenced (WaitUntilIdle).
                        Volatile.Write(ref _busy, 1);
                        try
                        {
                            if (Drain() > 0)
                            {
                                if (!_options.ReclaimBeforeAnswer)
                                {
                                    ReclaimAfterBatch();
                                }

                                Interlocked.Exchange(ref _allocatedBytes, GC.GetAllocatedBytesForCurrentThread() - allocatedAtStart);
                                continue;
                            }
                        }
                        finally
                        {
                            Volatile.Write(ref _busy, 0);
                        }
                    }

                    if (ready0 && _options.Mode == FaultWaitMode.Adaptive && SpinForTail())
                    {
                        continue;
                    }
                }
                catch (DeviceLostException ex)
                {
                    // Issue 12: reported, not a silent stop. A device that is really gone blocks the wait below; one that
                    // only read all ones once (ID fine) is looked at again after the idle poll.
                    if (!health.ReportAllOnes(ex.When))
                    {
                        LogTransientAllOnes(_logger, ex.When);
                    }
                }

                // A failed device: block until Reattach or Dispose signals (no timeout, no register reads).
                var n = _epoll!.Wait(ready, health.IsReady ? idleMs : -1);
                for (var i = 0; i < n; i++)
                {
                    if (ready[i].Token == StopToken)
                    {
                        return;
                    }

                    _wake!.TryRead(out _);
                }
            }
        }
        catch (Exception ex)
        {
            LogServiceStopped(_logger, ex);
        }
        finally
        {
            _running = false;
            if (_trace is not null)
            {
                _mmu.FaultTrace = null;
            }
        }
    }

    // Adaptive mode: watch FQ_TAIL for a while before sleeping. True when a record arrived.
    private bool SpinForTail()
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(_options.SpinTime.TotalSeconds * Stopwatch.Frequency);
        var spin = default(SpinWait);
        while (_running && Stopwatch.GetTimestamp() < deadline)
        {
            if ((uint)_device.Backend.Read64(Fa1Registers.FqTail) != _head)
            {
                return true;
            }

            spin.SpinOnce(sleep1Threshold: -1);
        }

        return false;
    }

    private int Drain()
    {
        lock (_drainLock)
        {
            // A failure declared since the caller looked: the ring is not read until the reattach.
            return _device.Health.IsReady ? DrainLocked() : 0;
        }
    }

    /// <summary>
    /// After the device was reset (issue 12 recovery): the ring zeroed and programmed again (FQ_BASE, FQ_LOG2 resets head
    /// and tail), the head at 0, and the thread woken to serve it.
    /// </summary>
    internal unsafe void Reattach()
    {
        if (_ring is null || Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        lock (_drainLock)
        {
            new Span<byte>(_ring.Pointer, checked((int)_ring.Length)).Clear();
            var b = _device.Backend;
            b.Write64(Fa1Registers.FqBase, _ring.Iova);
            b.Write64(Fa1Registers.FqLog2, (ulong)_options.RingLog2);
            var tail = b.Read64(Fa1Registers.FqTail);
            if (tail != 0)
            {
                throw tail == Fa1Identity.DeviceLost
                    ? new DeviceLostException("while restoring the fault ring (FQ_TAIL)", b.Description)
                    : new DeviceProtocolException($"FQ_TAIL reads {tail} right after FQ_LOG2 was written; spec 4.4 resets it to 0. The device cannot be trusted with faults: reset it.");
            }

            _head = 0;
            b.Write64(Fa1Registers.FqHead, 0);
        }

        _wake?.Signal();
    }

    /// <summary>On the health thread: FQ_TAIL moved past the head while no FAULT message woke the service (lost MSI-X): wake it.</summary>
    internal void HealthSweep()
    {
        if (!_running || _wake is null)
        {
            return;
        }

        var tail = _device.Backend.Read64(Fa1Registers.FqTail);
        if (tail != Fa1Identity.DeviceLost && (uint)tail != Volatile.Read(ref _head))
        {
            _wake.Signal();
        }
    }

    private unsafe int DrainLocked()
    {
        var b = _device.Backend;

        // Acknowledge first, then look: a record produced after the FQ_TAIL read re-latches the cause.
        b.Write64(Fa1Registers.IrqStatus, (ulong)InterruptCauses.Fault);
        var rawTail = b.Read64(Fa1Registers.FqTail);
        if (rawTail == Fa1Identity.DeviceLost)
        {
            throw new DeviceLostException("while reading FQ_TAIL", b.Description);
        }

        var tail = (uint)rawTail;
        var available = tail - _head;
        if (available == 0)
        {
            return 0;
        }

        _trace?.BeginBatch();

        if (available > _entries)
        {
            // The device claims more records than the ring holds: records were overwritten before they were read, and the
            // accesses that raised them wait for answers that can never come. Issue 12: the device is declared hung
            // (every command released), not skipped silently; the ring stays as it is until the recovery's reset.
            Metrics.BadRecord();
            LogBadTail(_logger, tail, _head, _entries);
            _device.Health.Fail(DeviceState.Hung, $"FQ_TAIL {tail} is {tail - _head} records past the head {_head}, beyond the fault ring's {_entries} entries",
                new DeviceHungException("the fault ring overflowed", $"FQ_TAIL {tail} is {tail - _head} records past FQ_HEAD {_head}, beyond the ring's {_entries} entries: faults were overwritten before they were answered"));
            return 0;
        }

        var records = (FaultRecord*)_ring!.Pointer;
        for (var i = 0u; i < available; i++)
        {
            var record = records[(_head + i) & (_entries - 1)];
            Service(in record, _head + i);
        }

        _head = tail;
        b.Write64(Fa1Registers.FqHead, _head);
        return (int)available;
    }

    private void Service(in FaultRecord record, uint expectedSequence)
    {
        if (record.Sequence != expectedSequence || !IsWellFormed(in record))
        {
            // A stale slot, or a record the spec does not allow: its tag cannot be trusted, so it is
            // not answered (answering could release another access's tag).
            Metrics.BadRecord();
            LogBadRecord(_logger, expectedSequence, record.Sequence, record.Context, record.Tag, record.Dva);
            return;
        }

        Metrics.Fault();
        _trace?.Wake(record.Cycle);
        _trace?.Mark(FaultStage.Ring);
        var invalidationsBefore = _mmu.Invalidator.Issued;
        var write = (record.Flags & FaultRecordFlags.Write) != 0;
        var context = _mmu.Context(record.Context);
        PageTableEntry leaf = default;
        uint region = 0;
        FaultOutcome outcome;
        try
        {
            outcome = context is null ? FaultOutcome.Abort : context.ServiceFault(record.Dva, write, record.Queue, out leaf, out region);
        }
        catch (Exception ex) when (ex is not DeviceLostException)
        {
            // One fault that cannot be serviced (its page cannot be pinned or mapped, an eviction's fence timed out):
            // ServiceFault undid what it did, so answering ABORT ends only that fault's command; the service goes on.
            // A lost device ends the service (Run), since nothing it could answer would be heard.
            outcome = FaultOutcome.Abort;
            Metrics.Failure();
            LogFailureLimited(record.Context, record.Dva, write, ex);
        }

        if (_options.ReclaimBeforeAnswer)
        {
            ReclaimAfterBatch(); // the access is stalled: the batch meets the device at a point its own clock fixes
        }

        var b = _device.Backend;
        ScheduleHooks.At(SchedulePoint.FaultAnswering);
        if (outcome == FaultOutcome.Abort)
        {
            Metrics.Abort();
            LogAbortOnce(record.Context, region, record.Dva, write);
            Respond(b, record, new FaultResponse(record.Tag, record.Context, FaultResponseCode.Abort));
        }
        else if (_dropin)
        {
            // A 4 KiB leaf for the faulting page, even inside a 2 MiB leaf: DROPIN fills (ctx, DVA page).
            var page = record.Dva & ~(PageTableFormat.PageSize - 1);
            var iova = leaf.IsLeafBit ? leaf.Address + (page & (PageTableFormat.HugePageSize - 1)) : leaf.Address;
            var pte = PageTableEntry.Create(iova, leaf.Flags & (PteFlags.Valid | PteFlags.Read | PteFlags.Write));
            b.Write64(Fa1Registers.FaultPte, pte.Raw);
            Respond(b, record, new FaultResponse(record.Tag, record.Context, FaultResponseCode.Dropin));
            Metrics.Dropin(raced: _mmu.Invalidator.Issued != invalidationsBefore);
        }
        else
        {
            Respond(b, record, new FaultResponse(record.Tag, record.Context, FaultResponseCode.Retry));
            Metrics.Retry();
        }

        _trace?.Mark(FaultStage.Respond);
    }

    // The service time ends when the response is sent (decision F24): CYCLES is read just before the FAULT_RESP write. The
    // write is posted (on a board it leaves at once and costs the CPU nothing more); a read after it would also count
    // whatever runs before the read returns: on the model, the engine thread the write wakes, which on a busy core may
    // preempt this one for a whole command.
    private void Respond(IDeviceBackend backend, in FaultRecord record, FaultResponse response)
    {
        var now = backend.Read64(Fa1Registers.Cycles);
        backend.Write64(Fa1Registers.FaultResp, response.Raw);
        if (now != Fa1Identity.DeviceLost && now >= record.Cycle)
        {
            Metrics.ServiceTime((now - record.Cycle) * _microsecondsPerCycle);
        }
    }

    // Spec 4.4's record, range-checked: a context and a queue the device has, reserved fields zero, only WRITE and PRESENT, a DVA
    // inside the device's address space.
    private bool IsWellFormed(in FaultRecord record)
    {
        var caps = _device.Info.Capabilities;
        return record.Context < caps.Contexts && record.Queue < caps.Queues && record.Reserved0 == 0 && record.Reserved1 == 0
            && ((byte)record.Flags & ~3) == 0 && record.Dva < _device.VaLimit;
    }

    // Failures can come in floods (a memlock limit reached with nothing left to evict): one line a second at most,
    // saying how many were not logged in between.
    private void LogFailureLimited(byte context, ulong dva, bool write, Exception ex)
    {
        var now = Stopwatch.GetTimestamp();
        if (_lastFailureLog != 0 && Stopwatch.GetElapsedTime(_lastFailureLog, now) < TimeSpan.FromSeconds(1))
        {
            _unloggedFailures++;
            return;
        }

        LogFailure(_logger, context, dva, write, _unloggedFailures, ex);
        _lastFailureLog = now;
        _unloggedFailures = 0;
    }

    // Logged once per region (or, for addresses in no region, once per context): aborts can come in floods.
    private void LogAbortOnce(byte context, uint region, ulong dva, bool write)
    {
        var key = region != 0 ? region : 0x8000_0000u | context;
        if (_abortLogged.Add(key))
        {
            LogAbort(_logger, context, dva, write, region);
        }
    }

    [LoggerMessage(EventId = 50, Level = LogLevel.Information, Message = "Fault service started: {Entries}-entry ring, {Mode} wait, DROPIN {Dropin}, own vector {OwnVector}")]
    private static partial void LogStarted(ILogger logger, uint entries, FaultWaitMode mode, bool dropin, bool ownVector);

    [LoggerMessage(EventId = 51, Level = LogLevel.Warning, Message = "Fault aborted in context {Context} at DVA 0x{Dva:X} (write {Write}): region {Region} does not allow it (further aborts for it are not logged)")]
    private static partial void LogAbort(ILogger logger, byte context, ulong dva, bool write, uint region);

    [LoggerMessage(EventId = 52, Level = LogLevel.Error, Message = "Fault record rejected: expected seq {Expected}, record seq {Sequence}, ctx {Context}, tag {Tag}, DVA 0x{Dva:X}")]
    private static partial void LogBadRecord(ILogger logger, uint expected, uint sequence, byte context, ushort tag, ulong dva);

    [LoggerMessage(EventId = 53, Level = LogLevel.Error, Message = "FQ_TAIL {Tail} is {Ahead} ahead of the head {Head}, beyond the ring's {Entries} entries: records were overwritten unread; the device is declared hung")]
    private static partial void LogBadTailCore(ILogger logger, uint tail, uint ahead, uint head, uint entries);

    [LoggerMessage(EventId = 54, Level = LogLevel.Critical, Message = "Fault service stopped")]
    private static partial void LogServiceStopped(ILogger logger, Exception ex);

    [LoggerMessage(EventId = 56, Level = LogLevel.Error, Message = "Fault in context {Context} at DVA 0x{Dva:X} (write {Write}) could not be serviced and was aborted ({Unlogged} earlier failures not logged)")]
    private static partial void LogFailure(ILogger logger, byte context, ulong dva, bool write, long unlogged, Exception ex);

    [LoggerMessage(EventId = 57, Level = LogLevel.Error, Message = "Fault service stopped, but its ring could not be detached from the device")]
    private static partial void LogDetachFailed(ILogger logger, Exception ex);

    [LoggerMessage(EventId = 58, Level = LogLevel.Warning, Message = "FQ_TAIL read all ones {When}, but ID did not: looked at again later")]
    private static partial void LogTransientAllOnes(ILogger logger, string when);

    [LoggerMessage(EventId = 55, Level = LogLevel.Warning, Message = "Fault service thread did not stop in time; its ring and descriptors are left allocated")]
    private static partial void LogStuck(ILogger logger);

    private static void LogBadTail(ILogger logger, uint tail, uint head, uint entries) => LogBadTailCore(logger, tail, tail - head, head, entries);
}
