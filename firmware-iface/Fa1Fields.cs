namespace FpgaAccel.FirmwareInterface;

/// <summary>CTRL bits (spec 3).</summary>
[Flags]
public enum ControlBits : ulong
{
    /// <summary>Disabled, no reset requested (CTRL's reset value).</summary>
    None = 0,

    /// <summary>[0] The device processes queues and faults.</summary>
    Enable = 1 << 0,

    /// <summary>[1] Write 1 to reset; self-clears when the reset is done.</summary>
    Reset = 1 << 1,
}

/// <summary>STATUS bits (spec 3).</summary>
[Flags]
public enum StatusBits : ulong
{
    /// <summary>No bit set.</summary>
    None = 0,

    /// <summary>[0] READY: not resetting; registers take writes.</summary>
    Ready = 1 << 0,

    /// <summary>[1] RESETTING: a CTRL.RESET is in progress; writes are ignored.</summary>
    Resetting = 1 << 1,

    /// <summary>[2] FATAL: the device stopped; ERROR says why. Only CTRL.RESET clears it.</summary>
    Fatal = 1 << 2,

    /// <summary>[3] FQ_FULL: the fault ring is full and faults are being held.</summary>
    FaultQueueFull = 1 << 3,
}

/// <summary>Interrupt causes: IRQ_STATUS and IRQ_MASK bits, and MSI-X vector numbers (spec 1, 3).</summary>
[Flags]
public enum InterruptCauses : ulong
{
    /// <summary>No cause.</summary>
    None = 0,

    /// <summary>[0] FAULT: a fault record was written (vector 0).</summary>
    Fault = 1 << 0,

    /// <summary>[1] COMPLETION: a completion whose descriptor had IRQ was posted (vector 1).</summary>
    Completion = 1 << 1,

    /// <summary>[2] ERROR: the device went FATAL (vector 2).</summary>
    Error = 1 << 2,

    /// <summary>Every cause: the implemented bits of IRQ_STATUS and IRQ_MASK.</summary>
    All = Fault | Completion | Error,
}

/// <summary>MSI-X vectors (spec 1). With one vector granted, every cause arrives on vector 0.</summary>
public enum InterruptVector
{
    /// <summary>Vector 0: fault records.</summary>
    Fault = 0,

    /// <summary>Vector 1: completions.</summary>
    Completion = 1,

    /// <summary>Vector 2: FATAL.</summary>
    Error = 2,
}

/// <summary>ERROR[31:0]: the last fatal cause (spec 3).</summary>
public enum FatalCause : uint
{
    /// <summary>Not FATAL (the reset value).</summary>
    None = 0,

    /// <summary>DMA to an unmapped IOVA while reading a ring or page table; detail is the IOVA page.</summary>
    UnmappedIova = 1,

    /// <summary>A ring was configured out of the spec's bounds.</summary>
    BadRingConfiguration = 2,

    /// <summary>Internal device error.</summary>
    Internal = 3,
}

/// <summary>The ERROR register: cause in [31:0], detail in [63:32] (spec 3).</summary>
public readonly record struct ErrorRegister(FatalCause Cause, uint Detail)
{
    /// <summary>The register value.</summary>
    public ulong Raw => ((ulong)Detail << 32) | (uint)Cause;

    /// <summary>Splits a value read from ERROR.</summary>
    public static ErrorRegister FromRaw(ulong raw) => new((FatalCause)(uint)raw, (uint)(raw >> 32));

    /// <summary>Cause 1 for a refused ring or table access at <paramref name="iova"/>: the detail is the IOVA's page number, IOVA &gt;&gt; 12, low 32 bits (spec 3).</summary>
    public static ErrorRegister ForUnmappedIova(ulong iova) => new(FatalCause.UnmappedIova, (uint)(iova >> PageTableFormat.PageShift));

    /// <summary>Cause 2: the detail is the BAR0 offset of the register holding the bad configuration (decision D14).</summary>
    public static ErrorRegister ForBadRingConfiguration(uint registerOffset) => new(FatalCause.BadRingConfiguration, registerOffset);
}

/// <summary>The CAPS register (spec 3), with each field as a computed property.</summary>
public readonly record struct Capabilities(ulong Raw)
{
    /// <summary>[7:0] number of contexts.</summary>
    public int Contexts => (int)(Raw & 0xFF);

    /// <summary>[15:8] number of queues.</summary>
    public int Queues => (int)((Raw >> 8) & 0xFF);

    /// <summary>[23:16] TLB ways.</summary>
    public int TlbWays => (int)((Raw >> 16) & 0xFF);

    /// <summary>[31:24] log2 of TLB sets.</summary>
    public int TlbSetsLog2 => (int)((Raw >> 24) & 0xFF);

    /// <summary>TLB entries: ways x sets.</summary>
    public long TlbEntries => TlbSetsLog2 >= 32 ? 0 : (long)TlbWays << TlbSetsLog2;

    /// <summary>[32] the device is the software model.</summary>
    public bool IsModel => ((Raw >> 32) & 1) != 0;

    /// <summary>[33] 2 MiB leaves at level 2 are supported.</summary>
    public bool Huge2M => ((Raw >> 33) & 1) != 0;

    /// <summary>[34] the DROPIN fault response is supported.</summary>
    public bool Dropin => ((Raw >> 34) & 1) != 0;

    /// <summary>[47:40] device virtual address bits.</summary>
    public int VaBits => (int)((Raw >> 40) & 0xFF);

    /// <summary>[55:48] IOVA bits.</summary>
    public int IovaBits => (int)((Raw >> 48) & 0xFF);

    /// <summary>Packs the fields into the register value.</summary>
    public static Capabilities Create(
        int contexts, int queues, int tlbWays, int tlbSetsLog2, bool isModel, bool huge2M, bool dropin, int vaBits, int iovaBits) =>
        new(((ulong)(byte)contexts)
            | ((ulong)(byte)queues << 8)
            | ((ulong)(byte)tlbWays << 16)
            | ((ulong)(byte)tlbSetsLog2 << 24)
            | (isModel ? 1UL << 32 : 0)
            | (huge2M ? 1UL << 33 : 0)
            | (dropin ? 1UL << 34 : 0)
            | ((ulong)(byte)vaBits << 40)
            | ((ulong)(byte)iovaBits << 48));
}

/// <summary>CTX_ROOT (spec 4.2): level-0 table IOVA, 4 KiB aligned, with VALID in bit 0.</summary>
public readonly record struct ContextRoot(ulong Raw)
{
    /// <summary>[0] VALID.</summary>
    public const ulong ValidBit = 1;

    /// <summary>The level-0 table's IOVA: every bit above [11:0].</summary>
    public const ulong TableMask = ~0xFFFUL;

    /// <summary>The bits CTX_ROOT holds; [11:1] are not implemented.</summary>
    public const ulong ImplementedBits = TableMask | ValidBit;

    /// <summary>VALID: the context's table may be walked.</summary>
    public bool Valid => (Raw & ValidBit) != 0;

    /// <summary>IOVA of the context's level-0 table.</summary>
    public ulong TableIova => Raw & TableMask;

    /// <summary>The register value for a level-0 table at <paramref name="tableIova"/> (its bits [11:0] are dropped).</summary>
    public static ContextRoot Create(ulong tableIova, bool valid) => new((tableIova & TableMask) | (valid ? ValidBit : 0));
}

/// <summary>CTX_CTRL bits (spec 4.2).</summary>
[Flags]
public enum ContextControl : ulong
{
    /// <summary>Disabled (the reset value): commands naming the context complete CTX_DISABLED.</summary>
    None = 0,

    /// <summary>[0] ENABLE: commands may use the context.</summary>
    Enable = 1 << 0,

    /// <summary>A translation fault aborts the command at once, with no fault record.</summary>
    NoFault = 1 << 1,
}

/// <summary>INV_CMD scope (spec 4.3).</summary>
public enum InvalidationScope : byte
{
    /// <summary>0: every entry of every context.</summary>
    AllContexts = 0,

    /// <summary>1: every entry of one context.</summary>
    Context = 1,

    /// <summary>2: INV_PAGES pages from INV_ADDR in one context (INV_PAGES 0: the whole context).</summary>
    Range = 2,

    /// <summary>Not in the spec. Decision D13: the device treats it as <see cref="AllContexts"/>.</summary>
    Reserved = 3,
}

/// <summary>INV_CMD encoding (spec 4.3): [7:0] ctx, [9:8] scope.</summary>
public readonly record struct InvalidationCommand(byte Context, InvalidationScope Scope)
{
    /// <summary>The value to write to INV_CMD.</summary>
    public ulong Raw => Context | ((ulong)Scope << 8);

    /// <summary>Splits a value written to INV_CMD (bits above [9:0] are ignored).</summary>
    public static InvalidationCommand FromRaw(ulong raw) => new((byte)raw, (InvalidationScope)((raw >> 8) & 0x3));
}

/// <summary>FAULT_RESP codes (spec 4.4).</summary>
public enum FaultResponseCode : byte
{
    /// <summary>Not a response: a fault waiting for one.</summary>
    None = 0,

    /// <summary>Translate again (TLB miss, walk) and continue.</summary>
    Retry = 1,

    /// <summary>The command that owns the access completes with status FAULT.</summary>
    Abort = 2,

    /// <summary>Put FAULT_PTE in the TLB for (ctx, DVA page) and continue, unless the tag was killed.</summary>
    Dropin = 3,
}

/// <summary>FAULT_RESP encoding (spec 4.4): [15:0] tag, [23:16] ctx, [27:24] code.</summary>
public readonly record struct FaultResponse(ushort Tag, byte Context, FaultResponseCode Code)
{
    /// <summary>The value to write to FAULT_RESP.</summary>
    public ulong Raw => Tag | ((ulong)Context << 16) | ((ulong)((byte)Code & 0xF) << 24);

    /// <summary>Splits a value written to FAULT_RESP.</summary>
    public static FaultResponse FromRaw(ulong raw) =>
        new((ushort)raw, (byte)(raw >> 16), (FaultResponseCode)((raw >> 24) & 0xF));
}

/// <summary>Ring size limits (spec 4.4, 5).</summary>
public static class RingLimits
{
    /// <summary>Smallest FQ_LOG2 other than 0 (decision D25: 0 means no fault ring).</summary>
    public const int FaultRingMinLog2 = 6;

    /// <summary>Largest FQ_LOG2.</summary>
    public const int FaultRingMaxLog2 = 16;

    /// <summary>
    /// Decision (the spec is silent): submission and completion rings take 1 &lt;&lt; 1 .. 1 &lt;&lt; 16
    /// entries. A larger value makes the device FATAL with cause 2 (bad ring configuration).
    /// </summary>
    public const int QueueRingMinLog2 = 1;

    /// <summary>Largest SQ_LOG2 and CQ_LOG2 (decision D7).</summary>
    public const int QueueRingMaxLog2 = 16;

    /// <summary>Rings and tables are 4 KiB aligned.</summary>
    public const ulong Alignment = 4096;
}
