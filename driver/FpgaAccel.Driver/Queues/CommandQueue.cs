using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Dma;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver.Queues;

/// <summary>
/// One device queue (spec 5): a submission ring the device reads and a completion ring it writes,
/// both in DMA memory. Submitting returns a <see cref="ValueTask{TResult}"/> that completes when the
/// device's completion record for that command is seen.
/// </summary>
/// <remarks>
/// Flow control: a command holds a credit from submission until its completion is harvested, and
/// there are as many credits as ring entries. So the submission ring never overwrites a descriptor
/// the device has not consumed (it consumed it before completing it), and the completion ring never
/// holds more records than it has slots. A submitter with no credit waits; nothing is dropped.
/// Tags: [15:0] slot, [31:16] the slot's generation. The device is not trusted: a completion whose
/// slot is out of range, idle, or of another generation is counted and ignored.
/// Harvest invariant: records are consumed in ring order while their PHASE bit equals the current
/// lap's phase (1 on lap 0, toggling each lap); the PHASE field is read first with acquire semantics
/// (the device writes it last), so the rest of the record is complete when it is read.
/// The harvest path allocates nothing.
///
/// The device is not trusted (issue 11, defect 10). A record whose PHASE says "new" but whose tag names no command in
/// flight is either one the device really wrote with a bad tag, or a slot it never wrote (a PHASE glitch); only CQ_TAIL
/// tells them apart, so on that rare path the harvest reads it: a record below CQ_TAIL is consumed (counted, logged),
/// one at or past it is left alone (counted as a glitch) and the harvest stops there, so CQ_HEAD is never written past
/// CQ_TAIL (the device would then hold its completions for good, decision D22). Records with a live tag are consumed
/// without that read (the device writes a record before it advances CQ_TAIL, so such a record may be seen first), and
/// their status and fault count are checked: an unknown status, or FAULT with no fault counted (D18), fails the command
/// with <see cref="DeviceProtocolException"/>.
///
/// Closing (defect 9). Claim: after <see cref="Dispose"/> no thread touches the rings, every submitter ends, and the
/// device writes nothing more into them. Argument: Dispose sets <see cref="_closing"/> and then takes and releases
/// <see cref="_submitLock"/>, so a submission that passed its check has finished writing, and every later one sees the
/// flag and gives its credit back; credit waiters wait on <see cref="_closed"/> too, which Dispose cancels, and end
/// with <see cref="DisposedResourceException"/>. The harvest checks <see cref="_ringsFreed"/> under
/// <see cref="_harvestLock"/>, which Dispose sets under that lock before it frees the memory, so a harvest either
/// finished before or sees the flag (the poller is joined first; the interrupt dispatcher and <see cref="Poll"/> go
/// through the same check). The device: SQ_LOG2 = 0 stops new commands, and CQ_LOG2 = 0 (a teardown, decision D15)
/// leaves nowhere to post, so a command still running when the device timeout passed waits instead of writing a
/// completion into freed memory; a read back orders those writes before the free.
///
/// Failure (issue 12). Claim: once <see cref="Fail"/> returns, no command of this queue is pending, no submitter waits
/// for a credit, and no submission is accepted until <see cref="Reattach"/>. Argument: Fail publishes the failure
/// (volatile) and then takes and releases <see cref="_submitLock"/>, so a submission either finished posting (its slot is
/// set, and the sweep that follows under <see cref="_harvestLock"/> fails it) or sees the failure and gives its credit
/// back; every failed slot returns its credit, which wakes the credit waiters, whose <see cref="Post"/> then sees the
/// failure. The harvest does nothing while the queue is failed (the rings are frozen until the reset), so the poller
/// finds nothing outstanding and blocks on <see cref="_work"/>: it never spins on a failed device.
/// </remarks>
public sealed partial class CommandQueue : IDisposable
{
    private readonly FpgaDevice _device;
    private readonly ILogger _logger;
    private readonly DmaMemory _sq;
    private readonly DmaMemory _cq;
    private readonly int _log2;
    private readonly int _mask;
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2213", Justification = "Never disposed on purpose: a submitter that lost the race with Dispose still gives its credit back (Release), which a disposed semaphore would turn into ObjectDisposedException; its wait handle is never created, so there is nothing to free.")]
    private readonly SemaphoreSlim _credits;
    private readonly Lock _submitLock = new();
    private readonly Lock _harvestLock = new();
    private readonly CompletionSource?[] _slots;
    private readonly ushort[] _generations;
    private readonly Stack<int> _freeSlots;
    private readonly CompletionSourcePool _pool = new();
    private readonly Thread? _poller;
    private readonly ManualResetEventSlim _work = new(false);
    private ulong _tail;
    private ulong _cqHead;
    private long _outstanding;
    private long _submitted;
    private long _completed;
    private long _badCompletions;
    private long _harvestAllocatedBytes;
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2213", Justification = "Never disposed on purpose: a submitter racing Dispose links its wait to this token, and a disposed source throws on Token; it has no timer, so there is nothing to free.")]
    private readonly CancellationTokenSource _closed = new();
    private volatile bool _closing;
    private bool _ringsFreed;
    private long _phaseGlitches;
    private ulong _lastGlitchLogged = ulong.MaxValue;
    private int _disposed;
    private readonly long[] _submittedAt;

    // Stopwatch timestamp of the last harvest that completed anything (the health check's progress signal).
    private long _lastCompletionAt;

    // The device failures (DeviceHealth.Failures) this queue's last Reattach came after; guarded by _submitLock.
    private long _recoveredAfter;
    private volatile FpgaAccelException? _failure;

    internal CommandQueue(FpgaDevice device, int index, int entries, CompletionMode mode, ContinuationMode continuations, ILogger logger)
    {
        _device = device;
        _logger = logger;
        Index = index;
        Entries = entries;
        Mode = mode;
        Continuations = continuations;
        _log2 = System.Numerics.BitOperations.Log2((uint)entries);
        _mask = entries - 1;
        _credits = new SemaphoreSlim(entries, entries);
        _slots = new CompletionSource?[entries];
        _generations = new ushort[entries];
        _submittedAt = new long[entries];
        _freeSlots = new Stack<int>(Enumerable.Range(0, entries).Reverse());
        var iommu = device.Mmu.Iommu;
        _sq = DmaMemory.Allocate(iommu, (ulong)entries * SubmissionDescriptor.Size);
        try
        {
            _cq = DmaMemory.Allocate(iommu, (ulong)entries * CompletionRecord.Size);
        }
        catch
        {
            _sq.Dispose();
            throw;
        }

        var b = device.Backend;
        try
        {
            Attach(b);
        }
        catch (FpgaAccelException)
        {
            try
            {
                Detach(b);
            }
            catch (FpgaAccelException)
            {
                // Gone: nothing to detach from.
            }

            _sq.Dispose();
            _cq.Dispose();
            throw;
        }

        _tail = 0;
        _cqHead = 0;

        if (mode == CompletionMode.Poll)
        {
            _poller = new Thread(PollLoop) { IsBackground = true, Name = $"fpgaaccel-q{index}-poll" };
            _poller.Start();
        }

        LogOpened(_logger, index, entries, mode);
    }

    /// <summary>The device queue this is (0 .. CAPS.queues-1): which SQ/CQ register block it drives.</summary>
    public int Index { get; }

    /// <summary>Slots in each ring; also the most commands in flight at once.</summary>
    public int Entries { get; }

    /// <summary>How completions are noticed: the COMPLETION interrupt, or a poller thread on the ring.</summary>
    public CompletionMode Mode { get; }

    /// <summary>Where the code after an await of a result runs (decision F25).</summary>
    public ContinuationMode Continuations { get; }

    /// <summary>True once disposed: the queue accepts no command and its rings are freed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Commands submitted and not yet completed.</summary>
    public long Outstanding => Interlocked.Read(ref _outstanding);

    /// <summary>Commands written to the submission ring since the queue opened.</summary>
    public long Submitted => Interlocked.Read(ref _submitted);

    /// <summary>Commands whose completion record was harvested since the queue opened.</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>
    /// Bytes allocated on the harvesting threads while harvesting completions (GC.GetAllocatedBytesForCurrentThread
    /// around each harvest that found records): the steady-state completion path should add nothing.
    /// </summary>
    public long HarvestAllocatedBytes => Interlocked.Read(ref _harvestAllocatedBytes);

    /// <summary>Slots whose PHASE said "new" although the device had not produced them (CQ_TAIL behind): not consumed.</summary>
    public long PhaseGlitches => Interlocked.Read(ref _phaseGlitches);

    /// <summary>Completion records the device wrote that named no command in flight (ignored), or with a status spec 5 does not allow (the command failed).</summary>
    public long BadCompletions => Interlocked.Read(ref _badCompletions);

    /// <summary>A NOP: no data moved; measures the queue's own round trip, or checks the device still completes.</summary>
    public ValueTask<CommandResult> NopAsync(DeviceContext context, CancellationToken cancellationToken = default) =>
        SubmitAsync(Describe(Opcode.Nop, context, 0, 0, 0, 0), cancellationToken);

    /// <summary>Copies <paramref name="length"/> bytes from <paramref name="sourceDva"/> to <paramref name="destinationDva"/>.</summary>
    public ValueTask<CommandResult> CopyAsync(DeviceContext context, ulong sourceDva, ulong destinationDva, ulong length, CancellationToken cancellationToken = default) =>
        SubmitAsync(Describe(Opcode.Copy, context, sourceDva, destinationDva, length, 0), cancellationToken);

    /// <summary>Fills <paramref name="length"/> bytes at <paramref name="destinationDva"/> with the 8-byte <paramref name="pattern"/>, repeated.</summary>
    public ValueTask<CommandResult> FillAsync(DeviceContext context, ulong destinationDva, ulong length, ulong pattern, CancellationToken cancellationToken = default) =>
        SubmitAsync(Describe(Opcode.Fill, context, 0, destinationDva, length, pattern), cancellationToken);

    /// <summary>CRC32C (Castagnoli) of <paramref name="length"/> bytes at <paramref name="sourceDva"/>, in the result.</summary>
    public ValueTask<CommandResult> Crc32CAsync(DeviceContext context, ulong sourceDva, ulong length, CancellationToken cancellationToken = default) =>
        SubmitAsync(Describe(Opcode.Crc32C, context, sourceDva, 0, length, 0), cancellationToken);

    /// <summary>
    /// Submits a descriptor as given (the queue sets its tag, and the IRQ flag in interrupt mode).
    /// For tests that need descriptors the typed methods refuse to build. Internal: a raw descriptor can name
    /// any context index, not only one the caller created.
    /// </summary>
    internal ValueTask<CommandResult> SubmitAsync(SubmissionDescriptor descriptor, CancellationToken cancellationToken = default)
    {
        ThrowIfClosing();
        if (_failure is { } failure)
        {
            return ValueTask.FromException<CommandResult>(failure);
        }

        if (_credits.Wait(0))
        {
            return Post(ref descriptor);
        }

        return SubmitWhenCreditAsync(descriptor, cancellationToken);
    }

    /// <summary>Harvests completions now (any mode). Returns how many were seen. After dispose: <see cref="DisposedResourceException"/>.</summary>
    public int Poll()
    {
        ThrowIfDisposed();
        return Harvest();
    }

    /// <summary>
    /// Stops accepting commands, releases submitters waiting for a credit (<see cref="DisposedResourceException"/>), waits
    /// (bounded by the device timeout) for those in flight, detaches and disables the queue, and frees its rings. Commands
    /// still in flight after the timeout fail with <see cref="DeviceTimeoutException"/>; the rings' IOMMU mappings are
    /// removed before the memory is freed, so a late device write is refused by the IOMMU, never lands in reused memory.
    /// See the remarks for the argument.
    /// </summary>
    /// <exception cref="InvalidOperationException">Called from an inline continuation (<see cref="ContinuationMode.Inline"/>).</exception>
    public void Dispose()
    {
        ThrowIfInInlineContinuation("queue " + Index);
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // No new submission gets past its check, and one that did has finished writing the ring.
        _closing = true;
        ScheduleHooks.At(SchedulePoint.QueueClosing);
        lock (_submitLock)
        {
        }

        _closed.Cancel();
        var deadline = DateTime.UtcNow + _device.Options.DeviceTimeout;
        var spin = default(SpinWait);
        while (Outstanding > 0 && DateTime.UtcNow < deadline && _failure is null)
        {
            Harvest();
            spin.SpinOnce(sleep1Threshold: 50);
        }

        _work.Set();
        var pollerStopped = _poller?.Join(_device.Options.DeviceTimeout + TimeSpan.FromSeconds(5)) ?? true;
        try
        {
            Detach(_device.Backend);
        }
        catch (FpgaAccelException ex)
        {
            LogDetachFailed(_logger, Index, ex);
        }

        lock (_harvestLock)
        {
            for (var i = 0; i < _slots.Length; i++)
            {
                if (_slots[i] is { } source)
                {
                    _slots[i] = null;
                    source.Fail(new DeviceTimeoutException($"command in queue {Index}", _device.Options.DeviceTimeout, "the queue was disposed while it was in flight"));
                }
            }

            _ringsFreed = true;
        }

        _sq.Dispose();
        _cq.Dispose();
        if (pollerStopped)
        {
            _work.Dispose();
        }

        _device.OnQueueClosed(this);
        LogClosed(_logger, Index, Submitted, Completed);
    }

    // Programs the rings (the queue's registers after a reset or at open) and checks the counters start at 0.
    private void Attach(IDeviceBackend b)
    {
        b.Write64(Reg(Fa1Registers.SqLog2), 0);
        b.Write64(Reg(Fa1Registers.SqBase), _sq.Iova);
        b.Write64(Reg(Fa1Registers.CqBase), _cq.Iova);
        b.Write64(Reg(Fa1Registers.CqLog2), (ulong)_log2);
        b.Write64(Reg(Fa1Registers.SqLog2), (ulong)_log2); // last: enables the queue

        // Spec 5 and D15: writing SQ_LOG2 and CQ_LOG2 reset the ring counters, and the harvest's PHASE rule (lap 0
        // expects PHASE 1 in zeroed memory) starts from there. Anything else is a device not to be trusted.
        var sqTail = b.Read64(Reg(Fa1Registers.SqTail));
        var sqHead = b.Read64(Reg(Fa1Registers.SqHead));
        var cqHead = b.Read64(Reg(Fa1Registers.CqHead));
        var cqTail = b.Read64(Reg(Fa1Registers.CqTail));
        if ((sqTail | sqHead | cqHead | cqTail) != 0)
        {
            throw sqTail == Fa1Identity.DeviceLost
                ? new DeviceLostException($"while opening queue {Index}", b.Description)
                : new DeviceProtocolException($"Queue {Index} reads SQ_TAIL {sqTail}, SQ_HEAD {sqHead}, CQ_HEAD {cqHead}, CQ_TAIL {cqTail} right after its rings were sized; " +
                    "spec 5 (decision D15) resets them to 0. The device cannot be trusted with this queue: reset it.");
        }
    }

    /// <summary>
    /// The device failed (issue 12): every command in flight fails with <paramref name="error"/>, credit waiters are
    /// released (they fail with it too), and new submissions fail with it until <see cref="Reattach"/>. Idempotent. See
    /// the remarks for the argument.
    /// </summary>
    /// <param name="error">What the waiters get.</param>
    /// <param name="failure">The device failure's number (DeviceHealth.Failures after its move): a queue
    /// reattached by a recovery that began after that failure ignores it, since its commands in flight are new ones.</param>
    internal void Fail(FpgaAccelException error, long failure = long.MaxValue)
    {
        // Both locks, in Reattach's order, for the whole release: a stale release either runs entirely before the
        // recovery's Reattach (which then starts the queue afresh) or sees it and changes nothing; it never fails the
        // commands submitted after the recovery (the stress run's queue that stayed failed after a recovery).
        var failed = 0;
        lock (_submitLock)
        {
            if (failure <= _recoveredAfter)
            {
                return;
            }

            _failure = error;
            lock (_harvestLock)
            {
                for (var i = 0; i < _slots.Length; i++)
                {
                    if (_slots[i] is { } source)
                    {
                        _slots[i] = null;
                        _freeSlots.Push(i);
                        Interlocked.Decrement(ref _outstanding);
                        source.Fail(error);
                        failed++;
                    }
                }
            }
        }

        if (failed > 0)
        {
            _credits.Release(failed);
        }

        LogFailed(_logger, Index, failed, error.GetType().Name);
    }

    /// <summary>
    /// After the device was reset (issue 12 recovery): fresh rings (zeroed, so the PHASE rule starts on lap 0 again),
    /// counters at 0, registers programmed; the queue accepts commands again. Nothing is in flight (Fail ran first).
    /// </summary>
    internal unsafe void Reattach()
    {
        lock (_submitLock)
        {
            lock (_harvestLock)
            {
                if (_ringsFreed || _closing)
                {
                    return;
                }

                new Span<byte>(_sq.Pointer, checked((int)_sq.Length)).Clear();
                new Span<byte>(_cq.Pointer, checked((int)_cq.Length)).Clear();
                _tail = 0;
                _cqHead = 0;
                Attach(_device.Backend);
                _failure = null;
                _recoveredAfter = _device.Health.Failures;
            }
        }

        _work.Set();
    }

    /// <summary>On the health thread: in interrupt mode, harvests what a lost COMPLETION message left in the ring.</summary>
    internal int HealthHarvest() => Mode == CompletionMode.Interrupt && !_closing && Outstanding > 0 ? Harvest() : 0;

    /// <summary>A command this many deadlines old is overdue even while its queue completes others.</summary>
    internal const int HardLimitFactor = 4;

    /// <summary>
    /// On the health thread: the oldest command in flight longer than <paramref name="limit"/> (Stopwatch ticks), if
    /// any. A closing queue is left to its own bound (Dispose waits the device timeout, then fails what is left).
    /// </summary>
    /// <remarks>
    /// Hung means no progress, not slow progress: a command past <paramref name="limit"/> counts only while its queue has
    /// also completed nothing for <paramref name="limit"/> (an engine that stopped consuming completes nothing; a loaded
    /// host that delays the device's or the driver's threads delays a command but not every completion), and in any case
    /// once it is past <see cref="HardLimitFactor"/> times the limit (a single command stuck behind progressing ones).
    /// </remarks>
    internal bool FindOverdue(long now, long limit, out uint tag, out TimeSpan age)
    {
        tag = 0;
        age = default;
        if (Outstanding == 0 || _closing || _failure is not null)
        {
            return false;
        }

        var oldest = -1;
        lock (_harvestLock)
        {
            for (var i = 0; i < _slots.Length; i++)
            {
                if (_slots[i] is not null && now - _submittedAt[i] > limit && (oldest < 0 || _submittedAt[i] < _submittedAt[oldest]))
                {
                    oldest = i;
                }
            }

            if (oldest < 0)
            {
                return false;
            }

            var quietFor = now - Math.Max(Volatile.Read(ref _lastCompletionAt), _submittedAt[oldest]);
            if (quietFor <= limit && now - _submittedAt[oldest] <= HardLimitFactor * limit)
            {
                return false; // the queue completes work: slow, not hung
            }

            tag = (uint)oldest | ((uint)_generations[oldest] << 16);
            age = Stopwatch.GetElapsedTime(_submittedAt[oldest], now);
            return true;
        }
    }

    /// <summary>The ring counters, for a hang's message.</summary>
    internal string DescribeProgress()
    {
        var b = _device.Backend;
        return $"SQ_TAIL {b.Read64(Reg(Fa1Registers.SqTail))}, SQ_HEAD {b.Read64(Reg(Fa1Registers.SqHead))}, CQ_TAIL {b.Read64(Reg(Fa1Registers.CqTail))}, CQ_HEAD {b.Read64(Reg(Fa1Registers.CqHead))}";
    }

    /// <summary>Called on the interrupt dispatcher when COMPLETION fires.</summary>
    internal void OnCompletionInterrupt()
    {
        if (Mode == CompletionMode.Interrupt)
        {
            Harvest(); // after dispose it sees the rings freed and does nothing
        }
    }

    private SubmissionDescriptor Describe(Opcode opcode, DeviceContext context, ulong source, ulong destination, ulong length, ulong pattern)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (_device.Mmu.Context(context.Index) != context)
        {
            throw context.IsDisposed
                ? new DisposedResourceException($"Device context {context.Index}")
                : new InvalidCommandException($"Device context {context.Index} belongs to another device: a queue runs commands in contexts of its own device. Create the context with this device.");
        }

        if (opcode != Opcode.Nop)
        {
            if (length == 0)
            {
                throw new InvalidCommandException($"{opcode} with length 0: the device rejects it (BAD_DESC). Give a length of at least 1 byte.");
            }

            var limit = _device.VaLimit;
            var uses = opcode switch { Opcode.Copy => new[] { source, destination }, Opcode.Fill => [destination], _ => [source] };
            foreach (var dva in uses)
            {
                if (dva + length < dva || dva + length > limit)
                {
                    throw new InvalidCommandException($"{opcode} of {length} bytes at DVA 0x{dva:X} runs past the {_device.Info.Capabilities.VaBits}-bit device address space. Shorten it.");
                }
            }
        }

        return new SubmissionDescriptor
        {
            Opcode = opcode,
            Context = (byte)context.Index,
            Source = source,
            Destination = destination,
            Length = length,
            Pattern = pattern,
        };
    }

    // The ring is full: wait for a credit, or for the queue to close (the caller's token ends the wait too).
    private async ValueTask<CommandResult> SubmitWhenCreditAsync(SubmissionDescriptor descriptor, CancellationToken cancellationToken)
    {
        ScheduleHooks.At(SchedulePoint.CreditWaiting);
        using (var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closed.Token))
        {
            try
            {
                await _credits.WaitAsync(either.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                ThrowClosed();
            }
        }

        return await Post(ref descriptor).ConfigureAwait(false);
    }

    // Holds a credit. Writes the descriptor into the ring, then rings the doorbell.
    private unsafe ValueTask<CommandResult> Post(ref SubmissionDescriptor descriptor)
    {
        var source = _pool.Rent();
        lock (_submitLock)
        {
            if (_closing)
            {
                _credits.Release();
                _pool.Return(source);
                ThrowIfClosing();
            }

            if (_failure is { } failure)
            {
                _credits.Release();
                _pool.Return(source);
                return ValueTask.FromException<CommandResult>(failure);
            }

            int slot;
            lock (_harvestLock)
            {
                slot = _freeSlots.Pop();
                _generations[slot]++;
                _slots[slot] = source;
                _submittedAt[slot] = Stopwatch.GetTimestamp();
            }

            ScheduleHooks.At(SchedulePoint.SubmitPosting);
            descriptor.Tag = (uint)slot | ((uint)_generations[slot] << 16);
            if (Mode == CompletionMode.Interrupt)
            {
                descriptor.Flags |= DescriptorFlags.Irq;
            }

            var task = source.Task;
            var entry = (SubmissionDescriptor*)_sq.Pointer + (int)(_tail & (ulong)_mask);
            *entry = descriptor;
            _tail++;
            if (Interlocked.Increment(ref _outstanding) == 1)
            {
                // The first command in flight: the health check watches the device from now on (issue 12).
                _device.Health.Kick();
                if (Mode == CompletionMode.Poll)
                {
                    _work.Set();
                }
            }

            Interlocked.Increment(ref _submitted);

            // The descriptor is in memory before the doorbell: x86 keeps stores in order, and the
            // doorbell is a volatile (release) store on the board, a locked call on the model.
            _device.Backend.Write64(Reg(Fa1Registers.SqTail), _tail);
            return task;
        }
    }

    // Inline continuations (F25): the results are gathered under the harvest lock and delivered after it is released, on
    // this thread, so a continuation that submits the next command takes no lock this thread holds. The arrays come from
    // the shared pools (no allocation in steady state); a harvest holds at most a ring's worth, since CQ_HEAD moves only at
    // its end. Credits were given back under the lock, before any continuation runs.
    // Set on the harvesting thread while it runs inline continuations (F25).
    [ThreadStatic]
    private static CommandQueue? s_inlineQueue;

    /// <summary>
    /// F25: a queue or device disposed from an inline continuation would wait for the thread the continuation runs on
    /// (the interrupt dispatcher or the poller) to stop: refused with the rule and the fix, before anything is changed.
    /// </summary>
    internal static void ThrowIfInInlineContinuation(string what)
    {
        if (s_inlineQueue is { } queue)
        {
            throw new InvalidOperationException(
                $"Cannot dispose {what} from an inline continuation of queue {queue.Index} (ContinuationMode.Inline): the continuation runs on the thread that harvested it, which the dispose must stop and wait for. Leave that thread first (await Task.Yield()), then dispose.");
        }
    }

    private int Harvest()
    {
        if (Continuations != ContinuationMode.Inline)
        {
            var none = default(InlineBatch);
            return HarvestLocked(ref none);
        }

        var batch = new InlineBatch(ArrayPool<CompletionSource?>.Shared.Rent(Entries), ArrayPool<CommandResult>.Shared.Rent(Entries));
        try
        {
            return HarvestLocked(ref batch);
        }
        finally
        {
            var previous = s_inlineQueue;
            s_inlineQueue = this;
            try
            {
                for (var i = 0; i < batch.Count; i++)
                {
                    var source = batch.Sources![i]!;
                    batch.Sources[i] = null;
                    try
                    {
                        source.CompleteInline(batch.Results![i]);
                    }
                    catch (Exception ex)
                    {
                        // A continuation that throws must not end the harvesting thread (the interrupt dispatcher, the poller).
                        LogContinuationFailed(_logger, Index, ex);
                    }
                }
            }
            finally
            {
                s_inlineQueue = previous;
            }

            ArrayPool<CompletionSource?>.Shared.Return(batch.Sources!);
            ArrayPool<CommandResult>.Shared.Return(batch.Results!);
        }
    }

    private unsafe int HarvestLocked(ref InlineBatch batch)
    {
        ScheduleHooks.At(SchedulePoint.HarvestBegun);
        var seen = 0;
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        lock (_harvestLock)
        {
            if (_ringsFreed || _failure is not null)
            {
                return 0; // a failed queue's rings are frozen until the reset (class remarks)
            }

            var records = (CompletionRecord*)_cq.Pointer;
            while (true)
            {
                var record = records + (int)(_cqHead & (ulong)_mask);
                var statusAndPhase = Volatile.Read(ref record->StatusAndPhase);
                var expected = ((_cqHead >> _log2) & 1) == 0;
                if (((statusAndPhase & CompletionRecord.PhaseBit) != 0) != expected)
                {
                    break;
                }

                var copy = *record;
                if (!IsLive(copy.Tag))
                {
                    if (!ProducedByDevice(_cqHead))
                    {
                        break; // a PHASE glitch: not a record the device produced (class remarks)
                    }

                    // CQ_TAIL passed it, so the device's record is complete in memory now (it writes the record before it
                    // advances CQ_TAIL, and the register read is ordered after those writes): read it again, since what we
                    // copied may be the glitch the device has just overwritten with a real completion.
                    Interlocked.MemoryBarrier();
                    copy = *record;
                }

                _cqHead++;
                seen++;
                Complete(in copy, ref batch);
            }

            if (seen > 0)
            {
                _device.Backend.Write64(Reg(Fa1Registers.CqHead), _cqHead);
                Volatile.Write(ref _lastCompletionAt, Stopwatch.GetTimestamp());
            }
        }

        if (seen > 0)
        {
            Interlocked.Add(ref _harvestAllocatedBytes, GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
        }

        return seen;
    }

    // With the harvest lock held: the tag names a command in flight (slot in range, occupied, same generation).
    private bool IsLive(uint tag)
    {
        var slot = (int)(tag & 0xFFFF);
        return slot < _slots.Length && _slots[slot] is not null && _generations[slot] == (ushort)(tag >> 16);
    }

    // With the harvest lock held, for a record whose tag is not live: did the device produce the record at count
    // `index` (CQ_TAIL past it), or does its slot only look new? One register read, on this rare path only.
    private bool ProducedByDevice(ulong index)
    {
        var tail = _device.Backend.Read64(Reg(Fa1Registers.CqTail));
        if (tail != Fa1Identity.DeviceLost && tail > index && tail - index <= (ulong)Entries)
        {
            return true;
        }

        Interlocked.Increment(ref _phaseGlitches);
        if (_lastGlitchLogged != index)
        {
            _lastGlitchLogged = index;
            LogPhaseGlitch(_logger, Index, index, tail);
        }

        return false;
    }

    // With the harvest lock held.
    private void Complete(in CompletionRecord record, ref InlineBatch batch)
    {
        if (!IsLive(record.Tag))
        {
            Interlocked.Increment(ref _badCompletions);
            LogBadCompletion(_logger, Index, record.Tag);
            return;
        }

        var slot = (int)(record.Tag & 0xFFFF);
        var source = _slots[slot]!;
        _slots[slot] = null;
        _freeSlots.Push(slot);
        Interlocked.Decrement(ref _outstanding);
        Interlocked.Increment(ref _completed);
        if (!Enum.IsDefined(record.Status) || (record.Status == CompletionStatus.Fault && record.Faults == 0))
        {
            // Spec 5: status 0..4; decision D18: a FAULT status always counts its fault.
            Interlocked.Increment(ref _badCompletions);
            LogBadStatus(_logger, Index, record.Tag, (ushort)record.Status, record.Faults);
            source.Fail(new DeviceProtocolException($"Queue {Index}: the completion of tag 0x{record.Tag:X8} has status {(ushort)record.Status} with {record.Faults} faults; " +
                "spec 5 allows statuses 0 to 4, and a FAULT status counts at least one fault (decision D18). The command's outcome is unknown: check the device (fpgaaccel info) and reset it."));
        }
        else if (batch.Sources is not null)
        {
            batch.Sources[batch.Count] = source;
            batch.Results![batch.Count++] = new CommandResult(record.Tag, record.Status, record.Faults, record.Result, record.StartCycle, record.EndCycle);
        }
        else
        {
            source.Complete(new CommandResult(record.Tag, record.Status, record.Faults, record.Result, record.StartCycle, record.EndCycle));
        }

        ScheduleHooks.At(SchedulePoint.CompletionDelivered);

        _credits.Release();
    }

    private void PollLoop()
    {
        var spin = default(SpinWait);
        while (!_closing || Outstanding > 0)
        {
            if (Outstanding == 0)
            {
                _work.Reset();
                if (Outstanding == 0 && !_closing)
                {
                    _work.Wait();
                }

                continue;
            }

            if (Harvest() > 0)
            {
                spin.Reset();
            }
            else
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            if (_closing && IsDisposed)
            {
                return;
            }
        }
    }

    // Spec 5: SQ_LOG2 = 0 disables the queue; D15: CQ_LOG2 = 0 leaves no completion ring (a teardown). The read back
    // orders the writes before the rings are freed.
    private void Detach(IDeviceBackend backend)
    {
        backend.Write64(Reg(Fa1Registers.SqLog2), 0);
        backend.Write64(Reg(Fa1Registers.CqLog2), 0);
        backend.Write64(Reg(Fa1Registers.SqBase), 0);
        backend.Write64(Reg(Fa1Registers.CqBase), 0);
        if (backend.Read64(Reg(Fa1Registers.SqLog2)) == Fa1Identity.DeviceLost)
        {
            throw new DeviceLostException($"while closing queue {Index}", backend.Description);
        }
    }

    private void ThrowIfClosing()
    {
        if (_closing)
        {
            ThrowClosed();
        }
    }

    private void ThrowIfDisposed()
    {
        if (IsDisposed)
        {
            ThrowClosed();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowClosed() => throw new DisposedResourceException($"Command queue {Index}");

    private uint Reg(uint register) => Fa1Registers.Queue(Index, register);

    [LoggerMessage(EventId = 40, Level = LogLevel.Debug, Message = "Queue {Queue} opened: {Entries} entries, {Mode}")]
    private static partial void LogOpened(ILogger logger, int queue, int entries, CompletionMode mode);

    [LoggerMessage(EventId = 41, Level = LogLevel.Debug, Message = "Queue {Queue} closed after {Submitted} submitted, {Completed} completed")]
    private static partial void LogClosed(ILogger logger, int queue, long submitted, long completed);

    [LoggerMessage(EventId = 42, Level = LogLevel.Warning, Message = "Queue {Queue}: completion with tag 0x{Tag:X8} names no command in flight; ignored")]
    private static partial void LogBadCompletion(ILogger logger, int queue, uint tag);

    [LoggerMessage(EventId = 43, Level = LogLevel.Error, Message = "Queue {Queue}: completion slot {Index} shows a new PHASE but CQ_TAIL is {Tail}: not a record the device produced; left unconsumed")]
    private static partial void LogPhaseGlitch(ILogger logger, int queue, ulong index, ulong tail);

    [LoggerMessage(EventId = 44, Level = LogLevel.Error, Message = "Queue {Queue}: completion of tag 0x{Tag:X8} has status {Status} with {Faults} faults, which spec 5 does not allow; the command fails")]
    private static partial void LogBadStatus(ILogger logger, int queue, uint tag, ushort status, ushort faults);

    [LoggerMessage(EventId = 46, Level = LogLevel.Warning, Message = "Queue {Queue}: the device failed; {Commands} command(s) in flight released with {Error}")]
    private static partial void LogFailed(ILogger logger, int queue, int commands, string error);

    [LoggerMessage(EventId = 47, Level = LogLevel.Error, Message = "Queue {Queue}: an inline continuation threw; the harvest goes on")]
    private static partial void LogContinuationFailed(ILogger logger, int queue, Exception ex);

    // The results of one harvest with inline continuations, delivered once its lock is released (F25).
    private struct InlineBatch(CompletionSource?[] sources, CommandResult[] results)
    {
        public CompletionSource?[]? Sources = sources;
        public CommandResult[]? Results = results;
        public int Count;
    }

    [LoggerMessage(EventId = 45, Level = LogLevel.Error, Message = "Queue {Queue} could not be detached from the device while closing")]
    private static partial void LogDetachFailed(ILogger logger, int queue, Exception ex);
}
