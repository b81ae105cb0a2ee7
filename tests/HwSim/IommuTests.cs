using System.Runtime.InteropServices;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
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
    public void MappingsAcrossADirectoryLeafTranslateOverlapAndUnmapWhole()
    {
        // The page directory keeps one leaf per 16 MiB of IOVA: a mapping that straddles two leaves must translate,
        // collide (EEXIST) and unmap on both sides of the boundary, and count its pages once.
        const ulong boundary = 0x100_0000;
        using var memory = MemoryMapping.Anonymous(4 * 4096);
        var iommu = new ModelIommu(48, ulong.MaxValue);
        iommu.Map(boundary - (2 * 4096), memory.Address, 4 * 4096, DmaAccess.ReadWrite);
        Assert.That(iommu.MappedPages, Is.EqualTo(4));
        for (var i = 0; i < 4; i++)
        {
            Assert.That(iommu.TryTranslate(boundary - (2 * 4096) + ((ulong)i * 4096) + 16, DmaAccess.DeviceRead, out var page), Is.True);
            Assert.That(page.Host, Is.EqualTo(memory.Address + (i * 4096) + 16));
            Assert.That(page.Mapping!.Iova, Is.EqualTo(boundary - (2 * 4096)));
        }

        using var other = MemoryMapping.Anonymous(4096);
        var ex = Assert.Throws<IommuMappingException>(() => iommu.Map(boundary + 4096, other.Address, 4096, DmaAccess.ReadWrite))!;
        Assert.That(ex.ErrnoName, Is.EqualTo("EEXIST"), "the second leaf's half is found");
        Assert.That(Assert.Throws<IommuMappingException>(() => iommu.Unmap(boundary, 2 * 4096))!.ErrnoName, Is.EqualTo("EINVAL"), "an unmap from the middle would split it");
        Assert.That(iommu.Unmap(boundary - (2 * 4096), 4 * 4096), Is.EqualTo(4UL * 4096));
        Assert.That(iommu.MappedPages, Is.Zero);
        Assert.That(iommu.TryTranslate(boundary, DmaAccess.DeviceRead, out _), Is.False);
        iommu.Map(boundary + 4096, other.Address, 4096, DmaAccess.ReadWrite);
        Assert.That(iommu.MappedPages, Is.EqualTo(1), "the leaves are reused");
    }

    [Test]
    public void SparseMappingsDoNotLeaveTheirDirectoryLeavesBehind()
    {
        // One page in each of 300 distinct 16 MiB spans, then all unmapped: the directory keeps only a bounded number of
        // empty leaves, not one per span ever used.
        const int spans = 300;
        using var memory = MemoryMapping.Anonymous(4096);
        var iommu = new ModelIommu(48, ulong.MaxValue);
        for (var i = 0; i < spans; i++)
        {
            iommu.Map(0x1_0000_0000UL + ((ulong)i << 24), memory.Address, 4096, DmaAccess.ReadWrite);
        }

        Assert.That(iommu.DirectoryLeaves, Is.EqualTo(spans));
        for (var i = 0; i < spans; i++)
        {
            Assert.That(iommu.Unmap(0x1_0000_0000UL + ((ulong)i << 24), 4096), Is.EqualTo(4096UL));
        }

        Assert.That(iommu.MappedPages, Is.Zero);
        Assert.That(iommu.DirectoryLeaves, Is.LessThanOrEqualTo(IommuPageDirectory.KeptEmptyLeaves));
        iommu.Map(0x1_0000_0000UL + (7UL << 24), memory.Address, 4096, DmaAccess.ReadWrite);
        Assert.That(iommu.TryTranslate(0x1_0000_0000UL + (7UL << 24), DmaAccess.DeviceRead, out var page), Is.True, "a dropped leaf is made again");
        Assert.That(page.Host, Is.EqualTo(memory.Address));
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

    [Test]
    public void MapOverAnyPartOfAnExistingMappingIsEexist()
    {
        using var memory = MemoryMapping.Anonymous(8 * 4096);
        var iommu = new ModelIommu(48, ulong.MaxValue);
        iommu.Map(0x10_2000, memory.Address, 2 * 4096, DmaAccess.ReadWrite);
        Assert.Multiple(() =>
        {
            Assert.That(MapError(iommu, 0x10_2000, memory.Address, 2 * 4096), Is.EqualTo("EEXIST"), "the same range");
            Assert.That(MapError(iommu, 0x10_0000, memory.Address, 3 * 4096), Is.EqualTo("EEXIST"), "ends inside it");
            Assert.That(MapError(iommu, 0x10_3000, memory.Address, 4096), Is.EqualTo("EEXIST"), "inside it");
            Assert.That(MapError(iommu, 0x10_0000, memory.Address, 8 * 4096), Is.EqualTo("EEXIST"), "covers it");
            Assert.That(iommu.MappedPages, Is.EqualTo(2), "a refused map adds nothing");
        });
        iommu.Map(0x10_4000, memory.Address, 4096, DmaAccess.ReadWrite);
        iommu.Map(0x10_1000, memory.Address, 4096, DmaAccess.ReadWrite);
        Assert.That(iommu.Mappings, Is.EqualTo(3), "neighbours are separate mappings");
    }

    [Test]
    public void UnmapThatWouldSplitAMappingIsEinvalAndUnmapsNothing()
    {
        using var memory = MemoryMapping.Anonymous(4 * 4096);
        var iommu = new ModelIommu(48, ulong.MaxValue);
        iommu.Map(0x20_0000, memory.Address, 4 * 4096, DmaAccess.ReadWrite);
        Assert.Multiple(() =>
        {
            Assert.That(UnmapError(iommu, 0x20_0000, 4096), Is.EqualTo("EINVAL"), "the first page only");
            Assert.That(UnmapError(iommu, 0x20_1000, 2 * 4096), Is.EqualTo("EINVAL"), "the middle");
            Assert.That(UnmapError(iommu, 0x1F_F000, 2 * 4096), Is.EqualTo("EINVAL"), "starts before, ends inside");
            Assert.That(UnmapError(iommu, 0x20_3000, 2 * 4096), Is.EqualTo("EINVAL"), "starts inside, ends after");
            Assert.That(iommu.MappedPages, Is.EqualTo(4), "nothing was unmapped");
        });
        Assert.That(iommu.Unmap(0x1F_0000, 0x2_0000), Is.EqualTo(4UL * 4096), "a range around the whole mapping removes it whole");
        Assert.That(iommu.MappedPages, Is.Zero);
    }

    [Test]
    public void UnmapRemovesEveryWholeMappingInTheRangeAndReportsZeroForNone()
    {
        using var memory = MemoryMapping.Anonymous(4 * 4096);
        var iommu = new ModelIommu(48, ulong.MaxValue);
        iommu.Map(0x30_0000, memory.Address, 4096, DmaAccess.ReadWrite);
        iommu.Map(0x30_1000, memory.Address + 4096, 2 * 4096, DmaAccess.ReadWrite);
        iommu.Map(0x30_5000, memory.Address + (3 * 4096), 4096, DmaAccess.ReadWrite);
        Assert.That(iommu.Unmap(0x40_0000, 16 * 4096), Is.Zero, "no mapping in the range: success, 0 bytes");
        Assert.That(iommu.Unmap(0x30_0000, 3 * 4096), Is.EqualTo(3UL * 4096), "two whole mappings at once");
        Assert.That(iommu.Mappings, Is.EqualTo(1));
        Assert.That(iommu.Unmap(0x1000, (1UL << 48) - 0x1000), Is.EqualTo(4096UL), "a huge range costs no page-by-page walk");
        Assert.That(iommu.MappedPages, Is.Zero);
    }

    [Test]
    public void UnmapArgumentsFollowType1()
    {
        using var memory = MemoryMapping.Anonymous(4096);
        var iommu = new ModelIommu(48, ulong.MaxValue);
        iommu.Map(0x50_0000, memory.Address, 4096, DmaAccess.ReadWrite);
        Assert.Multiple(() =>
        {
            Assert.That(UnmapError(iommu, 0x50_0800, 4096), Is.EqualTo("EINVAL"), "unaligned IOVA");
            Assert.That(UnmapError(iommu, 0x50_0000, 0), Is.EqualTo("EINVAL"), "zero size (only UNMAP_ALL has none)");
            Assert.That(UnmapError(iommu, 0x50_0000, 100), Is.EqualTo("EINVAL"), "unaligned size");
            Assert.That(UnmapError(iommu, ulong.MaxValue - 4095, 8192), Is.EqualTo("EINVAL"), "wraps");
        });
        Assert.That(iommu.UnmapAll(), Is.EqualTo(4096UL), "VFIO_DMA_UNMAP_FLAG_ALL");
        Assert.That(iommu.UnmapAll(), Is.Zero);
    }

    [Test]
    public void MapArgumentsFollowType1()
    {
        using var memory = MemoryMapping.Anonymous(4096);
        var iommu = new ModelIommu(48, ulong.MaxValue);
        Assert.Multiple(() =>
        {
            Assert.That(MapError(iommu, 0x60_0000, memory.Address, 4096, DmaAccess.None), Is.EqualTo("EINVAL"), "no access");
            Assert.That(MapError(iommu, 0x60_0000, memory.Address, 0), Is.EqualTo("EINVAL"), "zero size");
            Assert.That(MapError(iommu, 0x60_0000, memory.Address + 8, 4096), Is.EqualTo("EINVAL"), "unaligned host address");
            Assert.That(MapError(iommu, ulong.MaxValue - 4095, memory.Address, 8192), Is.EqualTo("EINVAL"), "IOVA wraps");
        });
    }

    [Test]
    public void MoreMappingsThanTheEntryLimitIsEnospc()
    {
        using var memory = MemoryMapping.Anonymous(3 * 4096);
        var iommu = new ModelIommu(48, ulong.MaxValue, mappingLimit: 2);
        iommu.Map(0x70_0000, memory.Address, 4096, DmaAccess.ReadWrite);
        iommu.Map(0x70_1000, memory.Address + 4096, 4096, DmaAccess.ReadWrite);
        Assert.That(MapError(iommu, 0x70_2000, memory.Address + 8192, 4096), Is.EqualTo("ENOSPC"));
        Assert.That(MapError(iommu, 0x70_0000, memory.Address, 4096), Is.EqualTo("EEXIST"), "type1 checks the overlap first");
        iommu.Unmap(0x70_0000, 4096);
        iommu.Map(0x70_2000, memory.Address + 8192, 4096, DmaAccess.ReadWrite);
        Assert.That(new ModelOptions().IommuMappingLimit, Is.EqualTo(65535), "type1's default dma_entry_limit");
    }

    [Test]
    public unsafe void HostMemoryIsCheckedAsPinUserPagesChecksIt()
    {
        using var readOnly = MemoryMapping.Anonymous(4096, MemoryProtection.Read);
        using var none = MemoryMapping.Anonymous(4096, MemoryProtection.None);
        var iommu = new ModelIommu(48, ulong.MaxValue);

        // Freed by its owner while another mapping holds it: still mapped, but nobody's to pin again.
        var freed = MemoryMapping.Anonymous(4096);
        var freedAddress = freed.Address;
        iommu.Map(0x7F_0000, freedAddress, 4096, DmaAccess.ReadWrite);
        freed.Dispose();
        Assert.Multiple(() =>
        {
            Assert.That(MapError(iommu, 0x80_0000, readOnly.Address, 4096, DmaAccess.ReadWrite), Is.EqualTo("EFAULT"), "device write to read-only memory");
            Assert.That(MapError(iommu, 0x80_0000, none.Address, 4096, DmaAccess.DeviceRead), Is.EqualTo("EFAULT"), "PROT_NONE");
            Assert.That(MapError(iommu, 0x80_0000, freedAddress, 4096, DmaAccess.DeviceRead), Is.EqualTo("EFAULT"), "memory the process freed");
            Assert.That(MapError(iommu, 0x80_0000, 0x1000, 4096, DmaAccess.DeviceRead), Is.EqualTo("EFAULT"), "never mapped");
            Assert.That(iommu.MappedPages, Is.EqualTo(1));
            Assert.That(readOnly.Holds, Is.Zero, "a refused map holds nothing");
        });
        iommu.Unmap(0x7F_0000, 4096);

        iommu.Map(0x80_0000, readOnly.Address, 4096, DmaAccess.DeviceRead);
        Assert.That(readOnly.Holds, Is.EqualTo(1), "mapped memory is held");

        // Memory the registry does not know is checked in /proc/self/maps, and cannot be held.
        var native = NativeMemory.AlignedAlloc(2 * 4096, 4096);
        try
        {
            iommu.Map(0x90_0000, (nint)native, 2 * 4096, DmaAccess.ReadWrite);
            Assert.That(iommu.TryTranslate(0x90_1000, DmaAccess.DeviceWrite, out var page), Is.True);
            Assert.That(page.Host, Is.EqualTo((nint)native + 4096));
            iommu.Unmap(0x90_0000, 2 * 4096);
        }
        finally
        {
            NativeMemory.AlignedFree(native);
        }

        iommu.Unmap(0x80_0000, 4096);
        Assert.That(readOnly.Holds, Is.Zero, "unmap gives the hold back");
    }

    [Test]
    public void AMapThatTheMemlockLimitRefusesHoldsNothing()
    {
        using var memory = MemoryMapping.Anonymous(4 * 4096);
        var iommu = new ModelIommu(48, 2 * 4096);
        Assert.That(MapError(iommu, 0xA0_0000, memory.Address, 4 * 4096), Is.EqualTo("ENOMEM"));
        Assert.That(memory.Holds, Is.Zero);
    }

    [Test]
    public void AMappingAcrossTwoMemoryMappingsHoldsBoth()
    {
        // Two mappings side by side: mmap places consecutive anonymous mappings next to each other (top-down),
        // and the kernel merges them into one VMA, so one pin may cover both.
        var made = new List<MemoryMapping>();
        try
        {
            MemoryMapping? lower = null, upper = null;
            for (var i = 0; i < 8 && lower is null; i++)
            {
                made.Add(MemoryMapping.Anonymous(2 * 4096));
                made.Add(MemoryMapping.Anonymous(2 * 4096));
                var (a, b) = (made[^2], made[^1]);
                (lower, upper) = a.Address < b.Address ? (a, b) : (b, a);
                if (lower.Address + (nint)lower.Length != upper.Address)
                {
                    (lower, upper) = (null, null);
                }
            }

            Assert.That(lower, Is.Not.Null, "mmap placed no two mappings side by side in 8 tries");
            var iommu = new ModelIommu(48, ulong.MaxValue);
            iommu.Map(0xB0_0000, lower!.Address, 4 * 4096, DmaAccess.DeviceRead);
            Assert.That(lower.Holds, Is.EqualTo(1));
            Assert.That(upper!.Holds, Is.EqualTo(1));
            iommu.Unmap(0xB0_0000, 4 * 4096);
            Assert.That(upper.Holds, Is.Zero);
        }
        finally
        {
            made.ForEach(m => m.Dispose());
        }
    }

    [Test]
    public unsafe void FreedPinnedMemoryStaysWithTheDeviceAndEveryAccessToItIsCounted()
    {
        using var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(0);
        rig.EnableContext(0);
        var buffer = rig.MapSeparately(0, 4096);
        Assert.That(rig.Run(0, DmaRig.Fill(buffer.Dva, 64, 0x1111_1111_1111_1111, 0)).Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(rig.Model.Oracle.FreedMemoryAccesses, Is.Zero);

        // A driver bug: free the memory while the IOMMU maps it. The munmap waits; the device's writes land
        // in the orphaned page, not in whatever the process maps next, and the oracle counts them.
        var host = buffer.Memory.Address;
        FreedMemory.Mark(host);
        buffer.Memory.Dispose();
        Assert.That(ProcessLimits.IsMapped(host, 4096), Is.True, "pinned: still allocated");
        Assert.That(rig.Run(0, DmaRig.Fill(buffer.Dva, 64, 0x2222_2222_2222_2222, 0)).Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(*(ulong*)host, Is.EqualTo(0x2222_2222_2222_2222UL), "the IOVA still points at the same page");
        Assert.That(rig.Model.Oracle.FreedMemoryAccesses, Is.EqualTo(1));

        Assert.That(rig.Model.Iommu.Unmap(buffer.Iova, 4096), Is.EqualTo(4096UL));
        Assert.That(FreedMemory.IsGone(host), Is.True, "the unmap released the last hold: now it is freed");
    }

    [Test]
    public void ModelDisposeReleasesWhatItsIommuStillHeld()
    {
        var memory = MemoryMapping.Anonymous(4096);
        var model = new Fa1Model();
        model.Iommu.Map(0xC0_0000, memory.Address, 4096, DmaAccess.ReadWrite);
        FreedMemory.Mark(memory.Address);
        memory.Dispose();
        Assert.That(ProcessLimits.IsMapped(memory.Address, 4096), Is.True);
        model.Dispose();
        Assert.That(FreedMemory.IsGone(memory.Address), Is.True, "closing the container unpins");
    }

    private static string? MapError(ModelIommu iommu, ulong iova, nint host, ulong length, DmaAccess access = DmaAccess.ReadWrite)
    {
        try
        {
            iommu.Map(iova, host, length, access);
            return null;
        }
        catch (IommuMappingException ex)
        {
            return ex.ErrnoName;
        }
    }

    private static string? UnmapError(ModelIommu iommu, ulong iova, ulong length)
    {
        try
        {
            iommu.Unmap(iova, length);
            return null;
        }
        catch (IommuMappingException ex)
        {
            return ex.ErrnoName;
        }
    }
}
