using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>The model's platform IOMMU (spec 6), through the driver's DMA seam.</summary>
public class IommuTests
{
    [Test]
    public unsafe void MapsTranslatesAndUnmaps()
    {
        using var memory = MemoryMapping.Anonymous(2 * 4096);
        using var backend = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        backend.MapDma(0x10_0000, memory.Address, 2 * 4096, DmaAccess.ReadWrite);
        var iommu = backend.Model.Iommu;
        Assert.That(iommu.MappedPages, Is.EqualTo(2));
        Assert.That(iommu.TryTranslate(0x10_1008, DmaAccess.DeviceWrite, out var page), Is.True);
        Assert.That(page.Host, Is.EqualTo(memory.Address + 4096 + 8));
        Assert.That(backend.UnmapDma(0x10_0000, 2 * 4096), Is.EqualTo(2UL * 4096));
        Assert.That(iommu.TryTranslate(0x10_1008, DmaAccess.DeviceRead, out _), Is.False, "unmapped: refused");
        Assert.That(iommu.RefusedAccesses, Is.EqualTo(1));
        Assert.That(iommu.PinnedBytes, Is.Zero);
    }

    [Test]
    public void ReadOnlyMappingRefusesDeviceWrites()
    {
        using var memory = MemoryMapping.Anonymous(4096);
        var iommu = new ModelIommu(48, ulong.MaxValue);
        iommu.Map(0x20_0000, memory.Address, 4096, DmaAccess.DeviceRead);
        Assert.That(iommu.TryTranslate(0x20_0000, DmaAccess.DeviceRead, out _), Is.True);
        Assert.That(iommu.TryTranslate(0x20_0000, DmaAccess.DeviceWrite, out _), Is.False);
    }

    [Test]
    public void RefusesOverlapMisalignmentReservedRangesAndMemlock()
    {
        using var memory = MemoryMapping.Anonymous(4 * 4096);
        using var backend = new ModelBackend(new ModelOptions { MemlockLimitBytes = 3 * 4096 });
        backend.MapDma(0x40_0000, memory.Address, 4096, DmaAccess.DeviceRead);
        Assert.That(Assert.Throws<DmaMappingException>(() => backend.MapDma(0x40_0000, memory.Address, 4096, DmaAccess.DeviceRead))!.ErrnoName, Is.EqualTo("EEXIST"));
        Assert.That(Assert.Throws<DmaMappingException>(() => backend.MapDma(0x40_0800, memory.Address, 4096, DmaAccess.DeviceRead))!.ErrnoName, Is.EqualTo("EINVAL"));
        Assert.That(Assert.Throws<DmaMappingException>(() => backend.MapDma(0xFEE0_0000, memory.Address, 4096, DmaAccess.DeviceRead))!.ErrnoName, Is.EqualTo("EINVAL"), "the MSI window is reserved");
        Assert.That(Assert.Throws<DmaMappingException>(() => backend.MapDma(1UL << 48, memory.Address, 4096, DmaAccess.DeviceRead))!.ErrnoName, Is.EqualTo("EINVAL"), "beyond IOVA bits");
        var ex = Assert.Throws<DmaMappingException>(() => backend.MapDma(0x50_0000, memory.Address, 3 * 4096, DmaAccess.DeviceRead))!;
        Assert.That(ex.ErrnoName, Is.EqualTo("ENOMEM"));
        Assert.That(ex.Message, Does.Contain("RLIMIT_MEMLOCK"));
        Assert.That(backend.Model.Iommu.MappedPages, Is.EqualTo(1), "a refused map leaves nothing behind");
    }

    [Test]
    public void ValidRangesExcludePageZeroAndMsiWindow()
    {
        using var backend = new ModelBackend();
        var ranges = backend.IovaRanges;
        Assert.That(ranges.Any(r => r.Contains(0, 4096)), Is.False);
        Assert.That(ranges.Any(r => r.Contains(0xFEE0_0000, 4096)), Is.False);
        Assert.That(ranges.Any(r => r.Contains(0x1_0000_0000, 4096)), Is.True);
    }
}
