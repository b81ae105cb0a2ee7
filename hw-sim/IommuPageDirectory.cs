using System.Collections.Concurrent;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>
/// The model IOMMU's page table: for every mapped 4 KiB IOVA page, the map call (<see cref="IommuMapping"/>) that maps
/// it. Two levels, as a hardware IOMMU's table is: a directory of leaves, each leaf an array of one reference per page
/// of a 16 MiB span. A lookup is a lock-free read of one directory entry and one array slot, and allocates nothing;
/// mapping or unmapping n pages writes n slots. A leaf is allocated the first time its span is used; once empty it is
/// kept for reuse while the directory holds at most <see cref="KeptEmptyLeaves"/> leaves, and dropped beyond that, so
/// memory stays bounded by the spans mapped now (plus 2 MiB of empty leaves) however sparse the IOVAs a process uses.
/// </summary>
/// <remarks>
/// Writers (<see cref="Set"/>, <see cref="Clear"/>) run under the IOMMU's write lock, one at a time. Readers (device
/// engine threads translating, the oracle) run at any time. Invariant: a slot holds either null or a reference to an
/// immutable mapping, written with a single reference store, so a reader sees the page unmapped, or mapped by one
/// whole map call, never a torn mix. A leaf is dropped only when every slot in it is null; a reader that found it just
/// before reads null, which is the answer it would have had a moment earlier, and a later map makes a new leaf. That a
/// reader may still use a mapping just removed is what the IOMMU's access epochs are for (<see cref="ModelIommu.Unmap"/>
/// waits for accesses that began before the removal).
/// </remarks>
internal sealed class IommuPageDirectory
{
    /// <summary>Empty leaves (32 KiB each) the directory keeps for reuse, at most.</summary>
    public const int KeptEmptyLeaves = 64;

    private const int LeafShift = 12;
    private const ulong LeafPages = 1UL << LeafShift;

    private readonly ConcurrentDictionary<ulong, Leaf> _leaves = new();
    private long _count;

    /// <summary>Pages mapped now.</summary>
    public long Count => Interlocked.Read(ref _count);

    /// <summary>Leaves allocated now (mapped or kept empty).</summary>
    public int Leaves => _leaves.Count;

    /// <summary>The mapping of the page holding <paramref name="iova"/>, or null.</summary>
    public IommuMapping? Find(ulong iova)
    {
        var page = iova >> PageTableFormat.PageShift;
        return _leaves.TryGetValue(page >> LeafShift, out var leaf) ? Volatile.Read(ref leaf.Slots[page & (LeafPages - 1)]) : null;
    }

    /// <summary>Write lock held: the first mapping found in [<paramref name="iova"/>, + <paramref name="length"/>), or null.</summary>
    public IommuMapping? FirstIn(ulong iova, ulong length)
    {
        var page = iova >> PageTableFormat.PageShift;
        var end = page + (length >> PageTableFormat.PageShift);
        while (page < end)
        {
            var leafEnd = Math.Min(end, ((page >> LeafShift) + 1) << LeafShift);
            if (_leaves.TryGetValue(page >> LeafShift, out var leaf))
            {
                for (; page < leafEnd; page++)
                {
                    if (leaf.Slots[page & (LeafPages - 1)] is { } hit)
                    {
                        return hit;
                    }
                }
            }

            page = leafEnd;
        }

        return null;
    }

    /// <summary>Write lock held: every page of [<paramref name="iova"/>, + <paramref name="length"/>) is mapped by <paramref name="mapping"/> (none was mapped).</summary>
    public void Set(ulong iova, ulong length, IommuMapping mapping) => Write(iova, length, mapping);

    /// <summary>Write lock held: every page of [<paramref name="iova"/>, + <paramref name="length"/>) is unmapped (all were mapped).</summary>
    public void Clear(ulong iova, ulong length) => Write(iova, length, null);

    private void Write(ulong iova, ulong length, IommuMapping? mapping)
    {
        var page = iova >> PageTableFormat.PageShift;
        var pages = length >> PageTableFormat.PageShift;
        var end = page + pages;
        while (page < end)
        {
            var key = page >> LeafShift;
            var leafEnd = Math.Min(end, (key + 1) << LeafShift);
            var leaf = mapping is null ? _leaves[key] : _leaves.GetOrAdd(key, static _ => new Leaf());
            leaf.Used += (int)(leafEnd - page) * (mapping is null ? -1 : 1);
            for (; page < leafEnd; page++)
            {
                Volatile.Write(ref leaf.Slots[page & (LeafPages - 1)], mapping);
            }

            if (leaf.Used == 0 && _leaves.Count > KeptEmptyLeaves)
            {
                _leaves.TryRemove(key, out _);
            }
        }

        Interlocked.Add(ref _count, mapping is null ? -(long)pages : (long)pages);
    }

    // One 16 MiB span's slots, and how many of them are mapped (written under the write lock only).
    private sealed class Leaf
    {
        public readonly IommuMapping?[] Slots = new IommuMapping?[LeafPages];
        public int Used;
    }
}
