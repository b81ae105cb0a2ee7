namespace FpgaAccel.FirmwareInterface;

/// <summary>CTRL bits (spec 3).</summary>
[Flags]
public enum ControlBits : ulong
{
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
    None = 0,
    Ready = 1 << 0,
    Resetting = 1 << 1,
    Fatal = 1 << 2,
    FaultQueueFull = 1 << 3,
}

/// <summary>Interrupt causes: IRQ_STATUS and IRQ_MASK bits, and MSI-X vector numbers (spec 1, 3).</summary>
[Flags]
public enum InterruptCauses : ulong
{
    None = 0,
    Fault = 1 << 0,
    Completion = 1 << 1,
    Error = 1 << 2,
    All = Fault | Completion | Error,
}

/// <summary>MSI-X vectors (spec 1). With one vector granted, every cause arrives on vector 0.</summary>
public enum InterruptVector
{
    Fault = 0,
    Completion = 1,
    Error = 2,
}

/// <summary>ERROR[31:0]: the last fatal cause (spec 3).</summary>
public enum FatalCause : uint
{
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
    public ulong Raw => ((ulong)Detail << 32) | (uint)Cause;

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

    public bool Valid => (Raw & ValidBit) != 0;

    public ulong TableIova => Raw & TableMask;

    public static ContextRoot Create(ulong tableIova, bool valid) => new((tableIova & TableMask) | (valid ? ValidBit : 0));
}

/// <summary>CTX_CTRL bits (spec 4.2).</summary>
[Flags]
public enum ContextControl : ulong
{
    None = 0,
    Enable = 1 << 0,

    /// <summary>A translation fault aborts the command at once, with no fault record.</summary>
    NoFault = 1 << 1,
}

/// <summary>INV_CMD scope (spec 4.3).</summary>
public enum InvalidationScope : byte
{
    AllContexts = 0,
    Context = 1,
    Range = 2,

    /// <summary>Not in the spec. Decision D13: the device treats it as <see cref="AllContexts"/>.</summary>
    Reserved = 3,
}

/// <summary>INV_CMD encoding (spec 4.3): [7:0] ctx, [9:8] scope.</summary>
public readonly record struct InvalidationCommand(byte Context, InvalidationScope Scope)
{
    public ulong Raw => Context | ((ulong)Scope << 8);

    public static InvalidationCommand FromRaw(ulong raw) => new((byte)raw, (InvalidationScope)((raw >> 8) & 0x3));
}

/// <summary>FAULT_RESP codes (spec 4.4).</summary>
public enum FaultResponseCode : byte
{
    None = 0,
    Retry = 1,
    Abort = 2,
    Dropin = 3,
}

/// <summary>FAULT_RESP encoding (spec 4.4): [15:0] tag, [23:16] ctx, [27:24] code.</summary>
public readonly record struct FaultResponse(ushort Tag, byte Context, FaultResponseCode Code)
{
    public ulong Raw => Tag | ((ulong)Context << 16) | ((ulong)((byte)Code & 0xF) << 24);

    public static FaultResponse FromRaw(ulong raw) =>
        new((ushort)raw, (byte)(raw >> 16), (FaultResponseCode)((raw >> 24) & 0xF));
}

/// <summary>Ring size limits (spec 4.4, 5).</summary>
public static class RingLimits
{
    public const int FaultRingMinLog2 = 6;
    public const int FaultRingMaxLog2 = 16;

    /// <summary>
    /// Decision (the spec is silent): submission and completion rings take 1 &lt;&lt; 1 .. 1 &lt;&lt; 16
    /// entries. A larger value makes the device FATAL with cause 2 (bad ring configuration).
    /// </summary>
    public const int QueueRingMinLog2 = 1;

    public const int QueueRingMaxLog2 = 16;

    /// <summary>Rings and tables are 4 KiB aligned.</summary>
    public const ulong Alignment = 4096;
}
