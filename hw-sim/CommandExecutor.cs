using System.Numerics;
using System.Runtime.InteropServices;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>One data access the device is about to make, shown to the test hook.</summary>
/// <param name="Queue">Queue of the command.</param>
/// <param name="Context">Its context.</param>
/// <param name="Dva">First DVA of the access.</param>
/// <param name="Iova">What the MMU translated it to.</param>
/// <param name="Length">Bytes (within one 4 KiB page).</param>
/// <param name="Write">A write (else a read).</param>
internal readonly record struct DataAccess(int Queue, int Context, ulong Dva, ulong Iova, ulong Length, bool Write);

/// <summary>What a command ended in: the completion's status, faults and result fields (spec 5).</summary>
/// <param name="Status">The completion status.</param>
/// <param name="Faults">Faults the command took, saturated at 65535.</param>
/// <param name="Result">The CRC32C result (decision D30); 0 for other opcodes.</param>
internal readonly record struct CommandOutcome(CompletionStatus Status, ushort Faults, ulong Result)
{
    /// <summary>An outcome with no result.</summary>
    public static CommandOutcome Of(CompletionStatus status, int faults = 0) => new(status, (ushort)Math.Min(faults, ushort.MaxValue), 0);
}

/// <summary>
/// Runs one command of a queue (spec 5): decodes and checks the descriptor, then moves the data page by
/// page through the MMU and the IOMMU, holding the fence's in-flight ticket (spec 4.3) for each page,
/// and hands a translation fault to the <see cref="FaultStall"/> until the driver answers it (spec 4.4).
/// </summary>
/// <remarks>Runs on the queue's engine thread with no lock held; it changes device state only through
/// the MMU, the fault stall and <see cref="QueueEngine.FatalUnmapped"/>, which check under the register lock
/// that the worker is still current.</remarks>
internal sealed class CommandExecutor
{
    private const ulong PageMask = PageTableFormat.PageSize - 1;

    private readonly QueueEngine _engine;
    private readonly MmuBlock _mmu;
    private readonly FaultStall _faultStall;

    public CommandExecutor(QueueEngine engine, MmuBlock mmu, FaultStall faultStall)
    {
        _engine = engine;
        _mmu = mmu;
        _faultStall = faultStall;
    }

    private ModelOptions Options => _engine.Options;

    /// <summary>
    /// Runs one command (spec 5): the outcome to post, or null when the command ends without a
    /// completion (the worker was stopped, or the device went FATAL: decision D10).
    /// </summary>
    public CommandOutcome? Execute(EngineWorker worker, EngineTimeline timeline, in SubmissionDescriptor d)
    {
        // spec 5: reserved bytes 40..63 must be zero. Decision D37: so must the flags spec 5 does not define
        // ([15:2]): a flag the device does not know asks for something it will not do.
        if ((d.Reserved0 | d.Reserved1 | d.Reserved2) != 0 || (d.Flags & ~(DescriptorFlags.Irq | DescriptorFlags.Fence)) != 0)
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
                if (worker.StopRequested || !_engine.WaitWhileHung(worker))
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
                    using var scope = _engine.Model.Iommu.BeginDeviceAccess();
                    nint srcHost = 0, dstHost = 0;
                    if (result == AccessResult.Proceed
                        && ((readsSource && !TryIommu(ctx, src, n, write: false, srcTranslation, out srcHost))
                            || (writesDestination && !TryIommu(ctx, dst, n, write: true, dstTranslation, out dstHost))))
                    {
                        result = AccessResult.DmaError;
                    }

                    // R3: a lane stopped meanwhile (the device left the bus, or was reset) moves no byte. Checked inside
                    // the access scope, after the test hook ran, so a removal from the hook itself is honoured too.
                    if (result == AccessResult.Proceed && worker.StopRequested)
                    {
                        result = AccessResult.Abandon;
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
                    var answer = _faultStall.Wait(worker, timeline, ctx, fault);
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
                _engine.FatalUnmapped(worker, translation.Iova);
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
        if (!_engine.Model.Iommu.TryTranslate(translation.Iova, write ? DmaAccess.DeviceWrite : DmaAccess.DeviceRead, out var page))
        {
            host = 0;
            return false;
        }

        _mmu.Oracle.CheckAccess(ctx, dva, write, translation, page.Generation);
        _engine.Model.DataAccessHook?.Invoke(new DataAccess(_engine.Queue, ctx, dva, translation.Iova, length, write));
        host = page.Host;
        return true;
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

    private enum AccessResult
    {
        Proceed,
        Fault,
        DmaError,
        ContextDisabled,
        Abandon,
    }
}
