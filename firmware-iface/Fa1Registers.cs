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
    /// <summary>ID (RO): identifies an FA-1, reads <see cref="Fa1Identity.IdValue"/>.</summary>
    public const uint Id = 0x0000;

    /// <summary>VERSION (RO): the register interface version, <see cref="Fa1Version"/>.</summary>
    public const uint Version = 0x0008;

    /// <summary>CAPS (RO): contexts, queues, TLB geometry and features, <see cref="Capabilities"/>.</summary>
    public const uint Caps = 0x0010;

    /// <summary>CLOCK_HZ (RO): the fabric clock in Hz.</summary>
    public const uint ClockHz = 0x0018;

    /// <summary>CYCLES (RO): free-running cycle counter since reset.</summary>
    public const uint Cycles = 0x0020;

    /// <summary>SCRATCH (RW): no side effect; for liveness checks.</summary>
    public const uint Scratch = 0x0028;

    /// <summary>CTRL (RW): ENABLE and RESET, <see cref="ControlBits"/>.</summary>
    public const uint Ctrl = 0x0030;

    /// <summary>STATUS (RO): READY, RESETTING, FATAL, FQ_FULL, <see cref="StatusBits"/>.</summary>
    public const uint Status = 0x0038;

    /// <summary>ERROR (RO): the last fatal cause and its detail, <see cref="ErrorRegister"/>.</summary>
    public const uint Error = 0x0040;

    /// <summary>IRQ_STATUS (W1C): latched interrupt causes, <see cref="InterruptCauses"/>.</summary>
    public const uint IrqStatus = 0x0048;

    /// <summary>IRQ_MASK (RW): causes that send no MSI-X message (their status still latches).</summary>
    public const uint IrqMask = 0x0050;

    // ---- spec 4.4: fault ring ----
    /// <summary>FQ_BASE (RW): IOVA of the fault ring, 4 KiB aligned.</summary>
    public const uint FqBase = 0x0100;

    /// <summary>FQ_LOG2 (RW): fault-ring entries = 1 &lt;&lt; FQ_LOG2; writing it resets head and tail.</summary>
    public const uint FqLog2 = 0x0108;

    /// <summary>FQ_TAIL (RO): fault records produced, free-running 32-bit.</summary>
    public const uint FqTail = 0x0110;

    /// <summary>FQ_HEAD (RW): fault records consumed, written by the driver.</summary>
    public const uint FqHead = 0x0118;

    /// <summary>FQ_STALLS (RO): times a fault waited because the ring was full.</summary>
    public const uint FqStalls = 0x0120;

    /// <summary>FAULT_RESP (WO): answers a fault, <see cref="FaultResponse"/>.</summary>
    public const uint FaultResp = 0x0128;

    /// <summary>FAULT_PTE (RW): the leaf entry a DROPIN response installs; written before FAULT_RESP.</summary>
    public const uint FaultPte = 0x0130;

    // ---- spec 4.3: TLB invalidation ----
    /// <summary>INV_ADDR (RW): first DVA of a range invalidation, page aligned.</summary>
    public const uint InvAddr = 0x0200;

    /// <summary>INV_PAGES (RW): 4 KiB pages of a range invalidation; 0 = the whole context.</summary>
    public const uint InvPages = 0x0208;

    /// <summary>INV_CMD (WO): issues one invalidation, <see cref="InvalidationCommand"/>.</summary>
    public const uint InvCmd = 0x0210;

    /// <summary>INV_DONE (RO): invalidations completed (their fence passed), free-running.</summary>
    public const uint InvDone = 0x0218;

    /// <summary>TLB_HITS (RO): translations the TLB answered.</summary>
    public const uint TlbHits = 0x0220;

    /// <summary>TLB_MISSES (RO): translations the TLB did not answer.</summary>
    public const uint TlbMisses = 0x0228;

    /// <summary>WALKS (RO): page-table walks started.</summary>
    public const uint Walks = 0x0230;

    // ---- spec 4.2: per-context block at 0x1000 + 0x20 * ctx ----
    /// <summary>Offset of context 0's register block.</summary>
    public const uint ContextBlockBase = 0x1000;

    /// <summary>Bytes between two contexts' register blocks.</summary>
    public const uint ContextStride = 0x20;

    /// <summary>CTX_ROOT (RW), in a context block: the level-0 table and VALID, <see cref="ContextRoot"/>.</summary>
    public const uint CtxRoot = 0x00;

    /// <summary>CTX_CTRL (RW), in a context block: ENABLE and NOFAULT, <see cref="ContextControl"/>.</summary>
    public const uint CtxCtrl = 0x08;

    /// <summary>CTX_FAULTS (RO), in a context block: faults raised in the context.</summary>
    public const uint CtxFaults = 0x10;

    /// <summary>
    /// Decision (not in the spec): the context blocks occupy 0x1000..0x1FFF, so at most 128
    /// contexts are addressable even though CAPS.contexts is 8 bits wide. A driver treats a
    /// larger CAPS value as malformed.
    /// </summary>
    public const int MaxAddressableContexts = (int)((QueueBlockBase - ContextBlockBase) / ContextStride);

    // ---- spec 5: per-queue block at 0x2000 + 0x40 * q ----
    /// <summary>Offset of queue 0's register block.</summary>
    public const uint QueueBlockBase = 0x2000;

    /// <summary>Bytes between two queues' register blocks.</summary>
    public const uint QueueStride = 0x40;

    /// <summary>SQ_BASE (RW), in a queue block: IOVA of the submission ring, 4 KiB aligned.</summary>
    public const uint SqBase = 0x00;

    /// <summary>SQ_LOG2 (RW), in a queue block: entries = 1 &lt;&lt; SQ_LOG2; 0 disables the queue.</summary>
    public const uint SqLog2 = 0x08;

    /// <summary>SQ_TAIL (RW), in a queue block: the doorbell, descriptors produced, free-running.</summary>
    public const uint SqTail = 0x10;

    /// <summary>SQ_HEAD (RO), in a queue block: descriptors consumed.</summary>
    public const uint SqHead = 0x18;

    /// <summary>CQ_BASE (RW), in a queue block: IOVA of the completion ring, 4 KiB aligned.</summary>
    public const uint CqBase = 0x20;

    /// <summary>CQ_LOG2 (RW), in a queue block: entries = 1 &lt;&lt; CQ_LOG2.</summary>
    public const uint CqLog2 = 0x28;

    /// <summary>CQ_HEAD (RW), in a queue block: completions consumed, written by the driver.</summary>
    public const uint CqHead = 0x30;

    /// <summary>CQ_TAIL (RO), in a queue block: completions produced.</summary>
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
