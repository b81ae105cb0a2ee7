using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Interop.Vfio;

/// <summary>VFIO failure paths that can be provoked without an IOMMU: each names the call or ioctl, the errno and the fix.</summary>
public class VfioErrorTests
{
    [Test]
    public void OpeningAMissingGroupNamesThePathAndTheFix()
    {
        var path = Path.Combine(Path.GetTempPath(), "no-such-vfio-" + Guid.NewGuid().ToString("N"), "vfio", "42");
        var before = FdCount.Now();
        var ex = Assert.Throws<VfioOpenException>(() => VfioGroup.Open(path))!;
        Assert.That(ex.Errno, Is.EqualTo(Errno.ENOENT));
        Assert.That(ex.Path, Is.EqualTo(path));
        Assert.That(ex.Message, Does.StartWith($"open({path}): ENOENT").And.Contain("vfio-pci"));
        Assert.That(FdCount.SettledAtMost(before), Is.LessThanOrEqualTo(before));
    }

    [Test]
    public void OpeningAMissingContainerSaysToLoadVfio()
    {
        var path = Path.Combine(Path.GetTempPath(), "no-such-dev-" + Guid.NewGuid().ToString("N"), "vfio", "vfio");
        var ex = Assert.Throws<VfioOpenException>(() => VfioContainer.Open(path))!;
        Assert.That(ex.Message, Does.Contain("ENOENT").And.Contain("modprobe vfio-pci").And.Contain("iommu=on"));
    }

    [Test]
    public void PermissionDeniedIsTypedAndNamesTheNode()
    {
        var ex = VfioErrors.FromOpen("/dev/vfio/12", Errno.EACCES);
        Assert.That(ex, Is.TypeOf<VfioPermissionException>());
        Assert.That(ex.Message, Does.StartWith("open(/dev/vfio/12): EACCES").And.Contain("fpgaaccel setup").And.Contain("chown"));
    }

    [Test]
    public void ContainerIoctlOnANonVfioDescriptorIsEnottyNamedWithTheIoctl()
    {
        using var container = new VfioContainer(OpenDevNull(), "/dev/null");
        var ex = Assert.Throws<VfioIoctlException>(() => container.GetApiVersion())!;
        Assert.That(ex.Call, Is.EqualTo("VFIO_GET_API_VERSION"));
        Assert.That(ex.Errno, Is.EqualTo(Errno.ENOTTY));
        Assert.That(ex.Message, Does.StartWith("VFIO_GET_API_VERSION: ENOTTY").And.Contain("not the kind of VFIO object"));
    }

    [Test]
    public void ContainerOpenOnANonVfioNodeFailsAndClosesIt()
    {
        var before = FdCount.Now();
        var ex = Assert.Throws<VfioIoctlException>(() => VfioContainer.Open("/dev/null"))!;
        Assert.That(ex.Call, Is.EqualTo("VFIO_GET_API_VERSION"));
        Assert.That(FdCount.SettledAtMost(before), Is.LessThanOrEqualTo(before), "the descriptor is closed on failure");
    }

    [Test]
    public void GroupAndDeviceIoctlsNameThemselves()
    {
        using var group = new VfioGroup(OpenDevNull(), "/dev/null");
        Assert.That(Assert.Throws<VfioIoctlException>(() => group.GetStatus())!.Message, Does.StartWith("VFIO_GROUP_GET_STATUS: ENOTTY"));
        using var container = new VfioContainer(OpenDevNull(), "/dev/null");
        Assert.That(Assert.Throws<VfioIoctlException>(() => group.SetContainer(container))!.Message, Does.StartWith("VFIO_GROUP_SET_CONTAINER: ENOTTY"));
        Assert.That(Assert.Throws<VfioIoctlException>(() => container.MapDma(0x10000, 0x1000, 0x1000, DmaAccess.ReadWrite))!.Call, Is.EqualTo("VFIO_IOMMU_MAP_DMA"));
        Assert.That(Assert.Throws<VfioIoctlException>(() => container.GetIommuInfo())!.Call, Is.EqualTo("VFIO_IOMMU_GET_INFO"));
        using var device = new VfioDevice(OpenDevNull(), "0000:00:00.0");
        Assert.That(Assert.Throws<VfioIoctlException>(() => device.GetInfo())!.Call, Is.EqualTo("VFIO_DEVICE_GET_INFO"));
        Assert.That(Assert.Throws<VfioIoctlException>(() => device.GetRegionInfo(0))!.Call, Is.EqualTo("VFIO_DEVICE_GET_REGION_INFO"));
        Assert.That(Assert.Throws<VfioIoctlException>(() => device.GetIrqInfo(2))!.Call, Is.EqualTo("VFIO_DEVICE_GET_IRQ_INFO"));
        using var eventFd = EventFd.Create();
        Assert.That(Assert.Throws<VfioIoctlException>(() => device.SetIrqEventFds(2, 0, [eventFd.Handle, null]))!.Call, Is.EqualTo("VFIO_DEVICE_SET_IRQS"));
        Assert.That(Assert.Throws<VfioIoctlException>(() => device.DisableIrqs(2))!.Call, Is.EqualTo("VFIO_DEVICE_SET_IRQS"));
    }

    [TestCase("VFIO_GROUP_SET_CONTAINER", Errno.EBUSY, "already belongs to a container")]
    [TestCase("VFIO_GROUP_GET_DEVICE_FD", Errno.EBUSY, "already open")]
    [TestCase("VFIO_GROUP_GET_DEVICE_FD", Errno.EINVAL, "not a member of this group")]
    [TestCase("VFIO_IOMMU_MAP_DMA", Errno.EEXIST, "already mapped")]
    [TestCase("VFIO_IOMMU_MAP_DMA", Errno.EINVAL, "valid IOVA ranges")]
    [TestCase("VFIO_IOMMU_MAP_DMA", Errno.ENOSPC, "dma_entry_limit")]
    [TestCase("VFIO_DEVICE_SET_IRQS", Errno.EINVAL, "VFIO_DEVICE_GET_IRQ_INFO")]
    public void IoctlErrorsNameTheIoctlTheErrnoAndTheFix(string ioctl, Errno errno, string fix)
    {
        var ex = VfioErrors.FromIoctl(ioctl, errno);
        Assert.That(ex.Call, Is.EqualTo(ioctl));
        Assert.That(ex.Message, Does.StartWith($"{ioctl}: {errno} (").And.Contain(fix));
    }

    [Test]
    public void MapDmaEnomemBecomesMemlockErrorNamingTheLimit()
    {
        var ex = new VfioMemlockException(0x100000, 0x200000, 65536);
        Assert.That(ex.Call, Is.EqualTo("VFIO_IOMMU_MAP_DMA"));
        Assert.That(ex.Errno, Is.EqualTo(Errno.ENOMEM));
        Assert.That(ex.Message, Does.Contain("RLIMIT_MEMLOCK").And.Contain("65536 bytes").And.Contain("ulimit -l"));
    }

    [Test]
    public void MappedRegionAccessesAreSingleAlignedAndBoundsChecked()
    {
        var region = VfioMappedRegion.Over(MemoryMapping.Anonymous(4096));
        region.Write64(8, 0x1122_3344_5566_7788);
        Assert.That(region.Read64(8), Is.EqualTo(0x1122_3344_5566_7788UL));
        Assert.That(region.Read32(8), Is.EqualTo(0x5566_7788U), "little-endian low half");
        region.Write32(4092, 0xCAFE_F00D);
        Assert.That(region.Read32(4092), Is.EqualTo(0xCAFE_F00DU));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.Read64(4092));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.Read64(4096));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.Read64(ulong.MaxValue - 3));
        var misaligned = Assert.Throws<ArgumentOutOfRangeException>(() => region.Write64(4, 1))!;
        Assert.That(misaligned.Message, Does.Contain("0x4").And.Contain("aligned"));
        region.Dispose();
        Assert.Throws<ObjectDisposedException>(() => region.Read64(0));
    }

    [Test]
    public void RegionRulesRefuseUnmappableRanges()
    {
        var plain = new VfioRegionInfo(0, VfioRegionFlags.Read | VfioRegionFlags.Write, 0x10000, 0, null, false);
        Assert.That(plain.CanMmapRange(0, 0x1000), Is.False, "no MMAP flag");
        var sparse = new VfioRegionInfo(0, VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap, 0x10000, 0,
            [new VfioSparseArea(0, 0xE000)], false);
        Assert.That(sparse.CanMmapRange(0, 0xE000), Is.True);
        Assert.That(sparse.CanMmapRange(0, 0x10000), Is.False, "the MSI-X page is outside the sparse area");
        Assert.That(sparse with { MsixMappable = true }, Has.Property(nameof(VfioRegionInfo.CanMmap)).True);
        Assert.That((sparse with { MsixMappable = true }).CanMmapRange(0, 0x10000), Is.True);
        Assert.That(sparse.CanMmapRange(0xF000, 0x2000), Is.False, "past the end");
        using var device = new VfioDevice(OpenDevNull(), "0000:00:00.0");
        var ex = Assert.Throws<VfioException>(() => device.MapRegion(sparse))!;
        Assert.That(ex.Message, Does.Contain("sparse mmap areas (0x0+0xE000)"));
        Assert.That(Assert.Throws<VfioException>(() => device.MapRegion(plain))!.Message, Does.Contain("VFIO_REGION_INFO_FLAG_MMAP"));
    }

    [Test]
    public unsafe void CapabilityChainsAreDecodedWithBoundsChecks()
    {
        // A VFIO_IOMMU_GET_INFO answer as the kernel lays it out: info (24 bytes), IOVA-range cap at 24 with
        // two ranges, DMA-avail cap after it.
        var buffer = new byte[24 + 16 + 32 + 12];
        var span = buffer.AsSpan();
        BitConverter.TryWriteBytes(span[0..], (uint)buffer.Length);
        BitConverter.TryWriteBytes(span[4..], 3u);
        BitConverter.TryWriteBytes(span[8..], 0x1000UL | 0x200000UL);
        BitConverter.TryWriteBytes(span[16..], 24u);
        BitConverter.TryWriteBytes(span[24..], (ushort)1);
        BitConverter.TryWriteBytes(span[26..], (ushort)1);
        BitConverter.TryWriteBytes(span[28..], 72u);
        BitConverter.TryWriteBytes(span[32..], 2u);
        BitConverter.TryWriteBytes(span[40..], 0UL);
        BitConverter.TryWriteBytes(span[48..], 0xFEDF_FFFFUL);
        BitConverter.TryWriteBytes(span[56..], 0xFEF0_0000UL);
        BitConverter.TryWriteBytes(span[64..], 0xFFFF_FFFF_FFFFUL);
        BitConverter.TryWriteBytes(span[72..], (ushort)3);
        BitConverter.TryWriteBytes(span[74..], (ushort)1);
        BitConverter.TryWriteBytes(span[76..], 0u);
        BitConverter.TryWriteBytes(span[80..], 65535u);
        var info = System.Runtime.InteropServices.MemoryMarshal.Read<global::FpgaAccel.Interop.Interop.Vfio.vfio_iommu_type1_info>(buffer);
        var decoded = VfioContainer.Decode(buffer, info);
        Assert.That(decoded.PageSizes, Is.EqualTo(0x201000UL));
        Assert.That(decoded.IovaRanges, Is.EqualTo(new[] { new VfioIovaRange(0, 0xFEDF_FFFF), new VfioIovaRange(0xFEF0_0000, 0xFFFF_FFFF_FFFF) }));
        Assert.That(decoded.DmaMappingsAvailable, Is.EqualTo(65535u));

        BitConverter.TryWriteBytes(span[76..], 24u); // a loop back to the first capability
        var loop = Assert.Throws<VfioException>(() => VfioContainer.Decode(buffer, info))!;
        Assert.That(loop.Message, Does.Contain("malformed"));
        BitConverter.TryWriteBytes(span[76..], 4000u); // past the buffer
        Assert.Throws<VfioException>(() => VfioContainer.Decode(buffer, info));

        // The IOVA-range cap claims 2 ranges, but the answer ends after the first: only what the bytes hold is read.
        BitConverter.TryWriteBytes(span[28..], 0u);
        Assert.That(VfioContainer.Decode(buffer.AsSpan(0, 56), info).IovaRanges, Is.EqualTo(new[] { new VfioIovaRange(0, 0xFEDF_FFFF) }));

        // The answer ends inside the cap's own struct (its header fits, its count does not): the cap is skipped, not read past the end.
        Assert.That(VfioContainer.Decode(buffer.AsSpan(0, 36), info).IovaRanges, Is.Null);
    }

    [Test]
    public void RegionCapabilitiesAreDecoded()
    {
        // vfio_region_info (32 bytes) with FLAG_CAPS, then a sparse-mmap cap (16 + 2 areas) and an MSI-X-mappable cap (8).
        var buffer = new byte[32 + 16 + 32 + 8];
        var span = buffer.AsSpan();
        BitConverter.TryWriteBytes(span[0..], (uint)buffer.Length);
        BitConverter.TryWriteBytes(span[4..], 0xFu);
        BitConverter.TryWriteBytes(span[8..], 0u);
        BitConverter.TryWriteBytes(span[12..], 32u);
        BitConverter.TryWriteBytes(span[16..], 0x10000UL);
        BitConverter.TryWriteBytes(span[24..], 0UL);
        BitConverter.TryWriteBytes(span[32..], (ushort)1);
        BitConverter.TryWriteBytes(span[34..], (ushort)1);
        BitConverter.TryWriteBytes(span[36..], 80u);
        BitConverter.TryWriteBytes(span[40..], 2u);
        BitConverter.TryWriteBytes(span[48..], 0UL);
        BitConverter.TryWriteBytes(span[56..], 0xE000UL);
        BitConverter.TryWriteBytes(span[64..], 0xF000UL);
        BitConverter.TryWriteBytes(span[72..], 0x1000UL);
        BitConverter.TryWriteBytes(span[80..], (ushort)3);
        BitConverter.TryWriteBytes(span[82..], (ushort)1);
        BitConverter.TryWriteBytes(span[84..], 0u);
        var info = System.Runtime.InteropServices.MemoryMarshal.Read<global::FpgaAccel.Interop.Interop.Vfio.vfio_region_info>(buffer);
        var region = VfioDevice.DecodeRegion(buffer, info);
        Assert.That(region.Size, Is.EqualTo(0x10000UL));
        Assert.That(region.Flags, Is.EqualTo(VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap | VfioRegionFlags.Caps));
        Assert.That(region.SparseAreas, Is.EqualTo(new[] { new VfioSparseArea(0, 0xE000), new VfioSparseArea(0xF000, 0x1000) }));
        Assert.That(region.MsixMappable, Is.True);
    }

    [Test]
    public void MemlockLimitCanBeReadAndSetBack()
    {
        var limit = ResourceLimits.GetMemoryLock();
        Assert.That(limit.Hard, Is.GreaterThanOrEqualTo(limit.Soft));
        ResourceLimits.SetMemoryLock(limit);
        Assert.That(ResourceLimits.GetMemoryLock(), Is.EqualTo(limit));
    }

    private static SafeFileDescriptor OpenDevNull() =>
        global::FpgaAccel.Interop.Interop.Libc.open("/dev/null", global::FpgaAccel.Interop.Interop.Libc.O_RDWR | global::FpgaAccel.Interop.Interop.Libc.O_CLOEXEC);
}
