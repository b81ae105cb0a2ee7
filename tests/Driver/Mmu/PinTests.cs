using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Mmu;

/// <summary>Pins, page-table contents and pin accounting, checked in the table the device walks.</summary>
public class PinTests
{
    private FpgaDevice _device = null!;
    private ModelBackend _backend = null!;

    [SetUp]
    public void SetUp()
    {
        _backend = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        _device = FpgaDevice.Open(_backend, new FpgaDeviceOptions { MemlockLimitBytes = 64UL << 20 });
    }

    [TearDown]
    public void TearDown() => _device.Dispose();

    [Test]
    public void PinMapsEveryPageWithDvaEqualToVirtualAddress()
    {
        using var buffer = HostBuffer.Allocate(3 * 4096);
        using var context = _device.CreateContext();
        using var pin = context.Pin(buffer, DmaAccess.DeviceRead);
        Assert.That(pin.Dva, Is.EqualTo((ulong)buffer.Address));
        for (var page = 0UL; page < 3; page++)
        {
            var dva = (ulong)buffer.Address + (page * 4096);
            var pte = context.Translation(dva, out var level);
            Assert.That(pte.Valid && pte.Readable, Is.True, $"page {page}");
            Assert.That(pte.Writable, Is.False, "a device-read pin is read-only");
            Assert.That(level, Is.EqualTo(3));
            Assert.That(pte.Address, Is.EqualTo(dva + _device.Mmu.Layout.Delta), "the leaf points at the page's IOVA");
            Assert.That(_backend.Model.Iommu.TryTranslate(pte.Address, DmaAccess.DeviceRead, out var iommu), Is.True);
            Assert.That(iommu.Host, Is.EqualTo((nint)dva), "the IOMMU maps that IOVA to the page itself");
        }

        Assert.That(context.Translation((ulong)buffer.Address + (3 * 4096), out _).Valid, Is.False, "nothing past the pin");
    }

    [Test]
    public void IovaAndDvaDiffer() =>
        Assert.That(_device.Mmu.Layout.Delta, Is.EqualTo(1UL << 47), "the model's IOMMU covers [2^47, 2^48), so IOVA = VA + 2^47");

    [Test]
    public void WritePinGrantsReadAndWrite()
    {
        using var buffer = HostBuffer.Allocate(4096);
        using var context = _device.CreateContext();
        using var pin = context.Pin(buffer, DmaAccess.DeviceWrite);
        var pte = context.Translation((ulong)buffer.Address, out _);
        Assert.That(pte.Readable && pte.Writable && !pte.Malformed, Is.True, "W without R is malformed (spec 4.1), so a write pin sets both");
    }

    [Test]
    public void TwoMegabyteAlignedRangesUseHugeLeaves()
    {
        using var buffer = HostBuffer.Allocate(4UL << 20);
        using var context = _device.CreateContext();
        var before = _device.IommuMappedPages;
        using var pin = context.Pin(buffer, DmaAccess.ReadWrite);
        var pte = context.Translation((ulong)buffer.Address + 12345, out var level);
        Assert.That(level, Is.EqualTo(2), "a 2 MiB leaf at level 2");
        Assert.That(pte.IsLeafBit && pte.Writable, Is.True);
        Assert.That(pte.Address, Is.EqualTo((ulong)buffer.Address + _device.Mmu.Layout.Delta));
        Assert.That(context.PageTableTables, Is.EqualTo(5),
            "root, level 1, level 2, and below each 2 MiB leaf its level-3 table, kept up to date so a split or a stale walk-cache pointer never needs a new one");
        Assert.That(_device.IommuMappedPages - before, Is.EqualTo(1024 + 4), "4 MiB = 1024 IOMMU pages, plus the level-1, level-2 and two level-3 tables");
    }

    [Test]
    public void UnalignedRangeUsesFourKilobyteLeavesAtTheEdges()
    {
        using var buffer = HostBuffer.Allocate(6UL << 20);
        using var context = _device.CreateContext();
        var start = buffer.Address + 4096;
        using var pin = context.Pin(start, (4UL << 20) - 4096, DmaAccess.DeviceRead);
        context.Translation((ulong)start, out var first);
        context.Translation((ulong)buffer.Address + (2UL << 20) + 100, out var middle);
        Assert.That(first, Is.EqualTo(3), "the partial first chunk needs 4 KiB leaves");
        Assert.That(middle, Is.EqualTo(2), "the full second chunk is one 2 MiB leaf");
        Assert.That(context.Translation((ulong)buffer.Address, out _).Valid, Is.False, "the page before the pin is not mapped");
    }

    [Test]
    public void OverlappingPinsUpgradeWithoutInvalidation()
    {
        using var buffer = HostBuffer.Allocate(2 * 4096);
        using var context = _device.CreateContext();
        var invalidations = _device.Mmu.Invalidator.Issued;
        using var read = context.Pin(buffer, DmaAccess.DeviceRead);
        using var write = context.Pin(buffer.Address + 4096, 4096, DmaAccess.ReadWrite);
        Assert.That(context.Translation((ulong)buffer.Address, out _).Writable, Is.False);
        Assert.That(context.Translation((ulong)buffer.Address + 4096, out _).Writable, Is.True, "the overlap has the union of access");
        Assert.That(_device.Mmu.Invalidator.Issued, Is.EqualTo(invalidations), "adding access needs no invalidation (spec 4.1)");
        Assert.That(read.Id, Is.Not.EqualTo(write.Id));
        Assert.That(_device.IommuMappedPages, Is.GreaterThanOrEqualTo(2));
    }

    // Issue 11, defect 8: the model's IOMMU is type1v2 (decision D31) and refuses an unmap that splits a mapping.
    [Test]
    public void OverlappingPinsWithADowngradeReleaseInUnitsTheKernelAccepts()
    {
        using var buffer = HostBuffer.Allocate(4 * 4096);
        using var context = _device.CreateContext();
        context.Pin(buffer, DmaAccess.DeviceRead).Dispose(); // the context's page tables now exist (they stay until it is disposed)
        var pinnedBefore = _device.PinnedBytes;
        var pagesBefore = _device.IommuMappedPages;
        var whole = context.Pin(buffer, DmaAccess.ReadWrite);
        var inner = context.Pin(buffer.Address + 4096, 4096, DmaAccess.DeviceRead);
        whole.Dispose(); // page 1 keeps its reader: the pages around it must not be unmapped out of the map call that covers them
        Assert.That(context.Translation((ulong)buffer.Address + 4096, out _).Writable, Is.False, "the downgrade to read-only");
        Assert.That(_device.Oracle!.Audit(context.Index), Is.Empty, "a cached translation outlived the downgrade");
        Assert.That(context.Translation((ulong)buffer.Address, out _).Valid, Is.False);
        inner.Dispose();
        Assert.That(_device.PinnedBytes, Is.EqualTo(pinnedBefore), "the charge drifted");
        Assert.That(_device.IommuMappedPages, Is.EqualTo(pagesBefore), "a mapping was left behind");
        using var again = context.Pin(buffer, DmaAccess.ReadWrite); // a leftover mapping would make this EEXIST
        Assert.That(_device.PinnedBytes - pinnedBefore, Is.EqualTo(4UL * 4096));
    }

    [Test]
    public void PinChargesPagesOnceAcrossOverlapsAndContexts()
    {
        using var buffer = HostBuffer.Allocate(4 * 4096);
        using var a = _device.CreateContext();
        using var b = _device.CreateContext();
        // Levels 1, 2 and 3 below a context's root: page tables are pinned DMA memory too. One of each, unless
        // mmap placed the buffer across a 2 MiB (or 1 GiB, 512 GiB) boundary, which takes one more table of that level.
        var first = (ulong)buffer.Address;
        var last = first + buffer.Length - 1;
        var tables = 4096UL * (ulong)((int)((last >> 39) - (first >> 39)) + 1 + (int)((last >> 30) - (first >> 30)) + 1 + (int)((last >> 21) - (first >> 21)) + 1);
        var before = _device.PinnedBytes;
        using var p1 = a.Pin(buffer, DmaAccess.DeviceRead);
        Assert.That(_device.PinnedBytes - before, Is.EqualTo((4UL * 4096) + tables));
        before = _device.PinnedBytes;
        using var p2 = a.Pin(buffer.Address + 4096, 4096, DmaAccess.DeviceRead);
        Assert.That(_device.PinnedBytes, Is.EqualTo(before), "an overlapping pin in the same context charges nothing");
        using var p3 = b.Pin(buffer, DmaAccess.ReadWrite);
        Assert.That(_device.PinnedBytes - before, Is.EqualTo(tables), "another context charges only its own tables: a page is pinned once however many users it has");
    }

    [Test]
    public void PinOverTheLimitIsRefusedWithTheNumbersAndNothingLeaks()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { MemlockLimitBytes = 1UL << 20 });
        using var buffer = HostBuffer.Allocate(2UL << 20);
        using var context = device.CreateContext();
        var before = device.PinnedBytes;
        var pages = device.IommuMappedPages;
        var ex = Assert.Throws<PinLimitExceededException>(() => context.Pin(buffer, DmaAccess.DeviceRead))!;
        Assert.That(ex.Limit, Is.EqualTo(1UL << 20));
        Assert.That(ex.Requested, Is.EqualTo(2UL << 20));
        Assert.That(ex.Message, Does.Contain("1048576").And.Contain("ulimit -l").And.Contain("MemlockLimitBytes"));
        Assert.That(device.PinnedBytes, Is.EqualTo(before));
        Assert.That(device.IommuMappedPages, Is.EqualTo(pages));
        Assert.That(context.MappedPages, Is.Zero);
    }

    [Test]
    public void BadPinsAreTypedErrors()
    {
        using var context = _device.CreateContext();
        using var buffer = HostBuffer.Allocate(4096);
        Assert.That(Assert.Throws<PinRejectedException>(() => context.Pin(buffer.Address, 0, DmaAccess.DeviceRead))!.Message, Does.Contain("length is zero"));
        Assert.That(Assert.Throws<PinRejectedException>(() => context.Pin(unchecked((nint)0x7FFF_FFFF_F000), 1UL << 48, DmaAccess.DeviceRead))!.Message, Does.Contain("overflows"));
        Assert.That(Assert.Throws<PinRejectedException>(() => context.Pin(buffer.Address, 4096, DmaAccess.None))!.Message, Does.Contain("access None"));

        // Freed between two live neighbours (mmap places them side by side): the 4 KiB hole cannot be taken by
        // a larger mapping another thread makes meanwhile (a thread stack would otherwise land right there).
        using var above = HostBuffer.Allocate(4096);
        var freed = HostBuffer.Allocate(4096);
        using var below = HostBuffer.Allocate(4096);
        var address = freed.Address;
        freed.Dispose();
        Assert.That(Assert.Throws<PinRejectedException>(() => context.Pin(freed, DmaAccess.DeviceRead))!.Message, Does.Contain("already freed"));
        Assert.That(Assert.Throws<PinRejectedException>(() => context.Pin(address, 4096, DmaAccess.DeviceRead))!.Message, Does.Contain("not mapped"));
        Assert.That(context.PinCount, Is.Zero);
    }

    [Test]
    public void DisposedContextRefusesPins()
    {
        var context = _device.CreateContext();
        context.Dispose();
        using var buffer = HostBuffer.Allocate(4096);
        Assert.Throws<DisposedResourceException>(() => context.Pin(buffer, DmaAccess.DeviceRead));
    }

    [Test]
    public void UnpinWithHandleFromAnotherContextIsRefused()
    {
        using var buffer = HostBuffer.Allocate(4096);
        using var a = _device.CreateContext();
        using var b = _device.CreateContext();
        using var pin = a.Pin(buffer, DmaAccess.DeviceRead);
        Assert.That(Assert.Throws<InvalidPinHandleException>(() => b.Unpin(pin))!.Message, Does.Contain($"belongs to context {a.Index}"));
        Assert.That(pin.IsPinned, Is.True);
    }

    [Test]
    public void ContextsAreAllocatedUntilNoneIsFree()
    {
        var contexts = new List<DeviceContext>();
        try
        {
            for (var i = 0; i < _device.Info.Capabilities.Contexts; i++)
            {
                contexts.Add(_device.CreateContext());
            }

            Assert.That(contexts.Select(c => c.Index), Is.Unique);
            Assert.That(Assert.Throws<NoFreeContextException>(() => _device.CreateContext())!.Message, Does.Contain($"All {contexts.Count} device contexts"));
        }
        finally
        {
            foreach (var c in contexts)
            {
                c.Dispose();
            }
        }
    }
}
