namespace FpgaAccel.FirmwareInterface;

/// <summary>
/// BAR0 register offsets, written once here and used by both the driver and the model.
/// Every register is 64 bits wide, little-endian, naturally aligned, and accessed with exactly
/// one 64-bit load or store (spec 2).
/// </summary>
public static class Fa1Registers
{
    /// <summary>Width of every register in bytes.</summary>
    public const int Width = 8;

    // ---- spec 3: global block ----
    public const uint Id = 0x0000;
    public const uint Version = 0x0008;
    public const uint Caps = 0x0010;
    public const uint ClockHz = 0x0018;
    public const uint Cycles = 0x0020;
    public const uint Scratch = 0x0028;
    public const uint Ctrl = 0x0030;
    public const uint Status = 0x0038;
    public const uint Error = 0x0040;
    public const uint IrqStatus = 0x0048;
    public const uint IrqMask = 0x0050;

    // ---- spec 4.4: fault ring ----
    public const uint FqBase = 0x0100;
    public const uint FqLog2 = 0x0108;
    public const uint FqTail = 0x0110;
    public const uint FqHead = 0x0118;
    public const uint FqStalls = 0x0120;
    public const uint FaultResp = 0x0128;
    public const uint FaultPte = 0x0130;

    // ---- spec 4.3: TLB invalidation ----
    public const uint InvAddr = 0x0200;
    public const uint InvPages = 0x0208;
    public const uint InvCmd = 0x0210;
    public const uint InvDone = 0x0218;
    public const uint TlbHits = 0x0220;
    public const uint TlbMisses = 0x0228;
    public const uint Walks = 0x0230;

    // ---- spec 4.2: per-context block at 0x1000 + 0x20 * ctx ----
    public const uint ContextBlockBase = 0x1000;
    public const uint ContextStride = 0x20;
    public const uint CtxRoot = 0x00;
    public const uint CtxCtrl = 0x08;
    public const uint CtxFaults = 0x10;

    /// <summary>
    /// Decision (not in the spec): the context blocks occupy 0x1000..0x1FFF, so at most 128
    /// contexts are addressable even though CAPS.contexts is 8 bits wide. A driver treats a
    /// larger CAPS value as malformed.
    /// </summary>
    public const int MaxAddressableContexts = (int)((QueueBlockBase - ContextBlockBase) / ContextStride);

    // ---- spec 5: per-queue block at 0x2000 + 0x40 * q ----
    public const uint QueueBlockBase = 0x2000;
    public const uint QueueStride = 0x40;
    public const uint SqBase = 0x00;
    public const uint SqLog2 = 0x08;
    public const uint SqTail = 0x10;
    public const uint SqHead = 0x18;
    public const uint CqBase = 0x20;
    public const uint CqLog2 = 0x28;
    public const uint CqHead = 0x30;
    public const uint CqTail = 0x38;

    /// <summary>Queues addressable in BAR0: 256 blocks of 0x40 end at 0x6000, inside 64 KiB.</summary>
    public const int MaxAddressableQueues = 256;

    /// <summary>Offset of a register in context <paramref name="context"/>'s block.</summary>
    public static uint Context(int context, uint register) =>
        ContextBlockBase + (ContextStride * (uint)context) + register;

    /// <summary>Offset of a register in queue <paramref name="queue"/>'s block.</summary>
    public static uint Queue(int queue, uint register) =>
        QueueBlockBase + (QueueStride * (uint)queue) + register;
}
