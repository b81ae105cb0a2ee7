using System.Runtime.InteropServices;

namespace FpgaAccel.FirmwareInterface;

/// <summary>Descriptor opcodes (spec 5).</summary>
public enum Opcode : byte
{
    /// <summary>Does nothing but complete (every field but the reserved bytes is ignored).</summary>
    Nop = 0,

    /// <summary>Copies LEN bytes from SRC to DST.</summary>
    Copy = 1,

    /// <summary>Fills LEN bytes at DST with the 8-byte PATTERN repeated.</summary>
    Fill = 2,

    /// <summary>Computes the <see cref="FirmwareInterface.Crc32C"/> of LEN bytes at SRC into the completion's result.</summary>
    Crc32C = 3,
}

/// <summary>Descriptor flags (spec 5).</summary>
[Flags]
public enum DescriptorFlags : ushort
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>Completion interrupt for this command.</summary>
    Irq = 1 << 0,

    /// <summary>Start only after every earlier command of this queue completed.</summary>
    Fence = 1 << 1,
}

/// <summary>
/// A submission descriptor, 64 bytes (spec 5). Bytes 40..63 are reserved and must be zero,
/// else the device answers BAD_DESC.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct SubmissionDescriptor
{
    /// <summary>Bytes per descriptor, and per submission-ring slot.</summary>
    public const int Size = 64;

    /// <summary>Offset of the reserved tail.</summary>
    public const int ReservedOffset = 40;

    /// <summary>Length of the reserved tail.</summary>
    public const int ReservedLength = 24;

    /// <summary>+0 what the command does.</summary>
    [FieldOffset(0)] public Opcode Opcode;

    /// <summary>+1 the context whose page table translates SRC and DST.</summary>
    [FieldOffset(1)] public byte Context;

    /// <summary>+2 IRQ and FENCE.</summary>
    [FieldOffset(2)] public DescriptorFlags Flags;

    /// <summary>+4 chosen by the driver, echoed in the completion.</summary>
    [FieldOffset(4)] public uint Tag;

    /// <summary>+8 source DVA (COPY, CRC32C).</summary>
    [FieldOffset(8)] public ulong Source;

    /// <summary>+16 destination DVA (COPY, FILL).</summary>
    [FieldOffset(16)] public ulong Destination;

    /// <summary>+24 bytes to process; 0 is a bad descriptor.</summary>
    [FieldOffset(24)] public ulong Length;

    /// <summary>+32 the 8-byte FILL pattern, little-endian.</summary>
    [FieldOffset(32)] public ulong Pattern;

    /// <summary>+40 reserved, must be zero.</summary>
    [FieldOffset(40)] public ulong Reserved0;

    /// <summary>+48 reserved, must be zero.</summary>
    [FieldOffset(48)] public ulong Reserved1;

    /// <summary>+56 reserved, must be zero.</summary>
    [FieldOffset(56)] public ulong Reserved2;
}

/// <summary>Completion status codes, bits [14:0] of the status field (spec 5).</summary>
public enum CompletionStatus : ushort
{
    /// <summary>OK: the command did all it was asked.</summary>
    Ok = 0,

    /// <summary>FAULT: a translation fault ended it (ABORT, NOFAULT, or no fault ring).</summary>
    Fault = 1,

    /// <summary>BAD_DESC: the descriptor broke a rule (opcode, LEN, range, context, reserved bytes).</summary>
    BadDescriptor = 2,

    /// <summary>DMA_ERROR: the platform IOMMU refused a data access (spec 6).</summary>
    DmaError = 3,

    /// <summary>CTX_DISABLED: the context is not enabled or its root is not VALID.</summary>
    ContextDisabled = 4,
}

/// <summary>A completion record, 32 bytes (spec 5).</summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct CompletionRecord
{
    /// <summary>Bytes per record, and per completion-ring slot.</summary>
    public const int Size = 32;

    /// <summary>Bit 15 of <see cref="StatusAndPhase"/>: 1 on the ring's first lap, toggling each lap.</summary>
    public const ushort PhaseBit = 0x8000;

    /// <summary>Bits [14:0] of <see cref="StatusAndPhase"/>: the <see cref="CompletionStatus"/>.</summary>
    public const ushort StatusMask = 0x7FFF;

    /// <summary>+0 the descriptor's tag.</summary>
    [FieldOffset(0)] public uint Tag;

    /// <summary>+4 [14:0] status, [15] phase.</summary>
    [FieldOffset(4)] public ushort StatusAndPhase;

    /// <summary>+6 faults taken by this command.</summary>
    [FieldOffset(6)] public ushort Faults;

    /// <summary>+8 CRC32C result (decision D30), 0 for other opcodes.</summary>
    [FieldOffset(8)] public ulong Result;

    /// <summary>+16 CYCLES when the command started.</summary>
    [FieldOffset(16)] public ulong StartCycle;

    /// <summary>+24 CYCLES when the command completed.</summary>
    [FieldOffset(24)] public ulong EndCycle;

    /// <summary>The status field, bits [14:0] of <see cref="StatusAndPhase"/>.</summary>
    public readonly CompletionStatus Status => (CompletionStatus)(StatusAndPhase & StatusMask);

    /// <summary>The PHASE bit: true on the ring's first lap (see <see cref="PhaseOf"/>).</summary>
    public readonly bool Phase => (StatusAndPhase & PhaseBit) != 0;

    /// <summary>
    /// The PHASE of the record at produced-count <paramref name="count"/> of a ring of
    /// 1 &lt;&lt; <paramref name="log2"/> entries: 1 on the first lap, toggling each lap (spec 5).
    /// </summary>
    public static bool PhaseOf(ulong count, int log2) => ((count >> log2) & 1) == 0;

    /// <summary>A record with each field set; <see cref="StatusAndPhase"/> packs <paramref name="status"/> and <paramref name="phase"/>.</summary>
    public static CompletionRecord Create(uint tag, CompletionStatus status, bool phase, ushort faults, ulong result, ulong startCycle, ulong endCycle) =>
        new()
        {
            Tag = tag,
            StatusAndPhase = (ushort)(((ushort)status & StatusMask) | (phase ? PhaseBit : 0)),
            Faults = faults,
            Result = result,
            StartCycle = startCycle,
            EndCycle = endCycle,
        };

    /// <summary>
    /// Stores <paramref name="record"/> into the ring slot <paramref name="slot"/> one field at a time,
    /// <see cref="StatusAndPhase"/> last, with release semantics: a reader that reads StatusAndPhase with
    /// acquire semantics (<c>Volatile.Read</c>) and finds the phase it expects sees
    /// every other field of this record.
    /// </summary>
    public static void Publish(ref CompletionRecord slot, in CompletionRecord record)
    {
        Volatile.Write(ref slot.Result, record.Result);
        Volatile.Write(ref slot.StartCycle, record.StartCycle);
        Volatile.Write(ref slot.EndCycle, record.EndCycle);
        Volatile.Write(ref slot.Tag, record.Tag);
        Volatile.Write(ref slot.Faults, record.Faults);
        Volatile.Write(ref slot.StatusAndPhase, record.StatusAndPhase);
    }
}
