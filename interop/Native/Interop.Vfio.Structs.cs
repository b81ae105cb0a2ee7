using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Vfio
    {
        // linux/vfio.h structs, field for field in C order with the C names; trailing flexible arrays
        // (data[], areas[], iova_ranges[]) are not declared: their contents follow the struct in the
        // caller's buffer. Sizes and offsets are checked against the header by VfioLayoutTests.
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_info_cap_header
        {
            public ushort id;
            public ushort version;
            public uint next;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_group_status
        {
            public uint argsz;
            public uint flags;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_device_info
        {
            public uint argsz;
            public uint flags;
            public uint num_regions;
            public uint num_irqs;
            public uint cap_offset;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_region_info
        {
            public uint argsz;
            public uint flags;
            public uint index;
            public uint cap_offset;
            public ulong size;
            public ulong offset;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_region_sparse_mmap_area
        {
            public ulong offset;
            public ulong size;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_region_info_cap_sparse_mmap
        {
            public vfio_info_cap_header header;
            public uint nr_areas;
            public uint reserved;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_irq_info
        {
            public uint argsz;
            public uint flags;
            public uint index;
            public uint count;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_irq_set
        {
            public uint argsz;
            public uint flags;
            public uint index;
            public uint start;
            public uint count;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iommu_type1_info
        {
            public uint argsz;
            public uint flags;
            public ulong iova_pgsizes;
            public uint cap_offset;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iova_range
        {
            public ulong start;
            public ulong end;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iommu_type1_info_cap_iova_range
        {
            public vfio_info_cap_header header;
            public uint nr_iovas;
            public uint reserved;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iommu_type1_info_dma_avail
        {
            public vfio_info_cap_header header;
            public uint avail;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iommu_type1_dma_map
        {
            public uint argsz;
            public uint flags;
            public ulong vaddr;
            public ulong iova;
            public ulong size;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iommu_type1_dma_unmap
        {
            public uint argsz;
            public uint flags;
            public ulong iova;
            public ulong size;
        }
    }
}
