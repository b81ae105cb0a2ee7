using System.Runtime.InteropServices;

namespace FpgaAccel.FirmwareInterface;

/// <summary>Descriptor opcodes (spec 5).</summary>
public enum Opcode : byte
{
    Nop = 0,
    Copy = 1,
    Fill = 2,
    Crc32C = 3,
}

/// <summary>Descriptor flags (spec 5).</summary>
[Flags]
public enum DescriptorFlags : ushort
{
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
    public const int Size = 64;

    /// <summary>Offset of the reserved tail.</summary>
    public const int ReservedOffset = 40;

    /// <summary>Length of the reserved tail.</summary>
    public const int ReservedLength = 24;

    [FieldOffset(0)] public Opcode Opcode;
    [FieldOffset(1)] public byte Context;
    [FieldOffset(2)] public DescriptorFlags Flags;
    [FieldOffset(4)] public uint Tag;
    [FieldOffset(8)] public ulong Source;
    [FieldOffset(16)] public ulong Destination;
    [FieldOffset(24)] public ulong Length;
    [FieldOffset(32)] public ulong Pattern;
    [FieldOffset(40)] public ulong Reserved0;
    [FieldOffset(48)] public ulong Reserved1;
    [FieldOffset(56)] public ulong Reserved2;
}

/// <summary>Completion status codes, bits [14:0] of the status field (spec 5).</summary>
public enum CompletionStatus : ushort
{
    Ok = 0,
    Fault = 1,
    BadDescriptor = 2,
    DmaError = 3,
    ContextDisabled = 4,
}

/// <summary>A completion record, 32 bytes (spec 5).</summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct CompletionRecord
{
    public const int Size = 32;

    /// <summary>Bit 15 of <see cref="StatusAndPhase"/>: 1 on the ring's first lap, toggling each lap.</summary>
    public const ushort PhaseBit = 0x8000;

    /// <summary>Bits [14:0] of <see cref="StatusAndPhase"/>: the <see cref="CompletionStatus"/>.</summary>
    public const ushort StatusMask = 0x7FFF;

    [FieldOffset(0)] public uint Tag;

    /// <summary>[14:0] status, [15] phase.</summary>
    [FieldOffset(4)] public ushort StatusAndPhase;

    /// <summary>Faults taken by this command.</summary>
    [FieldOffset(6)] public ushort Faults;

    /// <summary>CRC32C result, 0 for other opcodes.</summary>
    [FieldOffset(8)] public ulong Result;

    [FieldOffset(16)] public ulong StartCycle;
    [FieldOffset(24)] public ulong EndCycle;

    public readonly CompletionStatus Status => (CompletionStatus)(StatusAndPhase & StatusMask);

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
