namespace FpgaAccel.Interop;

/// <summary>
/// What a DMA mapping lets a device do with the host memory behind it: the one access type of the VFIO
/// layer, the model's IOMMU and the driver's pins. Where native flags are needed they are mapped from it
/// explicitly (VFIO: <c>VfioNative.ToDmaMapFlags</c>), never cast.
/// </summary>
[Flags]
public enum DmaAccess
{
    /// <summary>No access: not valid for a mapping (VFIO and the model's IOMMU refuse it).</summary>
    None = 0,

    /// <summary>The device reads the host memory: a DMA source (VFIO_DMA_MAP_FLAG_READ).</summary>
    DeviceRead = 1 << 0,

    /// <summary>The device writes the host memory: a DMA destination (VFIO_DMA_MAP_FLAG_WRITE).</summary>
    DeviceWrite = 1 << 1,

    /// <summary>The device both reads and writes the host memory.</summary>
    ReadWrite = DeviceRead | DeviceWrite,
}
