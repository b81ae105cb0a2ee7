using System.Runtime.InteropServices;

namespace FpgaAccel.FirmwareInterface;

/// <summary>Fault record flags (spec 4.4).</summary>
[Flags]
public enum FaultRecordFlags : byte
{
    /// <summary>A read that found no valid leaf.</summary>
    None = 0,

    /// <summary>The access was a write.</summary>
    Write = 1 << 0,

    /// <summary>A valid leaf existed but lacked the permission.</summary>
    Present = 1 << 1,
}

/// <summary>
/// A fault record, 32 bytes, at slot (count mod entries) of the fault ring (spec 4.4).
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct FaultRecord
{
    /// <summary>Bytes per record, and per fault-ring slot.</summary>
    public const int Size = 32;

    /// <summary>+0 exact faulting DVA.</summary>
    [FieldOffset(0)] public ulong Dva;

    /// <summary>+8 tag; the response names it.</summary>
    [FieldOffset(8)] public ushort Tag;

    /// <summary>+10 context.</summary>
    [FieldOffset(10)] public byte Context;

    /// <summary>+11 flags.</summary>
    [FieldOffset(11)] public FaultRecordFlags Flags;

    /// <summary>+12 queue of the command that faulted.</summary>
    [FieldOffset(12)] public ushort Queue;

    /// <summary>+14 reserved, 0.</summary>
    [FieldOffset(14)] public ushort Reserved0;

    /// <summary>+16 cycle at which the fault was detected.</summary>
    [FieldOffset(16)] public ulong Cycle;

    /// <summary>+24 the record's own produced-count, so a stale slot is recognisable.</summary>
    [FieldOffset(24)] public uint Sequence;

    /// <summary>+28 reserved, 0.</summary>
    [FieldOffset(28)] public uint Reserved1;
}
