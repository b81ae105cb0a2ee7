namespace FpgaAccel.VlabGuest;

/// <summary>
/// QEMU's educational PCI device (hw/misc/edu.c, docs/specs/edu.rst): its IDs and BAR0 registers.
/// Registers below 0x80 take 4-byte accesses only (other sizes read all ones); the DMA block
/// takes 4 or 8.
/// </summary>
internal static class Edu
{
    public const ushort VendorId = 0x1234;
    public const ushort DeviceId = 0x11e8;

    /// <summary>0x00: identification, 0xRRrr00ed (major.minor version, then 0xed).</summary>
    public const ulong Identification = 0x00;

    /// <summary>0x04: liveness; reads return the bitwise NOT of the last value written.</summary>
    public const ulong Liveness = 0x04;

    /// <summary>0x08: factorial; writing n starts computing n!, the result replaces it.</summary>
    public const ulong Factorial = 0x08;

    /// <summary>0x20: status; bit 0 computing (read-only), bit 7 raise an interrupt after a factorial.</summary>
    public const ulong Status = 0x20;

    /// <summary>0x24: interrupt status, the bits raised and not yet acknowledged.</summary>
    public const ulong InterruptStatus = 0x24;

    /// <summary>0x60: interrupt raise; the value written is ORed into the interrupt status.</summary>
    public const ulong InterruptRaise = 0x60;

    /// <summary>0x64: interrupt acknowledge; the bits written are cleared from the interrupt status.</summary>
    public const ulong InterruptAcknowledge = 0x64;

    /// <summary>0x80: DMA source address (8 bytes).</summary>
    public const ulong DmaSource = 0x80;

    /// <summary>0x88: DMA destination address (8 bytes).</summary>
    public const ulong DmaDestination = 0x88;

    /// <summary>0x90: DMA transfer count in bytes (8 bytes).</summary>
    public const ulong DmaCount = 0x90;

    /// <summary>0x98: DMA command (8 bytes); see the DmaCommand constants.</summary>
    public const ulong DmaCommand = 0x98;

    public const uint ExpectedIdentification = 0x010000ed;

    public const uint StatusComputing = 1u << 0;
    public const uint StatusInterruptOnFactorial = 1u << 7;

    /// <summary>The interrupt status bit a finished factorial raises (edu.c FACT_IRQ).</summary>
    public const uint FactorialInterrupt = 0x001;

    /// <summary>The interrupt status bit a finished DMA raises (edu.c DMA_IRQ).</summary>
    public const uint DmaInterrupt = 0x100;

    public const ulong DmaStart = 1u << 0;

    /// <summary>Direction bit clear: RAM to edu's buffer; set: edu's buffer to RAM.</summary>
    public const ulong DmaToRam = 1u << 1;

    public const ulong DmaRaiseInterrupt = 1u << 2;

    /// <summary>edu's DMA buffer, as seen from the device side of its DMA engine (edu.c DMA_START).</summary>
    public const ulong BufferAddress = 0x40000;

    /// <summary>edu.c's DMA_SIZE. QEMU 7.2 aborts the VM on a transfer of the whole buffer: stay below.</summary>
    public const ulong BufferSize = 4096;

    /// <summary>edu's DMA mask is 28 bits: IOVAs at or above this are truncated by the device.</summary>
    public const ulong DmaAddressLimit = 1ul << 28;

    /// <summary>MSI is edu's one interrupt (vector 0); each DMA takes ~100 ms of emulated time.</summary>
    public static readonly TimeSpan OperationTimeout = TimeSpan.FromSeconds(10);
}
