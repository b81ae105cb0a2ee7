using System.Globalization;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Interop.Vfio;

/// <summary>
/// The device-agnostic VFIO layer on a real function (FPGAACCEL_VFIO_DEVICE, else FPGAACCEL_DEVICE): any PCI
/// device bound to vfio-pci will do, e.g. QEMU's edu in a guest.
/// </summary>
[Category("Hardware")]
public class VfioHardwareTests
{
    [Test]
    public void OpensTheFunctionAndReadsItsConfigSpaceAndRegions()
    {
        var address = HardwareBoard.RequireAddress(HardwareBoard.VfioDeviceVariable);
        using var pci = VfioPciDevice.Open(address);
        Assert.That(pci.Info.IsPci, Is.True);
        Assert.That(pci.Group.GetStatus(), Is.EqualTo(new VfioGroupStatus(Viable: true, ContainerSet: true)));
        var sysfsVendor = ushort.Parse(File.ReadAllText($"/sys/bus/pci/devices/{address}/vendor").Trim()[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        Assert.That(pci.Device.ReadConfig16(0x00), Is.EqualTo(sysfsVendor), "config space through the VFIO config region");
        var command = pci.Device.EnableBusMastering();
        Assert.That(command & VfioDevice.PciCommandBusMaster, Is.Not.Zero);
        Assert.That(pci.Device.ReadConfig16(VfioDevice.PciCommandOffset) & VfioDevice.PciCommandBusMaster, Is.Not.Zero);

        var bar0 = pci.Device.GetRegionInfo(VfioPciRegion.Bar0);
        Assert.That(bar0.Size, Is.GreaterThan(0UL));
        Assert.That(bar0.Offset % 4096, Is.Zero);
        if (bar0.CanMmapRange(0, 4096))
        {
            using var window = pci.Device.MapRegion(bar0, 0, 4096);
            _ = window.Read32(0);
        }

        var iommu = pci.Container.GetIommuInfo();
        Assert.That(iommu.PageSizes & 4096, Is.Not.Zero, "4 KiB IOMMU pages");
        Assert.That(pci.Device.GetIrqInfo(VfioPciIrq.Msix).Index, Is.EqualTo(VfioPciIrq.Msix));
    }

    [Test]
    public void MapsAndUnmapsDmaAndSecondOpenOfTheGroupIsBusy()
    {
        var address = HardwareBoard.RequireAddress(HardwareBoard.VfioDeviceVariable);
        using var pci = VfioPciDevice.Open(address);
        using var buffer = MemoryMapping.Anonymous(4 * 4096, populate: true);
        var range = pci.Container.GetIommuInfo().IovaRanges?.FirstOrDefault(r => r.End - r.Start > (1UL << 24)) ?? new VfioIovaRange(0, ulong.MaxValue);
        var iova = (range.Start + (1UL << 20)) & ~4095UL;
        pci.Container.MapDma(iova, buffer.Address, buffer.Length, DmaAccess.ReadWrite);
        var twice = Assert.Throws<VfioIoctlException>(() => pci.Container.MapDma(iova, buffer.Address, buffer.Length, DmaAccess.ReadWrite))!;
        Assert.That(twice.Message, Does.StartWith("VFIO_IOMMU_MAP_DMA: EEXIST"));
        Assert.That(pci.Container.UnmapDma(iova, buffer.Length), Is.EqualTo(buffer.Length));
        var busy = Assert.Throws<VfioOpenException>(() => VfioGroup.Open(pci.GroupNumber))!;
        Assert.That(busy.Errno, Is.EqualTo(Errno.EBUSY));
    }
}
