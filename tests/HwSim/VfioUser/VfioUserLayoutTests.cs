using FpgaAccel.HwSim.VfioUser;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim.VfioUser;

/// <summary>
/// The vfio-user payloads that reuse linux/vfio.h structs (region info, IRQ info, irq_set, dma_unmap, device info
/// without its cap_offset) have those structs' offsets and sizes: gcc compiles the comparison.
/// </summary>
public class VfioUserLayoutTests
{
    [Test]
    public void ReusedStructsMatchLinuxVfioH()
    {
        var gcc = CHeaderCheck.FindGcc();
        if (gcc is null || !File.Exists("/usr/include/linux/vfio.h"))
        {
            Assert.Ignore("gcc or linux/vfio.h missing: install gcc and linux-libc-dev (make deps).");
        }

        var check = new CHeaderCheck().Include("linux/vfio.h");
        void Offset(string type, string field, int value) => check.AddConstant($"offsetof(struct {type}, {field})", value);
        Offset("vfio_device_info", "argsz", VfioUserLayout.DeviceInfoArgsz);
        Offset("vfio_device_info", "flags", VfioUserLayout.DeviceInfoFlags);
        Offset("vfio_device_info", "num_regions", VfioUserLayout.DeviceInfoRegions);
        Offset("vfio_device_info", "num_irqs", VfioUserLayout.DeviceInfoIrqs);
        Offset("vfio_device_info", "cap_offset", VfioUserLayout.DeviceInfoLength);
        Offset("vfio_region_info", "flags", VfioUserLayout.RegionInfoFlags);
        Offset("vfio_region_info", "index", VfioUserLayout.RegionInfoIndex);
        Offset("vfio_region_info", "cap_offset", VfioUserLayout.RegionInfoCapOffset);
        Offset("vfio_region_info", "size", VfioUserLayout.RegionInfoSize);
        Offset("vfio_region_info", "offset", VfioUserLayout.RegionInfoOffset);
        check.AddConstant("sizeof(struct vfio_region_info)", VfioUserLayout.RegionInfoLength);
        Offset("vfio_irq_info", "flags", VfioUserLayout.IrqInfoFlags);
        Offset("vfio_irq_info", "index", VfioUserLayout.IrqInfoIndex);
        Offset("vfio_irq_info", "count", VfioUserLayout.IrqInfoCount);
        check.AddConstant("sizeof(struct vfio_irq_info)", VfioUserLayout.IrqInfoLength);
        Offset("vfio_irq_set", "flags", VfioUserLayout.IrqSetFlags);
        Offset("vfio_irq_set", "index", VfioUserLayout.IrqSetIndex);
        Offset("vfio_irq_set", "start", VfioUserLayout.IrqSetStart);
        Offset("vfio_irq_set", "count", VfioUserLayout.IrqSetCount);
        Offset("vfio_irq_set", "data", VfioUserLayout.IrqSetData);
        Offset("vfio_iommu_type1_dma_unmap", "flags", VfioUserLayout.DmaUnmapFlags);
        Offset("vfio_iommu_type1_dma_unmap", "iova", VfioUserLayout.DmaUnmapAddress);
        Offset("vfio_iommu_type1_dma_unmap", "size", VfioUserLayout.DmaUnmapSize);
        check.AddConstant("sizeof(struct vfio_iommu_type1_dma_unmap)", VfioUserLayout.DmaUnmapLength);

        // DMA_MAP is type1's dma_map with vaddr replaced by the fd offset: same size, same places.
        Offset("vfio_iommu_type1_dma_map", "vaddr", VfioUserLayout.DmaMapOffset);
        Offset("vfio_iommu_type1_dma_map", "iova", VfioUserLayout.DmaMapAddress);
        Offset("vfio_iommu_type1_dma_map", "size", VfioUserLayout.DmaMapSize);
        check.AddConstant("sizeof(struct vfio_iommu_type1_dma_map)", VfioUserLayout.DmaMapLength);
        var problems = check.Compile(gcc!);
        Assert.That(problems, Is.Empty, string.Join("\n", problems));
    }
}
