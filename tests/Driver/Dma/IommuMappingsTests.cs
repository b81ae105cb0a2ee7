using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Dma;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Dma;

/// <summary>
/// IOMMU mappings in units the kernel accepts (issue 11, defect 8): each map call is a unit, unmapped whole once none
/// of its pages is used, never split (VFIO type1v2 refuses an unmap that splits a mapping with EINVAL); a unit never
/// crosses a 2 MiB boundary, so what stays mapped for a used page is bounded; the memlock charge is what the kernel
/// charges (the pages mapped), and a refusal by the kernel never makes it drift.
/// </summary>
public class IommuMappingsTests
{
    private const ulong P = 4096;
    private const ulong B = 0x10_0000;

    [Test]
    public void OverlappingUsersNeverSplitAMapping()
    {
        var backend = new Type1v2Backend();
        var accountant = new PinAccountant(1UL << 30);
        var mappings = new IommuMappings(backend, IovaLayout.Choose(backend.IovaRanges), accountant);

        mappings.Acquire(B, 4 * P);            // pages 0..3: one unit
        mappings.Acquire(B + P, P);            // page 1 again: nothing new
        mappings.Acquire(B + (3 * P), 2 * P);  // page 3 again, page 4 new: a unit of its own
        Assert.That(backend.Calls, Is.EqualTo(new[] { "map 0+4", "map 4+1" }));
        Assert.That(accountant.PinnedBytes, Is.EqualTo(5 * P));

        backend.Calls.Clear();
        mappings.Release(B, 4 * P);            // pages 1 and 3 still used: the unit 0+4 stays whole, mapped and charged
        Assert.That(backend.Calls, Is.Empty, "an unmap of part of the 0+4 mapping would split it");
        Assert.That(mappings.MappedPages, Is.EqualTo(5));
        Assert.That(accountant.PinnedBytes, Is.EqualTo(5 * P), "the charge is what the kernel charges: every page mapped");

        mappings.Release(B + P, P);            // page 3 still holds the unit
        Assert.That(backend.Calls, Is.Empty);
        mappings.Release(B + (3 * P), 2 * P);  // the last users: both units go, whole
        Assert.That(backend.Calls, Is.EqualTo(new[] { "unmap 0+4", "unmap 4+1" }));
        Assert.That(mappings.MappedPages, Is.Zero);
        Assert.That(accountant.PinnedBytes, Is.Zero);
        Assert.That(backend.Mapped, Is.Zero);
        Assert.Throws<InvalidOperationException>(() => mappings.Release(B, P), "a release without an acquire is a bug, reported");
    }

    [Test]
    public void IdlePagesOfALiveUnitAreReusedWithoutANewMap()
    {
        var backend = new Type1v2Backend();
        var accountant = new PinAccountant(1UL << 30);
        var mappings = new IommuMappings(backend, IovaLayout.Choose(backend.IovaRanges), accountant);
        mappings.Acquire(B, 4 * P);
        mappings.Acquire(B + P, P);
        mappings.Release(B, 4 * P);            // pages 0, 2, 3 idle but mapped (page 1 holds the unit)
        backend.Calls.Clear();

        mappings.Acquire(B, 4 * P);            // a map there would be EEXIST: the idle pages are simply used again
        Assert.That(backend.Calls, Is.Empty);
        Assert.That(accountant.PinnedBytes, Is.EqualTo(4 * P));
        mappings.Release(B, 4 * P);
        mappings.Release(B + P, P);
        Assert.That(backend.Calls, Is.EqualTo(new[] { "unmap 0+4" }));
        Assert.That(accountant.PinnedBytes, Is.Zero);
    }

    [Test]
    public void UnitsDoNotCrossTwoMegabyteBoundaries()
    {
        var backend = new Type1v2Backend();
        var mappings = new IommuMappings(backend, IovaLayout.Choose(backend.IovaRanges), new PinAccountant(1UL << 30));
        const ulong huge = 2UL << 20;
        mappings.Acquire(huge - P, huge + (2 * P)); // the last page of one chunk, a whole chunk, the first page of the next
        Assert.That(backend.Calls, Is.EqualTo(new[] { "map 255+1", "map 256+512", "map 768+1" }), "pages are numbered from 1 MiB: the 2 MiB boundaries fall at pages 256 and 768");
        mappings.Release(huge - P, huge + (2 * P));
        Assert.That(backend.Mapped, Is.Zero);
    }

    [Test]
    public void RefusedMapLeavesNoChargeAndNoMapping()
    {
        var backend = new Type1v2Backend { RefuseMapAt = B + (2 * P) };
        var accountant = new PinAccountant(1UL << 30);
        var mappings = new IommuMappings(backend, IovaLayout.Choose(backend.IovaRanges), accountant);
        mappings.Acquire(B + P, P);
        Assert.Throws<DmaMappingException>(() => mappings.Acquire(B, 4 * P));
        Assert.That(accountant.PinnedBytes, Is.EqualTo(P));
        Assert.That(mappings.MappedPages, Is.EqualTo(1));
        Assert.That(backend.Mapped, Is.EqualTo(1), "the unit mapped before the refusal was unmapped again");
    }

    // The kernel refusing an unmap (it should not, for a whole unit) leaves the unit mapped and charged, as the kernel
    // has it: the driver's count does not drift, and the pages can be used again without a map (which would be EEXIST).
    [Test]
    public void RefusedUnmapLeavesTheUnitMappedAndCharged()
    {
        var backend = new Type1v2Backend();
        var accountant = new PinAccountant(1UL << 30);
        var mappings = new IommuMappings(backend, IovaLayout.Choose(backend.IovaRanges), accountant);
        mappings.Acquire(B, 2 * P);
        backend.RefuseUnmaps = true;
        mappings.Release(B, 2 * P);
        Assert.That(mappings.MappedPages, Is.EqualTo(2));
        Assert.That(accountant.PinnedBytes, Is.EqualTo(2 * P));
        Assert.That(mappings.FailedUnmaps, Is.EqualTo(1));

        backend.RefuseUnmaps = false;
        backend.Calls.Clear();
        mappings.Acquire(B, 2 * P);
        Assert.That(backend.Calls, Is.Empty, "still mapped: used again as it is");
        mappings.Release(B, 2 * P);
        Assert.That(backend.Calls, Is.EqualTo(new[] { "unmap 0+2" }));
        Assert.That(accountant.PinnedBytes, Is.Zero);
    }

    /// <summary>Records map and unmap calls and refuses what VFIO type1v2 refuses: an overlapping map, a splitting unmap.</summary>
    private sealed class Type1v2Backend : IDeviceBackend
    {
        private readonly SortedDictionary<ulong, ulong> _mappings = [];

        public List<string> Calls { get; } = [];

        public ulong? RefuseMapAt { get; init; }

        public bool RefuseUnmaps { get; set; }

        public int Mapped => (int)(_mappings.Values.Sum(v => (long)v) / 4096);

        public BackendKind Kind => BackendKind.Model;

        public string Description => "type1v2 recording";

        public IReadOnlyList<IovaRange> IovaRanges { get; } = [new(0x1000, (1UL << 48) - 1)];

        public ulong Read64(uint offset) => 0;

        public void Write64(uint offset, ulong value)
        {
        }

        public int ConnectInterrupts(IReadOnlyList<EventFd> vectors) => 0;

        public void DisconnectInterrupts()
        {
        }

        public void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
        {
            var host = (ulong)hostAddress;
            if (RefuseMapAt is { } r && r >= host && r < host + length)
            {
                throw new DmaMappingException(iova, length, "EFAULT", "refused for the test.");
            }

            if (_mappings.Any(m => m.Key < iova + length && iova < m.Key + m.Value))
            {
                throw new DmaMappingException(iova, length, "EEXIST", "overlaps an existing mapping.");
            }

            _mappings[iova] = length;
            Calls.Add($"map {(host - B) / 4096}+{length / 4096}");
        }

        public ulong UnmapDma(ulong iova, ulong length)
        {
            if (RefuseUnmaps)
            {
                throw new DmaMappingException(iova, length, "EINVAL", "refused for the test.");
            }

            if (_mappings.Any(m => (m.Key < iova && iova < m.Key + m.Value) || (m.Key < iova + length && iova + length < m.Key + m.Value)))
            {
                throw new DmaMappingException(iova, length, "EINVAL", "the unmap would split a mapping (type1v2).");
            }

            var removed = _mappings.Where(m => m.Key >= iova && m.Key + m.Value <= iova + length).ToList();
            foreach (var m in removed)
            {
                _mappings.Remove(m.Key);
            }

            Calls.Add($"unmap {(iova - IovaLayout.HighDelta - B) / 4096}+{length / 4096}");
            return (ulong)removed.Sum(m => (long)m.Value);
        }

        public void Dispose()
        {
        }
    }
}
