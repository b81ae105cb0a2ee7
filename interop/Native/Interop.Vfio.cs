namespace FpgaAccel.Interop;

internal static partial class Interop
{
    /// <summary>
    /// The VFIO user ABI from linux/vfio.h: constants, ioctl request numbers and (in
    /// Interop.Vfio.Structs.cs) structs, under their C names. Every constant and struct here is
    /// compiled against the real header by tests/Interop/Vfio/VfioLayoutTests.cs, which finds them by
    /// reflection: anything added here is checked without further work.
    /// </summary>
    internal static partial class Vfio
    {
        // asm-generic/ioctl.h: _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr.
        // The leading underscore is the header's (C names stay C names in interop).
#pragma warning disable IDE1006
        internal const int _IOC_NRSHIFT = 0;
        internal const int _IOC_TYPESHIFT = 8;
        internal const int _IOC_SIZESHIFT = 16;
        internal const int _IOC_DIRSHIFT = 30;
        internal const uint _IOC_NONE = 0;
#pragma warning restore IDE1006

        // linux/vfio.h: every VFIO ioctl is _IO(VFIO_TYPE, VFIO_BASE + n); the argument's size is
        // carried in its argsz field, not in the request number.
        internal const uint VFIO_TYPE = ';';
        internal const uint VFIO_BASE = 100;
        internal const int VFIO_API_VERSION = 0;

        // Extensions (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU argument).
        internal const int VFIO_TYPE1_IOMMU = 1;
        internal const int VFIO_TYPE1v2_IOMMU = 3;
        internal const int VFIO_NOIOMMU_IOMMU = 8;

        // Container ioctls (/dev/vfio/vfio).
        internal static readonly ulong VFIO_GET_API_VERSION = IO(VFIO_BASE + 0);
        internal static readonly ulong VFIO_CHECK_EXTENSION = IO(VFIO_BASE + 1);
        internal static readonly ulong VFIO_SET_IOMMU = IO(VFIO_BASE + 2);

        // Group ioctls (/dev/vfio/N).
        internal static readonly ulong VFIO_GROUP_GET_STATUS = IO(VFIO_BASE + 3);
        internal static readonly ulong VFIO_GROUP_SET_CONTAINER = IO(VFIO_BASE + 4);
        internal static readonly ulong VFIO_GROUP_UNSET_CONTAINER = IO(VFIO_BASE + 5);
        internal static readonly ulong VFIO_GROUP_GET_DEVICE_FD = IO(VFIO_BASE + 6);

        // Device ioctls (the fd VFIO_GROUP_GET_DEVICE_FD returns).
        internal static readonly ulong VFIO_DEVICE_GET_INFO = IO(VFIO_BASE + 7);
        internal static readonly ulong VFIO_DEVICE_GET_REGION_INFO = IO(VFIO_BASE + 8);
        internal static readonly ulong VFIO_DEVICE_GET_IRQ_INFO = IO(VFIO_BASE + 9);
        internal static readonly ulong VFIO_DEVICE_SET_IRQS = IO(VFIO_BASE + 10);
        internal static readonly ulong VFIO_DEVICE_RESET = IO(VFIO_BASE + 11);

        // Type1 IOMMU ioctls (on the container, after VFIO_SET_IOMMU).
        internal static readonly ulong VFIO_IOMMU_GET_INFO = IO(VFIO_BASE + 12);
        internal static readonly ulong VFIO_IOMMU_MAP_DMA = IO(VFIO_BASE + 13);
        internal static readonly ulong VFIO_IOMMU_UNMAP_DMA = IO(VFIO_BASE + 14);

        internal const uint VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
        internal const uint VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;

        internal const uint VFIO_DEVICE_FLAGS_RESET = 1 << 0;
        internal const uint VFIO_DEVICE_FLAGS_PCI = 1 << 1;
        internal const uint VFIO_DEVICE_FLAGS_CAPS = 1 << 7;

        internal const uint VFIO_REGION_INFO_FLAG_READ = 1 << 0;
        internal const uint VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
        internal const uint VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
        internal const uint VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;

        internal const ushort VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
        internal const ushort VFIO_REGION_INFO_CAP_TYPE = 2;
        internal const ushort VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3;

        internal const uint VFIO_IRQ_INFO_EVENTFD = 1 << 0;
        internal const uint VFIO_IRQ_INFO_MASKABLE = 1 << 1;
        internal const uint VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
        internal const uint VFIO_IRQ_INFO_NORESIZE = 1 << 3;

        internal const uint VFIO_IRQ_SET_DATA_NONE = 1 << 0;
        internal const uint VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
        internal const uint VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
        internal const uint VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
        internal const uint VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
        internal const uint VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;

        internal const uint VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
        internal const uint VFIO_IOMMU_INFO_CAPS = 1 << 1;
        internal const ushort VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
        internal const ushort VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
        internal const ushort VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

        internal const uint VFIO_DMA_MAP_FLAG_READ = 1 << 0;
        internal const uint VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
        internal const uint VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;

        // vfio-pci's fixed region and IRQ indexes (an anonymous enum in linux/vfio.h).
        internal const uint VFIO_PCI_BAR0_REGION_INDEX = 0;
        internal const uint VFIO_PCI_BAR5_REGION_INDEX = 5;
        internal const uint VFIO_PCI_ROM_REGION_INDEX = 6;
        internal const uint VFIO_PCI_CONFIG_REGION_INDEX = 7;
        internal const uint VFIO_PCI_VGA_REGION_INDEX = 8;
        internal const uint VFIO_PCI_NUM_REGIONS = 9;
        internal const uint VFIO_PCI_INTX_IRQ_INDEX = 0;
        internal const uint VFIO_PCI_MSI_IRQ_INDEX = 1;
        internal const uint VFIO_PCI_MSIX_IRQ_INDEX = 2;
        internal const uint VFIO_PCI_ERR_IRQ_INDEX = 3;
        internal const uint VFIO_PCI_REQ_IRQ_INDEX = 4;
        internal const uint VFIO_PCI_NUM_IRQS = 5;

        // asm-generic/ioctl.h _IOC and _IO, written once: every request number above comes from here.
        private static ulong _IOC(uint dir, uint type, uint nr, uint size) =>
            ((ulong)dir << _IOC_DIRSHIFT) | ((ulong)size << _IOC_SIZESHIFT) | ((ulong)type << _IOC_TYPESHIFT) | ((ulong)nr << _IOC_NRSHIFT);

        private static ulong IO(uint nr) => _IOC(_IOC_NONE, VFIO_TYPE, nr, 0);
    }
}
