using System.Runtime.InteropServices;
using static FpgaAccel.Interop.Interop.Vfio;

namespace FpgaAccel.Interop.Vfio;

/// <summary>
/// A VFIO container (<c>/dev/vfio/vfio</c>): the IOMMU context that groups join and DMA mappings live in.
/// Order of use (linux/vfio.h, Documentation/driver-api/vfio.rst): open, add a group
/// (<see cref="VfioGroup.SetContainer"/>), <see cref="SetIommu"/>, then map DMA.
/// </summary>
public sealed unsafe class VfioContainer : IDisposable
{
    /// <summary>The default container node.</summary>
    public const string DefaultPath = "/dev/vfio/vfio";

    private readonly SafeFileDescriptor _fd;

    internal VfioContainer(SafeFileDescriptor fd, string path)
    {
        _fd = fd;
        Path = path;
    }

    /// <summary>The node this container was opened from.</summary>
    public string Path { get; }

    /// <summary>The owned descriptor (a group joins the container through it).</summary>
    internal SafeFileDescriptor Handle => _fd;

    /// <summary>
    /// Opens a container and checks that it speaks VFIO_API_VERSION and offers <paramref name="iommu"/>
    /// (type1v2 by default). The descriptor is closed again if a check fails.
    /// </summary>
    public static VfioContainer Open(string path = DefaultPath, VfioIommuType iommu = VfioIommuType.Type1v2)
    {
        var container = new VfioContainer(VfioNative.Open(path), path);
        try
        {
            var version = container.GetApiVersion();
            if (version != VFIO_API_VERSION)
            {
                throw new VfioException(
                    $"{path} speaks VFIO API version {version}; this code knows version {VFIO_API_VERSION} (linux/vfio.h VFIO_API_VERSION). " +
                    "Use a kernel with the standard VFIO API.");
            }

            if (!container.CheckExtension(iommu))
            {
                throw new VfioException(
                    $"{path} does not offer the {iommu} IOMMU model (VFIO_CHECK_EXTENSION returned 0). Enable the IOMMU " +
                    "(intel_iommu=on or amd_iommu=on on the kernel command line) and load vfio_iommu_type1.");
            }

            return container;
        }
        catch
        {
            container.Dispose();
            throw;
        }
    }

    /// <summary>The VFIO API version the container speaks (VFIO_GET_API_VERSION); this code knows version 0.</summary>
    public int GetApiVersion() => VfioNative.IoctlValue(_fd, VFIO_GET_API_VERSION, 0, nameof(VFIO_GET_API_VERSION));

    /// <summary>VFIO_CHECK_EXTENSION: true when the container offers <paramref name="iommu"/>.</summary>
    public bool CheckExtension(VfioIommuType iommu) =>
        VfioNative.IoctlValue(_fd, VFIO_CHECK_EXTENSION, (nint)iommu, nameof(VFIO_CHECK_EXTENSION)) > 0;

    /// <summary>VFIO_SET_IOMMU: selects the IOMMU model. Needs at least one group attached first.</summary>
    public void SetIommu(VfioIommuType iommu = VfioIommuType.Type1v2) =>
        VfioNative.IoctlValue(_fd, VFIO_SET_IOMMU, (nint)iommu, nameof(VFIO_SET_IOMMU));

    /// <summary>
    /// VFIO_IOMMU_GET_INFO with its capability chain: page sizes, valid IOVA ranges, DMA mappings left.
    /// When the kernel answers with a larger argsz (capabilities did not fit), asks again with that size.
    /// </summary>
    public VfioIommuInfo GetIommuInfo()
    {
        var buffer = VfioNative.IoctlWithCapabilities(_fd, VFIO_IOMMU_GET_INFO, default(vfio_iommu_type1_info), nameof(VFIO_IOMMU_GET_INFO));
        return Decode(buffer, MemoryMarshal.Read<vfio_iommu_type1_info>(buffer));
    }

    /// <summary>
    /// VFIO_IOMMU_MAP_DMA: maps <paramref name="size"/> bytes of this process at <paramref name="hostAddress"/> to
    /// <paramref name="iova"/>, pinning them (counted against RLIMIT_MEMLOCK). ENOMEM becomes <see cref="VfioMemlockException"/>.
    /// </summary>
    public void MapDma(ulong iova, nint hostAddress, ulong size, DmaAccess access)
    {
        var map = new vfio_iommu_type1_dma_map
        {
            argsz = (uint)sizeof(vfio_iommu_type1_dma_map),
            flags = VfioNative.ToDmaMapFlags(access),
            vaddr = (ulong)hostAddress,
            iova = iova,
            size = size,
        };
        try
        {
            VfioNative.Ioctl(_fd, VFIO_IOMMU_MAP_DMA, &map, nameof(VFIO_IOMMU_MAP_DMA));
        }
        catch (VfioIoctlException ex) when (ex.Errno == Errno.ENOMEM)
        {
            throw new VfioMemlockException(iova, size, ResourceLimits.GetMemoryLock().Soft);
        }
    }

    /// <summary>VFIO_IOMMU_UNMAP_DMA: removes the mapping of the range, unpinning it. Returns the bytes unmapped.</summary>
    public ulong UnmapDma(ulong iova, ulong size)
    {
        var unmap = new vfio_iommu_type1_dma_unmap
        {
            argsz = (uint)sizeof(vfio_iommu_type1_dma_unmap),
            iova = iova,
            size = size,
        };
        VfioNative.Ioctl(_fd, VFIO_IOMMU_UNMAP_DMA, &unmap, nameof(VFIO_IOMMU_UNMAP_DMA));
        return unmap.size;
    }

    /// <summary>Closes the container; the kernel removes its DMA mappings and unpins their pages once no group holds it.</summary>
    public void Dispose() => _fd.Dispose();

    internal static VfioIommuInfo Decode(ReadOnlySpan<byte> buffer, vfio_iommu_type1_info info)
    {
        var pageSizes = (info.flags & VFIO_IOMMU_INFO_PGSIZES) != 0 ? info.iova_pgsizes : 0;
        List<VfioIovaRange>? ranges = null;
        uint? available = null;
        if ((info.flags & VFIO_IOMMU_INFO_CAPS) != 0 && info.cap_offset != 0)
        {
            foreach (var (id, _, offset) in VfioNative.WalkCapabilities(buffer, info.cap_offset, sizeof(vfio_iommu_type1_info), nameof(VFIO_IOMMU_GET_INFO)))
            {
                if (id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE && VfioNative.TryReadCapability(buffer, offset, out vfio_iommu_type1_info_cap_iova_range cap))
                {
                    var entries = VfioNative.TrailingArray<vfio_iova_range>(buffer, offset + sizeof(vfio_iommu_type1_info_cap_iova_range), cap.nr_iovas);
                    ranges = new List<VfioIovaRange>(entries.Length);
                    foreach (var r in entries)
                    {
                        ranges.Add(new VfioIovaRange(r.start, r.end));
                    }
                }
                else if (id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL && VfioNative.TryReadCapability(buffer, offset, out vfio_iommu_type1_info_dma_avail dma))
                {
                    available = dma.avail;
                }
            }
        }

        return new VfioIommuInfo(pageSizes, ranges, available);
    }
}
