using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Board;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Board;

/// <summary>The board backend's checks that need no board: BAR0 shape and the DMA request rules.</summary>
public class BoardBackendRulesTests
{
    private static readonly IovaRange[] s_ranges = [new(0, 0xFEDF_FFFF), new(0xFEF0_0000, 0xFFFF_FFFF_FFFF)];

    [Test]
    public void Bar0SmallerThan64KiBIsRefused()
    {
        var bar = new VfioRegionInfo(0, VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap, 0x4000, 0, null, false);
        var ex = Assert.Throws<BoardOpenException>(() => BoardBackend.CheckBar0("0000:03:00.0", bar))!;
        Assert.That(ex.Message, Does.Contain("0000:03:00.0").And.Contain("mapping BAR0").And.Contain("BAR0 is 16384 bytes").And.Contain("65536"));
    }

    [Test]
    public void Bar0ThatCannotBeMmappedIsRefusedNamingTheAreas()
    {
        var bar = new VfioRegionInfo(0, VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap | VfioRegionFlags.Caps, 0x10000, 0,
            [new VfioSparseArea(0, 0x8000)], false);
        var ex = Assert.Throws<BoardOpenException>(() => BoardBackend.CheckBar0("0000:03:00.0", bar))!;
        Assert.That(ex.Message, Does.Contain("cannot be mmapped").And.Contain("sparse areas 0x0+0x8000").And.Contain("MSI-X"));
        Assert.Throws<BoardOpenException>(() => BoardBackend.CheckBar0("0000:03:00.0", bar with { Flags = VfioRegionFlags.Read }));
        Assert.DoesNotThrow(() => BoardBackend.CheckBar0("0000:03:00.0", bar with { MsixMappable = true }));
        Assert.DoesNotThrow(() => BoardBackend.CheckBar0("0000:03:00.0", bar with { SparseAreas = null, Size = 0x100000 }));
    }

    [Test]
    public void DmaOutsideTheValidRangesIsRefusedNamingThem()
    {
        var ex = Assert.Throws<DmaMappingException>(() => BoardBackend.CheckDmaRequest(0xFEE0_0000, 0x7000_0000, 0x1000, DmaAccess.ReadWrite, s_ranges))!;
        Assert.That(ex.ErrnoName, Is.EqualTo("EINVAL"));
        Assert.That(ex.Message, Does.Contain("IOVA 0xFEE00000..0xFEE00FFF is outside").And.Contain("0x0..0xFEDFFFFF, 0xFEF00000..0xFFFFFFFFFFFF"));
        Assert.Throws<DmaMappingException>(() => BoardBackend.CheckDmaRequest(0xFEDF_F000, 0x7000_0000, 0x2000, DmaAccess.ReadWrite, s_ranges), "straddles the hole");
        Assert.Throws<DmaMappingException>(() => BoardBackend.CheckDmaRequest(0xFFFF_FFFF_F000, 0x7000_0000, 0x2000, DmaAccess.ReadWrite, s_ranges), "past the end");
        Assert.DoesNotThrow(() => BoardBackend.CheckDmaRequest(0x10_0000, 0x7000_0000, 0x20_0000, DmaAccess.DeviceRead, s_ranges));
    }

    [TestCase(0x1001UL, 0x7000_0000L, 0x1000UL)]
    [TestCase(0x1000UL, 0x7000_0800L, 0x1000UL)]
    [TestCase(0x1000UL, 0x7000_0000L, 0x1800UL)]
    [TestCase(0x1000UL, 0x7000_0000L, 0UL)]
    public void MisalignedOrEmptyDmaIsRefused(ulong iova, long host, ulong length)
    {
        var ex = Assert.Throws<DmaMappingException>(() => BoardBackend.CheckDmaRequest(iova, (nint)host, length, DmaAccess.ReadWrite, s_ranges))!;
        Assert.That(ex.Message, Does.Contain("multiples of 4096"));
    }

    [Test]
    public void DmaWithNoAccessIsRefused() =>
        Assert.That(Assert.Throws<DmaMappingException>(() => BoardBackend.CheckDmaRequest(0x1000, 0x7000_0000, 0x1000, DmaAccess.None, s_ranges))!.Message,
            Does.Contain("read, write or both"));
}
