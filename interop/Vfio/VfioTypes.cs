namespace FpgaAccel.Interop.Vfio;

/// <summary>The IOMMU model a container uses (linux/vfio.h VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU).</summary>
public enum VfioIommuType
{
    Type1 = 1,
    Type1v2 = 3,
}

/// <summary>Region flags (linux/vfio.h VFIO_REGION_INFO_FLAG_*).</summary>
[Flags]
public enum VfioRegionFlags : uint
{
    None = 0,
    Read = 1 << 0,
    Write = 1 << 1,
    Mmap = 1 << 2,
    Caps = 1 << 3,
}

/// <summary>IRQ index flags (linux/vfio.h VFIO_IRQ_INFO_*).</summary>
[Flags]
public enum VfioIrqFlags : uint
{
    None = 0,
    EventFd = 1 << 0,
    Maskable = 1 << 1,
    AutoMasked = 1 << 2,
    NoResize = 1 << 3,
}

/// <summary>vfio-pci's fixed region indexes (linux/vfio.h VFIO_PCI_*_REGION_INDEX).</summary>
public static class VfioPciRegion
{
    public const uint Bar0 = 0;
    public const uint Bar5 = 5;
    public const uint Rom = 6;
    public const uint Config = 7;
    public const uint Vga = 8;
}

/// <summary>vfio-pci's fixed IRQ indexes (linux/vfio.h VFIO_PCI_*_IRQ_INDEX).</summary>
public static class VfioPciIrq
{
    public const uint Intx = 0;
    public const uint Msi = 1;
    public const uint Msix = 2;
    public const uint Err = 3;
    public const uint Req = 4;
}

/// <summary>VFIO_GROUP_GET_STATUS: whether the group may be used, and whether it has a container.</summary>
/// <param name="Viable">Every device in the group is bound to a VFIO driver or to none (else the group is unusable).</param>
/// <param name="ContainerSet">The group is attached to a container.</param>
public readonly record struct VfioGroupStatus(bool Viable, bool ContainerSet);

/// <summary>VFIO_DEVICE_GET_INFO.</summary>
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
public readonly record struct VfioSparseArea(ulong Offset, ulong Size)
{
    public bool Covers(ulong offset, ulong length) => length <= Size && offset >= Offset && offset - Offset <= Size - length;
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
    /// <summary>VFIO_REGION_INFO_FLAG_MMAP.</summary>
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

/// <summary>VFIO_DEVICE_GET_IRQ_INFO.</summary>
/// <param name="Index">IRQ index (VfioPciIrq for vfio-pci).</param>
/// <param name="Flags">VFIO_IRQ_INFO_*.</param>
/// <param name="Count">Vectors this index offers (0: not available).</param>
public readonly record struct VfioIrqInfo(uint Index, VfioIrqFlags Flags, uint Count);

/// <summary>A window of IOVAs the IOMMU accepts, inclusive at both ends (vfio_iova_range).</summary>
public readonly record struct VfioIovaRange(ulong Start, ulong End);

/// <summary>VFIO_IOMMU_GET_INFO for type1, with its capabilities decoded.</summary>
/// <param name="PageSizes">Bitmap of supported IOMMU page sizes (VFIO_IOMMU_INFO_PGSIZES), 0 when not reported.</param>
/// <param name="IovaRanges">Valid IOVA windows (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE); null when the kernel does not report them.</param>
/// <param name="DmaMappingsAvailable">How many more DMA mappings are allowed (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL); null when not reported.</param>
public sealed record VfioIommuInfo(ulong PageSizes, IReadOnlyList<VfioIovaRange>? IovaRanges, uint? DmaMappingsAvailable);
