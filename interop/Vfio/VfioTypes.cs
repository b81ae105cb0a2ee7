namespace FpgaAccel.Interop.Vfio;

/// <summary>The IOMMU model a container uses (linux/vfio.h VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU).</summary>
public enum VfioIommuType
{
    /// <summary>VFIO_TYPE1_IOMMU: the original type1 model.</summary>
    Type1 = 1,

    /// <summary>VFIO_TYPE1v2_IOMMU: type1 with stricter unmap semantics (no splitting a mapping); the default.</summary>
    Type1v2 = 3,
}

/// <summary>Region flags (linux/vfio.h VFIO_REGION_INFO_FLAG_*).</summary>
[Flags]
public enum VfioRegionFlags : uint
{
    /// <summary>No flag: the region cannot be accessed.</summary>
    None = 0,

    /// <summary>VFIO_REGION_INFO_FLAG_READ: the region can be read.</summary>
    Read = 1 << 0,

    /// <summary>VFIO_REGION_INFO_FLAG_WRITE: the region can be written.</summary>
    Write = 1 << 1,

    /// <summary>VFIO_REGION_INFO_FLAG_MMAP: the region (or its sparse areas) can be mmapped.</summary>
    Mmap = 1 << 2,

    /// <summary>VFIO_REGION_INFO_FLAG_CAPS: the kernel's answer carries a capability chain.</summary>
    Caps = 1 << 3,
}

/// <summary>IRQ index flags (linux/vfio.h VFIO_IRQ_INFO_*).</summary>
[Flags]
public enum VfioIrqFlags : uint
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>VFIO_IRQ_INFO_EVENTFD: the vectors can signal eventfds.</summary>
    EventFd = 1 << 0,

    /// <summary>VFIO_IRQ_INFO_MASKABLE: the vectors can be masked and unmasked.</summary>
    Maskable = 1 << 1,

    /// <summary>VFIO_IRQ_INFO_AUTOMASKED: the kernel masks the vector when it fires (level-triggered INTx).</summary>
    AutoMasked = 1 << 2,

    /// <summary>VFIO_IRQ_INFO_NORESIZE: the vectors in use cannot change while enabled; set them all at once.</summary>
    NoResize = 1 << 3,
}

/// <summary>Device flags (linux/vfio.h VFIO_DEVICE_FLAGS_*), as VFIO_DEVICE_GET_INFO reports them.</summary>
[Flags]
public enum VfioDeviceFlags : uint
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>VFIO_DEVICE_FLAGS_RESET: the device can be reset (VFIO_DEVICE_RESET).</summary>
    Reset = Interop.Vfio.VFIO_DEVICE_FLAGS_RESET,

    /// <summary>VFIO_DEVICE_FLAGS_PCI: a PCI device; regions and IRQs use the VFIO_PCI_* indexes.</summary>
    Pci = Interop.Vfio.VFIO_DEVICE_FLAGS_PCI,
}

/// <summary>VFIO_DEVICE_SET_IRQS flags (linux/vfio.h VFIO_IRQ_SET_*): one data kind and one action.</summary>
[Flags]
public enum VfioIrqSetFlags : uint
{
    /// <summary>No flag (never valid alone).</summary>
    None = 0,

    /// <summary>VFIO_IRQ_SET_DATA_NONE: no data; the action applies to every vector of the range (count 0: disable the index).</summary>
    DataNone = Interop.Vfio.VFIO_IRQ_SET_DATA_NONE,

    /// <summary>VFIO_IRQ_SET_DATA_BOOL: one byte per vector; the action applies where it is non-zero.</summary>
    DataBool = Interop.Vfio.VFIO_IRQ_SET_DATA_BOOL,

    /// <summary>VFIO_IRQ_SET_DATA_EVENTFD: one eventfd per vector (-1, or none passed: unwire it).</summary>
    DataEventFd = Interop.Vfio.VFIO_IRQ_SET_DATA_EVENTFD,

    /// <summary>VFIO_IRQ_SET_ACTION_MASK: mask the vectors.</summary>
    ActionMask = Interop.Vfio.VFIO_IRQ_SET_ACTION_MASK,

    /// <summary>VFIO_IRQ_SET_ACTION_UNMASK: unmask the vectors.</summary>
    ActionUnmask = Interop.Vfio.VFIO_IRQ_SET_ACTION_UNMASK,

    /// <summary>VFIO_IRQ_SET_ACTION_TRIGGER: fire the vectors, or (with eventfds) say which eventfd each one signals.</summary>
    ActionTrigger = Interop.Vfio.VFIO_IRQ_SET_ACTION_TRIGGER,

    /// <summary>Every data kind.</summary>
    DataMask = DataNone | DataBool | DataEventFd,

    /// <summary>Every action.</summary>
    ActionMaskAll = ActionMask | ActionUnmask | ActionTrigger,
}

/// <summary>DMA mapping flags (linux/vfio.h VFIO_DMA_MAP_FLAG_*), which the vfio-user DMA_MAP message reuses.</summary>
[Flags]
public enum VfioDmaMapFlags : uint
{
    /// <summary>No access.</summary>
    None = 0,

    /// <summary>VFIO_DMA_MAP_FLAG_READ: the device may read the range.</summary>
    Read = Interop.Vfio.VFIO_DMA_MAP_FLAG_READ,

    /// <summary>VFIO_DMA_MAP_FLAG_WRITE: the device may write the range.</summary>
    Write = Interop.Vfio.VFIO_DMA_MAP_FLAG_WRITE,
}

/// <summary>DMA unmapping flags (linux/vfio.h VFIO_DMA_UNMAP_FLAG_*) that this code base knows.</summary>
[Flags]
public enum VfioDmaUnmapFlags : uint
{
    /// <summary>Unmap the mappings inside the range.</summary>
    None = 0,

    /// <summary>VFIO_DMA_UNMAP_FLAG_ALL: unmap every mapping (the range must be 0, 0).</summary>
    All = Interop.Vfio.VFIO_DMA_UNMAP_FLAG_ALL,
}

/// <summary>vfio-pci's fixed region indexes (linux/vfio.h VFIO_PCI_*_REGION_INDEX).</summary>
public static class VfioPciRegion
{
    /// <summary>BAR0 (BARs 1 to 4 are 1 to 4).</summary>
    public const uint Bar0 = 0;

    /// <summary>BAR5, the last BAR.</summary>
    public const uint Bar5 = 5;

    /// <summary>The expansion ROM.</summary>
    public const uint Rom = 6;

    /// <summary>PCI config space (read and written through the device fd, never mmapped).</summary>
    public const uint Config = 7;

    /// <summary>The legacy VGA ranges, on VGA devices only.</summary>
    public const uint Vga = 8;

    /// <summary>How many fixed indexes there are (VFIO_PCI_NUM_REGIONS); device-specific regions follow them.</summary>
    public const uint Count = Interop.Vfio.VFIO_PCI_NUM_REGIONS;
}

/// <summary>vfio-pci's fixed IRQ indexes (linux/vfio.h VFIO_PCI_*_IRQ_INDEX).</summary>
public static class VfioPciIrq
{
    /// <summary>The legacy INTx pin interrupt.</summary>
    public const uint Intx = 0;

    /// <summary>MSI vectors.</summary>
    public const uint Msi = 1;

    /// <summary>MSI-X vectors.</summary>
    public const uint Msix = 2;

    /// <summary>AER error reporting: signalled when the device reports an uncorrectable error.</summary>
    public const uint Err = 3;

    /// <summary>Device request: signalled when the kernel asks the user to release the device (unbind).</summary>
    public const uint Req = 4;

    /// <summary>How many IRQ indexes there are (VFIO_PCI_NUM_IRQS).</summary>
    public const uint Count = Interop.Vfio.VFIO_PCI_NUM_IRQS;
}

/// <summary>VFIO_GROUP_GET_STATUS: whether the group may be used, and whether it has a container.</summary>
/// <param name="Viable">Every device in the group is bound to a VFIO driver or to none (else the group is unusable).</param>
/// <param name="ContainerSet">The group is attached to a container.</param>
public readonly record struct VfioGroupStatus(bool Viable, bool ContainerSet);

/// <summary>What a device offers (VFIO_DEVICE_GET_INFO): its kind, how many regions and IRQ indexes, whether it can be reset.</summary>
/// <param name="Flags">VFIO_DEVICE_FLAGS_*.</param>
/// <param name="RegionCount">Regions (max index + 1).</param>
/// <param name="IrqCount">IRQ indexes (max index + 1).</param>
public readonly record struct VfioDeviceInfo(uint Flags, uint RegionCount, uint IrqCount)
{
    /// <summary>VFIO_DEVICE_FLAGS_RESET: VFIO_DEVICE_RESET is available.</summary>
    public bool SupportsReset => (Flags & Interop.Vfio.VFIO_DEVICE_FLAGS_RESET) != 0;

    /// <summary>VFIO_DEVICE_FLAGS_PCI: a vfio-pci device (regions and IRQs use the VFIO_PCI_* indexes).</summary>
    public bool IsPci => (Flags & Interop.Vfio.VFIO_DEVICE_FLAGS_PCI) != 0;
}

/// <summary>One mmappable window of a sparse region (VFIO_REGION_INFO_CAP_SPARSE_MMAP), relative to the region.</summary>
/// <param name="Offset">Where the window starts, in bytes from the start of the region.</param>
/// <param name="Size">Bytes in the window.</param>
public readonly record struct VfioSparseArea(ulong Offset, ulong Size)
{
    /// <summary>True when <paramref name="length"/> bytes at <paramref name="offset"/> (region-relative) lie inside this area.</summary>
    internal bool Covers(ulong offset, ulong length) => length <= Size && offset >= Offset && offset - Offset <= Size - length;
}

/// <summary>VFIO_DEVICE_GET_REGION_INFO, with its capability chain decoded.</summary>
/// <param name="Index">Region index (VfioPciRegion for vfio-pci).</param>
/// <param name="Flags">What the region supports.</param>
/// <param name="Size">Bytes; 0 for an unimplemented region (e.g. an absent BAR).</param>
/// <param name="Offset">Where the region starts in the device fd (64-bit: vfio-pci uses index &lt;&lt; 40).</param>
/// <param name="SparseAreas">When the kernel lists sparse mmap areas, only those may be mmapped; null when the whole region may be.</param>
/// <param name="MsixMappable">VFIO_REGION_INFO_CAP_MSIX_MAPPABLE: the MSI-X table in this BAR may be mmapped too.</param>
public sealed record VfioRegionInfo(uint Index, VfioRegionFlags Flags, ulong Size, ulong Offset, IReadOnlyList<VfioSparseArea>? SparseAreas, bool MsixMappable)
{
    /// <summary>True when the region may be mmapped at all (VFIO_REGION_INFO_FLAG_MMAP); see <see cref="CanMmapRange"/> for a range.</summary>
    public bool CanMmap => (Flags & VfioRegionFlags.Mmap) != 0;

    /// <summary>True when <paramref name="length"/> bytes at <paramref name="offset"/> may be mmapped.</summary>
    public bool CanMmapRange(ulong offset, ulong length)
    {
        if (!CanMmap || length == 0 || offset > Size || length > Size - offset)
        {
            return false;
        }

        return SparseAreas is null || MsixMappable || SparseAreas.Any(a => a.Covers(offset, length));
    }
}

/// <summary>One IRQ index of a device (VFIO_DEVICE_GET_IRQ_INFO): how many vectors it has and how they behave.</summary>
/// <param name="Index">IRQ index (VfioPciIrq for vfio-pci).</param>
/// <param name="Flags">VFIO_IRQ_INFO_*.</param>
/// <param name="Count">Vectors this index offers (0: not available).</param>
public readonly record struct VfioIrqInfo(uint Index, VfioIrqFlags Flags, uint Count);

/// <summary>A window of IOVAs the IOMMU accepts, inclusive at both ends (vfio_iova_range).</summary>
/// <param name="Start">The first valid IOVA.</param>
/// <param name="End">The last valid IOVA (inclusive).</param>
public readonly record struct VfioIovaRange(ulong Start, ulong End);

/// <summary>VFIO_IOMMU_GET_INFO for type1, with its capabilities decoded.</summary>
/// <param name="PageSizes">Bitmap of supported IOMMU page sizes (VFIO_IOMMU_INFO_PGSIZES), 0 when not reported.</param>
/// <param name="IovaRanges">Valid IOVA windows (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE); null when the kernel does not report them.</param>
/// <param name="DmaMappingsAvailable">How many more DMA mappings are allowed (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL); null when not reported.</param>
public sealed record VfioIommuInfo(ulong PageSizes, IReadOnlyList<VfioIovaRange>? IovaRanges, uint? DmaMappingsAvailable);
