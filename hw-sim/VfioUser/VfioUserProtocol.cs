using System.Buffers.Binary;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim.VfioUser;

/// <summary>The vfio-user commands (QEMU's docs/interop/vfio-user.rst, "Commands"); the numbers are the wire values.</summary>
public enum VfioUserCommand : ushort
{
    /// <summary>Version and capability negotiation; the first message of a session.</summary>
    Version = 1,

    /// <summary>The client adds a range of its memory the device may reach (with an fd to mmap, or without).</summary>
    DmaMap = 2,

    /// <summary>The client removes a range added by <see cref="DmaMap"/>.</summary>
    DmaUnmap = 3,

    /// <summary>Device flags, region and IRQ-type counts (VFIO_DEVICE_GET_INFO).</summary>
    DeviceGetInfo = 4,

    /// <summary>One region's size, flags and offset (VFIO_DEVICE_GET_REGION_INFO).</summary>
    DeviceGetRegionInfo = 5,

    /// <summary>ioeventfd/ioregionfd sub-regions (not offered here).</summary>
    DeviceGetRegionIoFds = 6,

    /// <summary>One IRQ type's vector count and flags (VFIO_DEVICE_GET_IRQ_INFO).</summary>
    DeviceGetIrqInfo = 7,

    /// <summary>Wires, unwires or triggers vectors (VFIO_DEVICE_SET_IRQS).</summary>
    DeviceSetIrqs = 8,

    /// <summary>A read of a device region (BAR or config space).</summary>
    RegionRead = 9,

    /// <summary>A write to a device region; BAR writes may be posted (no reply).</summary>
    RegionWrite = 10,

    /// <summary>Server to client: read client memory that came without an fd.</summary>
    DmaRead = 11,

    /// <summary>Server to client: write client memory that came without an fd.</summary>
    DmaWrite = 12,

    /// <summary>Reset the device (VFIO_DEVICE_RESET).</summary>
    DeviceReset = 13,

    /// <summary>Several coalesced region writes (only when the server offers write_multiple; this one does not).</summary>
    RegionWriteMulti = 15,

    /// <summary>Device features (migration, dirty tracking; not offered here).</summary>
    DeviceFeature = 16,

    /// <summary>Migration data read (not offered here).</summary>
    MigrationDataRead = 17,

    /// <summary>Migration data write (not offered here).</summary>
    MigrationDataWrite = 18,
}

/// <summary>The flags word of a vfio-user header.</summary>
[Flags]
public enum VfioUserFlags : uint
{
    /// <summary>Type 0: a command.</summary>
    Command = 0x0,

    /// <summary>Type 1: the reply to the command with the same message ID.</summary>
    Reply = 0x1,

    /// <summary>The type field, bits 3:0.</summary>
    TypeMask = 0xF,

    /// <summary>The sender wants no reply (posted BAR writes).</summary>
    NoReply = 0x10,

    /// <summary>In a reply: the command failed; the header's error field holds the errno.</summary>
    Error = 0x20,
}

/// <summary>
/// The 16-byte header before every vfio-user message: u16 message ID, u16 command, u32 size of the whole message
/// (header included), u32 flags, u32 errno (replies only). Little-endian, as the x86-64 hosts that run it.
/// </summary>
/// <param name="Id">Chosen by the sender of a command and echoed in its reply.</param>
/// <param name="Command">What the message is.</param>
/// <param name="Size">Bytes in the whole message, header included.</param>
/// <param name="Flags">Type, no-reply and error bits.</param>
/// <param name="Error">The errno of a failed command (replies with <see cref="VfioUserFlags.Error"/> only).</param>
public readonly record struct VfioUserHeader(ushort Id, VfioUserCommand Command, uint Size, VfioUserFlags Flags, uint Error)
{
    /// <summary>Bytes in a header.</summary>
    public const int Length = 16;

    /// <summary>The message type (command or reply).</summary>
    public VfioUserFlags Type => Flags & VfioUserFlags.TypeMask;

    /// <summary>Bytes after the header.</summary>
    public int BodyLength => (int)(Size - Length);

    /// <summary>Reads a header from the first <see cref="Length"/> bytes of <paramref name="bytes"/>.</summary>
    public static VfioUserHeader Read(ReadOnlySpan<byte> bytes) => new(
        BinaryPrimitives.ReadUInt16LittleEndian(bytes),
        (VfioUserCommand)BinaryPrimitives.ReadUInt16LittleEndian(bytes[2..]),
        BinaryPrimitives.ReadUInt32LittleEndian(bytes[4..]),
        (VfioUserFlags)BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]),
        BinaryPrimitives.ReadUInt32LittleEndian(bytes[12..]));

    /// <summary>Writes this header into the first <see cref="Length"/> bytes of <paramref name="bytes"/>.</summary>
    public void Write(Span<byte> bytes)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, Id);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[2..], (ushort)Command);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[4..], Size);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[8..], (uint)Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[12..], Error);
    }
}

/// <summary>
/// Payload layouts, as offsets from the end of the header (QEMU's docs/interop/vfio-user.rst). Where the protocol
/// reuses a linux/vfio.h struct (device, region and IRQ info, irq_set, dma_unmap) the offsets are that struct's,
/// which tests/HwSim/VfioUser/VfioUserLayoutTests.cs checks against the header with gcc.
/// </summary>
internal static class VfioUserLayout
{
    /// <summary>Protocol version this server speaks (0.0: the only one defined).</summary>
    public const ushort Major = 0;

    /// <summary>Minor version this server speaks.</summary>
    public const ushort Minor = 0;

    // VERSION: u16 major, u16 minor, then optional NUL-terminated JSON.
    public const int VersionMajor = 0;
    public const int VersionMinor = 2;
    public const int VersionJson = 4;

    // DMA_MAP: u32 argsz, u32 flags, u64 offset (into the fd), u64 address (IOVA), u64 size.
    public const int DmaMapArgsz = 0;
    public const int DmaMapFlags = 4;
    public const int DmaMapOffset = 8;
    public const int DmaMapAddress = 16;
    public const int DmaMapSize = 24;
    public const int DmaMapLength = 32;

    // DMA_UNMAP: struct vfio_iommu_type1_dma_unmap (argsz, flags, iova, size); the reply echoes it.
    public const int DmaUnmapArgsz = 0;
    public const int DmaUnmapFlags = 4;
    public const int DmaUnmapAddress = 8;
    public const int DmaUnmapSize = 16;
    public const int DmaUnmapLength = 24;

    // DEVICE_GET_INFO: argsz, flags, num_regions, num_irqs: struct vfio_device_info without its cap_offset.
    public const int DeviceInfoArgsz = 0;
    public const int DeviceInfoFlags = 4;
    public const int DeviceInfoRegions = 8;
    public const int DeviceInfoIrqs = 12;
    public const int DeviceInfoLength = 16;

    // DEVICE_GET_REGION_INFO: struct vfio_region_info.
    public const int RegionInfoArgsz = 0;
    public const int RegionInfoFlags = 4;
    public const int RegionInfoIndex = 8;
    public const int RegionInfoCapOffset = 12;
    public const int RegionInfoSize = 16;
    public const int RegionInfoOffset = 24;
    public const int RegionInfoLength = 32;

    // DEVICE_GET_IRQ_INFO: struct vfio_irq_info.
    public const int IrqInfoArgsz = 0;
    public const int IrqInfoFlags = 4;
    public const int IrqInfoIndex = 8;
    public const int IrqInfoCount = 12;
    public const int IrqInfoLength = 16;

    // DEVICE_SET_IRQS: struct vfio_irq_set, then data (one bool byte per vector for DATA_BOOL).
    public const int IrqSetArgsz = 0;
    public const int IrqSetFlags = 4;
    public const int IrqSetIndex = 8;
    public const int IrqSetStart = 12;
    public const int IrqSetCount = 16;
    public const int IrqSetData = 20;

    // REGION_READ / REGION_WRITE: u64 offset, u32 region, u32 count, then data.
    public const int RegionAccessOffset = 0;
    public const int RegionAccessRegion = 8;
    public const int RegionAccessCount = 12;
    public const int RegionAccessData = 16;

    // DMA_READ / DMA_WRITE: u64 address, u64 count, then data (the spec's layout, which QEMU 11.1 expects).
    public const int DmaAccessAddress = 0;
    public const int DmaAccessCount = 8;
    public const int DmaAccessData = 16;
}

/// <summary>A message the server refuses: the reply carries <see cref="Errno"/> (QEMU shows it as the failed call's errno).</summary>
internal sealed class VfioUserException(Errno errno, string message) : Exception(message)
{
    /// <summary>What the error reply says.</summary>
    public Errno Errno { get; } = errno;
}
