using System.Runtime.CompilerServices;
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
/// </remarks>
public sealed partial class CommandQueue : IDisposable
{
    private readonly FpgaDevice _device;
    private readonly ILogger _logger;
    private readonly DmaMemory _sq;
    private readonly DmaMemory _cq;
    private readonly int _log2;
    private readonly int _mask;
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
    private volatile bool _closing;
    private int _disposed;

    internal CommandQueue(FpgaDevice device, int index, int entries, CompletionMode mode, ILogger logger)
    {
        _device = device;
        _logger = logger;
        Index = index;
        Entries = entries;
        Mode = mode;
        _log2 = System.Numerics.BitOperations.Log2((uint)entries);
        _mask = entries - 1;
        _credits = new SemaphoreSlim(entries, entries);
        _slots = new CompletionSource?[entries];
        _generations = new ushort[entries];
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
        b.Write64(Reg(Fa1Registers.SqLog2), 0);
        b.Write64(Reg(Fa1Registers.SqBase), _sq.Iova);
        b.Write64(Reg(Fa1Registers.CqBase), _cq.Iova);
        b.Write64(Reg(Fa1Registers.CqLog2), (ulong)_log2);
        b.Write64(Reg(Fa1Registers.SqLog2), (ulong)_log2); // last: enables the queue

        // Continue from wherever the device's counters stand (0 after a reset).
        _tail = b.Read64(Reg(Fa1Registers.SqTail));
        _cqHead = b.Read64(Reg(Fa1Registers.CqHead));
        if (_tail == Fa1Identity.DeviceLost)
        {
            _sq.Dispose();
            _cq.Dispose();
            throw new DeviceLostException($"while opening queue {index}", b.Description);
        }

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

    /// <summary>Completion records the device wrote that named no command in flight (ignored).</summary>
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
        var credit = _credits.WaitAsync(cancellationToken);
        if (credit.IsCompletedSuccessfully)
        {
            return Post(ref descriptor);
        }

        return SubmitWhenCreditAsync(credit, descriptor);
    }

    /// <summary>Harvests completions now (any mode). Returns how many were seen.</summary>
    public int Poll() => Harvest();

    /// <summary>
    /// Stops accepting commands, waits (bounded by the device timeout) for those in flight, disables
    /// the queue and frees its rings. Commands still in flight after the timeout fail with
    /// <see cref="DeviceTimeoutException"/>; the rings' IOMMU mappings are removed before the memory is
    /// freed, so a late device write is refused by the IOMMU, never lands in reused memory.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _closing = true;
        var deadline = DateTime.UtcNow + _device.Options.DeviceTimeout;
        var spin = default(SpinWait);
        while (Outstanding > 0 && DateTime.UtcNow < deadline)
        {
            Harvest();
            spin.SpinOnce(sleep1Threshold: 50);
        }

        _work.Set();
        _poller?.Join(TimeSpan.FromSeconds(5));
        // Spec 5: SQ_LOG2 = 0 disables the queue. CQ_LOG2 stays: 0 there is not a valid ring size.
        _device.Backend.Write64(Reg(Fa1Registers.SqLog2), 0);
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
        }

        _sq.Dispose();
        _cq.Dispose();
        _work.Dispose();
        _credits.Dispose();
        LogClosed(_logger, Index, Submitted, Completed);
    }

    /// <summary>Called on the interrupt dispatcher when COMPLETION fires.</summary>
    internal void OnCompletionInterrupt()
    {
        if (!IsDisposed && Mode == CompletionMode.Interrupt)
        {
            Harvest();
        }
    }

    private SubmissionDescriptor Describe(Opcode opcode, DeviceContext context, ulong source, ulong destination, ulong length, ulong pattern)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (_device.Mmu.Context(context.Index) != context)
        {
            throw new DisposedResourceException($"Device context {context.Index} (of this device)");
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

    private async ValueTask<CommandResult> SubmitWhenCreditAsync(Task credit, SubmissionDescriptor descriptor)
    {
        await credit.ConfigureAwait(false);
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

            int slot;
            lock (_harvestLock)
            {
                slot = _freeSlots.Pop();
                _generations[slot]++;
                _slots[slot] = source;
            }

            descriptor.Tag = (uint)slot | ((uint)_generations[slot] << 16);
            if (Mode == CompletionMode.Interrupt)
            {
                descriptor.Flags |= DescriptorFlags.Irq;
            }

            var task = source.Task;
            var entry = (SubmissionDescriptor*)_sq.Pointer + (int)(_tail & (ulong)_mask);
            *entry = descriptor;
            _tail++;
            if (Interlocked.Increment(ref _outstanding) == 1 && Mode == CompletionMode.Poll)
            {
                _work.Set();
            }

            Interlocked.Increment(ref _submitted);

            // The descriptor is in memory before the doorbell: x86 keeps stores in order, and the
            // doorbell is a volatile (release) store on the board, a locked call on the model.
            _device.Backend.Write64(Reg(Fa1Registers.SqTail), _tail);
            return task;
        }
    }

    private unsafe int Harvest()
    {
        var seen = 0;
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        lock (_harvestLock)
        {
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
                _cqHead++;
                seen++;
                Complete(in copy);
            }

            if (seen > 0)
            {
                _device.Backend.Write64(Reg(Fa1Registers.CqHead), _cqHead);
            }
        }

        if (seen > 0)
        {
            Interlocked.Add(ref _harvestAllocatedBytes, GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
        }

        return seen;
    }

    // With the harvest lock held.
    private void Complete(in CompletionRecord record)
    {
        var slot = (int)(record.Tag & 0xFFFF);
        var generation = (ushort)(record.Tag >> 16);
        if (slot >= _slots.Length || _slots[slot] is not { } source || _generations[slot] != generation)
        {
            Interlocked.Increment(ref _badCompletions);
            LogBadCompletion(_logger, Index, record.Tag);
            return;
        }

        _slots[slot] = null;
        _freeSlots.Push(slot);
        Interlocked.Decrement(ref _outstanding);
        Interlocked.Increment(ref _completed);
        source.Complete(new CommandResult(record.Tag, record.Status, record.Faults, record.Result, record.StartCycle, record.EndCycle));
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

    private void ThrowIfClosing()
    {
        if (_closing)
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
}
