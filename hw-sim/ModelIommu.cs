using System.Collections.Concurrent;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>One window of IOVAs the IOMMU accepts, inclusive at both ends (vfio_iova_range).</summary>
public readonly record struct IovaWindow(ulong Start, ulong End);

/// <summary>A mapping the model's IOMMU refused, with the reason a VFIO user would get as errno.</summary>
public sealed class IommuMappingException : InvalidOperationException
{
    /// <summary>A refusal explained by <paramref name="message"/>, as VFIO would answer it with <paramref name="errnoName"/>.</summary>
    internal IommuMappingException(string message, string errnoName)
        : base(message) => ErrnoName = errnoName;

    /// <summary>What VFIO type1 answers in the same case (EINVAL, EEXIST, ENOMEM...).</summary>
    public string ErrnoName { get; }
}

/// <summary>One IOMMU page translation: where the page lives in host memory, and its permission.</summary>
/// <param name="Host">Host virtual address of the 4 KiB page (of the byte, once translated).</param>
/// <param name="Access">What the device may do.</param>
/// <param name="Mapping">The map call the page belongs to.</param>
/// <param name="Generation">Distinct for every map call, so a use of a mapping after its unmap is recognisable (0 for none).</param>
internal readonly record struct IommuPage(nint Host, DmaAccess Access, IommuMapping? Mapping, long Generation)
{
    /// <summary>The page lies in memory its owner has already freed (the IOMMU still holds it, D32).</summary>
    public bool InFreedMemory => Mapping is { } m && m.IsReleasedByOwner(Host);
}

/// <summary>
/// One map call: its IOVA range, the host memory behind it, its access, its generation and the memory it holds. Never
/// changed once made (only its holds are given back after its unmap has drained), so a reference read from the page
/// directory at any time describes one map call consistently, even one since unmapped.
/// </summary>
internal sealed class IommuMapping
{
    private MemoryMapping? _held;
    private MemoryMapping[]? _moreHeld;

    public IommuMapping(ulong iova, nint host, ulong length, DmaAccess access, long generation, MemoryMapping? held, MemoryMapping[]? moreHeld)
    {
        Iova = iova;
        Host = host;
        Length = length;
        Access = access;
        Generation = generation;
        _held = held;
        _moreHeld = moreHeld;
    }

    public ulong Iova { get; }

    /// <summary>Host address of the mapping's first byte.</summary>
    public nint Host { get; }

    public ulong Length { get; }

    public ulong End => Iova + Length;

    public DmaAccess Access { get; }

    public long Generation { get; }

    /// <summary>The translation of the page at <paramref name="iova"/> (inside this mapping).</summary>
    public IommuPage PageAt(ulong iova) => new(Host + (nint)((iova & ~(PageTableFormat.PageSize - 1)) - Iova), Access, this, Generation);

    /// <summary>True when host address <paramref name="host"/> lies in a held mapping its owner has released.</summary>
    public bool IsReleasedByOwner(nint host) => HeldAt(host) is { IsReleasedByOwner: true };

    /// <summary>Gives back every hold (after the unmap's wait) and forgets them.</summary>
    public void ReleaseHolds()
    {
        if (_moreHeld is not null)
        {
            foreach (var held in _moreHeld)
            {
                held.ReleaseHold();
            }
        }
        else
        {
            _held?.ReleaseHold();
        }

        _held = null;
        _moreHeld = null;
    }

    private MemoryMapping? HeldAt(nint host)
    {
        if (_moreHeld is null)
        {
            return _held is not null && (nuint)host - (nuint)_held.Address < (nuint)_held.Length ? _held : null;
        }

        foreach (var held in _moreHeld)
        {
            if ((nuint)host - (nuint)held.Address < (nuint)held.Length)
            {
                return held;
            }
        }

        return null;
    }
}

/// <summary>
/// The model's platform IOMMU (spec 6), as strict as VFIO type1v2 (the interface the board backend
/// selects): IOVA ranges map to host memory in mappings; mapping pins the memory (counted against
/// <see cref="ModelOptions.MemlockLimitBytes"/> like RLIMIT_MEMLOCK, and held so it outlives a free by
/// its process); an access to an unmapped IOVA is refused and counted. Decisions D31-D34.
/// </summary>
/// <remarks>
/// <para>The rules of vfio_iommu_type1 (v2), checked in its order (decision D31). Map: no access, a zero or
/// unaligned size, IOVA or host address, or a range that wraps: EINVAL; any overlap with an existing
/// mapping: EEXIST; <see cref="MappingLimit"/> mappings already (the module's dma_entry_limit): ENOSPC; a
/// range outside the valid windows: EINVAL; host memory that is not mapped in the process, not readable,
/// or not writable when the mapping lets the device write (what pin_user_pages refuses): EFAULT; beyond
/// the locked-memory limit: ENOMEM. A failed map leaves nothing behind. Unmap: an unaligned IOVA, a zero or
/// unaligned size, or a wrapping range: EINVAL; a range that starts or ends inside a mapping (it would
/// split it): EINVAL, with nothing unmapped; otherwise every mapping inside the range is removed whole and
/// the bytes removed are returned (0 when the range holds none). <see cref="UnmapAll"/> is
/// VFIO_DMA_UNMAP_FLAG_ALL.</para>
/// <para>Holding the memory (decision D32): a mapping takes a <see cref="MemoryMapping.TryHold"/> on every
/// <see cref="MemoryMapping"/> its host range lies in and gives it back after its unmap, so a process that
/// frees pinned memory does not pull it from under the device: the munmap waits, and the IOVA keeps
/// pointing at the same pages, as a pinned page outlives its process's munmap. Every device access that
/// lands in memory its owner already released is counted (<see cref="FreedMemoryAccesses"/>). Memory the
/// registry does not know (NativeMemory, the GC heap, native mappings) is checked against
/// /proc/self/maps at map and cannot be held: freeing it while mapped is the caller's bug, unseen here.</para>
/// <para>Concurrency: lookups (<see cref="TryTranslate"/>) are lock-free reads of the page directory (one
/// reference per page, to the immutable mapping that maps it) and run on device engine threads while the driver
/// maps and unmaps. Map and unmap serialize on
/// <see cref="_writeLock"/> so the overlap check and the insert (or the split check and the removal) are one
/// step, as in type1; unmaps also serialize among themselves on <see cref="_unmapLock"/>, which they keep
/// through the wait below while maps go on.</para>
/// <para>Unmap is synchronous with the device, as type1's is (decision D29; the IOTLB flush drains translated
/// requests): when <see cref="Unmap"/> returns, no device access still touches the pages it removed,
/// so the caller may free them. Invariant: every device access that touches host memory does so
/// inside a <see cref="DeviceAccessScope"/> taken before it translates. Unmap removes the pages (no
/// new translation can find them), then opens a new access epoch and waits until no scope of an
/// earlier epoch is open, and only then releases its holds. A scope is short (one page of one command,
/// or one ring or table entry) and never waits for anything while open, so the wait is bounded; device
/// threads never block on it (they take a short lock only).</para>
/// </remarks>
public sealed class ModelIommu
{
    /// <summary>vfio_iommu_type1's dma_entry_limit default (U16_MAX): mappings a container may hold at once.</summary>
    public const int DefaultMappingLimit = ushort.MaxValue;

    private readonly IommuPageDirectory _pages = new();
    private readonly Dictionary<ulong, IommuMapping> _mappings = [];
    private readonly List<IommuMapping> _removing = [];
    private readonly Lock _writeLock = new();
    private readonly Lock _unmapLock = new();
    private readonly ulong _memlockLimit;
    private readonly Lock _accessLock = new();
    private readonly Dictionary<long, int> _openScopes = [];
    private long _generation;
    private long _refused;
    private long _freedAccesses;
    private long _mapCalls;
    private long _unmapCalls;
    private long _accessEpoch;

    /// <summary>An empty IOMMU for an IOVA space of <paramref name="iovaBits"/> bits, pinning at most <paramref name="memlockLimitBytes"/>.</summary>
    internal ModelIommu(int iovaBits, ulong memlockLimitBytes, int mappingLimit = DefaultMappingLimit)
    {
        _memlockLimit = memlockLimitBytes;
        MappingLimit = mappingLimit;
        var top = iovaBits >= 64 ? ulong.MaxValue : (1UL << iovaBits) - 1;

        // Like x86 VT-d under type1: IOVA 0 page and the MSI window 0xFEE00000..0xFEEFFFFF are reserved.
        Windows = [new IovaWindow(0x1000, 0xFEDF_FFFF), new IovaWindow(0xFEF0_0000, top)];
    }

    /// <summary>IOVA windows a mapping may use (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE).</summary>
    public IReadOnlyList<IovaWindow> Windows { get; }

    /// <summary>Mappings the IOMMU holds at most at once (type1's dma_entry_limit): one more is ENOSPC.</summary>
    public int MappingLimit { get; }

    /// <summary>Pages mapped now.</summary>
    internal long MappedPages => _pages.Count;

    /// <summary>Leaves of the page directory allocated now (D40: bounded by the spans mapped, plus a few kept empty).</summary>
    internal int DirectoryLeaves => _pages.Leaves;

    /// <summary>Mappings (map calls not yet unmapped) now.</summary>
    internal int Mappings
    {
        get
        {
            lock (_writeLock)
            {
                return _mappings.Count;
            }
        }
    }

    /// <summary>Bytes pinned now (mapped pages x 4 KiB).</summary>
    internal ulong PinnedBytes => (ulong)_pages.Count * PageTableFormat.PageSize;

    /// <summary>Device accesses the IOMMU refused.</summary>
    internal long RefusedAccesses => Interlocked.Read(ref _refused);

    /// <summary>Device accesses (data, rings, tables) that landed in memory its owner had already freed (D32).</summary>
    internal long FreedMemoryAccesses => Interlocked.Read(ref _freedAccesses);

    /// <summary>Successful <see cref="Map"/> calls.</summary>
    internal long MapCalls => Interlocked.Read(ref _mapCalls);

    /// <summary><see cref="Unmap"/> calls.</summary>
    internal long UnmapCalls => Interlocked.Read(ref _unmapCalls);

    /// <summary>
    /// Maps <paramref name="length"/> bytes at <paramref name="iova"/> to host memory at <paramref name="host"/>
    /// (VFIO_IOMMU_MAP_DMA), pinning and holding it; refused as type1v2 refuses (see the remarks).
    /// </summary>
    /// <exception cref="IommuMappingException">Refused; <see cref="IommuMappingException.ErrnoName"/> is type1's errno.</exception>
    public void Map(ulong iova, nint host, ulong length, DmaAccess access)
    {
        const ulong page = PageTableFormat.PageSize;

        // vfio_dma_do_map: READ/WRITE flags, then size and alignment, then wrap (decision D31).
        if ((access & DmaAccess.ReadWrite) == DmaAccess.None)
        {
            throw new IommuMappingException($"IOMMU map of IOVA 0x{iova:X}: a mapping needs read or write access.", "EINVAL");
        }

        if (length == 0 || iova % page != 0 || (ulong)host % page != 0 || length % page != 0)
        {
            throw new IommuMappingException(
                $"IOMMU map of IOVA 0x{iova:X} host 0x{host:X} length 0x{length:X}: IOVA, host address and length must be non-zero multiples of 4 KiB.", "EINVAL");
        }

        if (iova + length - 1 < iova || (ulong)host + length - 1 < (ulong)host)
        {
            throw new IommuMappingException($"IOMMU map of IOVA 0x{iova:X} host 0x{host:X} length 0x{length:X}: the range wraps the address space.", "EINVAL");
        }

        lock (_writeLock)
        {
            if (FindOverlap(iova, length) is { } existing)
            {
                throw new IommuMappingException(
                    $"IOMMU map of IOVA 0x{iova:X}..0x{iova + length - 1:X} overlaps the existing mapping 0x{existing.Iova:X}..0x{existing.End - 1:X}; unmap it first (type1 never replaces a mapping).", "EEXIST");
            }

            if (_mappings.Count >= MappingLimit)
            {
                throw new IommuMappingException(
                    $"IOMMU map of IOVA 0x{iova:X}: the container already holds {_mappings.Count} mappings, its limit (vfio_iommu_type1 dma_entry_limit); map in larger runs or unmap some.", "ENOSPC");
            }

            if (!InWindow(iova, length))
            {
                throw new IommuMappingException(
                    $"IOMMU map of IOVA 0x{iova:X}..0x{iova + length - 1:X} is outside the valid IOVA ranges ({string.Join(", ", Windows.Select(w => $"0x{w.Start:X}-0x{w.End:X}"))}).", "EINVAL");
            }

            var mapping = PinHostMemory(iova, host, length, access);
            if ((ulong)_pages.Count * page + length > _memlockLimit)
            {
                mapping.ReleaseHolds();
                throw new IommuMappingException(
                    $"IOMMU map of {length} bytes would pin {(ulong)_pages.Count * page + length} bytes, over the locked-memory limit (RLIMIT_MEMLOCK) of {_memlockLimit} bytes.", "ENOMEM");
            }

            _mappings.Add(iova, mapping);
            _pages.Set(iova, length, mapping);

            Interlocked.Increment(ref _mapCalls);
        }
    }

    /// <summary>
    /// Unmaps every mapping inside [<paramref name="iova"/>, + <paramref name="length"/>) whole
    /// (VFIO_IOMMU_UNMAP_DMA, type1v2); returns the bytes unmapped, 0 when the range holds no mapping.
    /// Returns once no device access touches the removed pages (D29), then releases their holds (D32).
    /// </summary>
    /// <exception cref="IommuMappingException">
    /// EINVAL: unaligned, empty or wrapping, or the range would split a mapping (nothing is unmapped then).
    /// </exception>
    public ulong Unmap(ulong iova, ulong length)
    {
        const ulong page = PageTableFormat.PageSize;

        // vfio_dma_do_unmap: IOVA alignment first, then size and wrap.
        if (iova % page != 0)
        {
            throw new IommuMappingException($"IOMMU unmap of IOVA 0x{iova:X}: the IOVA must be a multiple of 4 KiB.", "EINVAL");
        }

        if (length == 0 || length % page != 0 || iova + length - 1 < iova)
        {
            throw new IommuMappingException(
                $"IOMMU unmap of IOVA 0x{iova:X} length 0x{length:X}: the length must be a non-zero multiple of 4 KiB and the range must not wrap (VFIO_DMA_UNMAP_FLAG_ALL unmaps everything).", "EINVAL");
        }

        lock (_unmapLock)
        {
            lock (_writeLock)
            {
                Interlocked.Increment(ref _unmapCalls);

                // type1v2: an unmap must cover whole mappings; one that starts or ends inside a mapping is refused.
                var end = iova + length;
                if (_pages.Find(iova) is { } head && head.Iova != iova)
                {
                    throw SplitRefused(iova, length, head);
                }

                if (_pages.Find(end - 1) is { } tail && tail.End != end)
                {
                    throw SplitRefused(iova, length, tail);
                }

                CollectInside(iova, end);
                RemoveCollectedPages();
            }

            return FinishRemoval();
        }
    }

    /// <summary>Unmaps every mapping (VFIO_DMA_UNMAP_FLAG_ALL); returns the bytes unmapped, once no device access touches them.</summary>
    public ulong UnmapAll()
    {
        lock (_unmapLock)
        {
            lock (_writeLock)
            {
                Interlocked.Increment(ref _unmapCalls);
                _removing.AddRange(_mappings.Values);
                RemoveCollectedPages();
            }

            return FinishRemoval();
        }
    }

    /// <summary>Opens a device access (see the remarks): translate and touch the memory, then dispose.</summary>
    internal DeviceAccessScope BeginDeviceAccess()
    {
        lock (_accessLock)
        {
            _openScopes[_accessEpoch] = _openScopes.GetValueOrDefault(_accessEpoch) + 1;
            return new DeviceAccessScope(this, _accessEpoch);
        }
    }

    internal void EndDeviceAccess(long epoch)
    {
        lock (_accessLock)
        {
            var count = _openScopes.GetValueOrDefault(epoch) - 1;
            if (count <= 0)
            {
                _openScopes.Remove(epoch);
            }
            else
            {
                _openScopes[epoch] = count;
            }
        }
    }

    /// <summary>
    /// Translates a device access. Returns false, and counts a refusal, when the page is unmapped or
    /// lacks the access; the caller then applies spec 6 (data: DMA_ERROR; rings and tables: FATAL).
    /// An access that lands in memory its owner already freed goes through (the pinned page is still
    /// there, D32) and is counted in <see cref="FreedMemoryAccesses"/>.
    /// </summary>
    internal bool TryTranslate(ulong iova, DmaAccess access, out IommuPage page)
    {
        if (_pages.Find(iova) is { } mapping && (mapping.Access & access) == access)
        {
            page = mapping.PageAt(iova);
            if (page.InFreedMemory)
            {
                Interlocked.Increment(ref _freedAccesses);
            }

            page = page with { Host = page.Host + (nint)(iova & (PageTableFormat.PageSize - 1)) };
            return true;
        }

        Interlocked.Increment(ref _refused);
        page = default;
        return false;
    }

    /// <summary>Looks a page up without it counting as a device access (the model's oracle uses this).</summary>
    internal bool TryPeek(ulong iova, out IommuPage page)
    {
        var mapping = _pages.Find(iova);
        page = mapping?.PageAt(iova) ?? default;
        return mapping is not null;
    }

    /// <summary>Drops every mapping (the container closed); returns once no device access touches them.</summary>
    internal void Clear() => UnmapAll();

    private static IommuMappingException SplitRefused(ulong iova, ulong length, IommuMapping mapping) =>
        new(
            $"IOMMU unmap of IOVA 0x{iova:X}..0x{iova + length - 1:X} would split the mapping 0x{mapping.Iova:X}..0x{mapping.End - 1:X}: "
            + "type1v2 unmaps whole mappings only; unmap a range that starts and ends on mapping boundaries (map in the units you will unmap).", "EINVAL");

    // Write lock held: a mapping overlapping [iova, iova + length), or null. Looks at whichever is fewer,
    // the range's pages or the mappings, so a huge range costs no more than the mappings there are.
    private IommuMapping? FindOverlap(ulong iova, ulong length)
    {
        var pages = length >> PageTableFormat.PageShift;
        if (pages <= (ulong)_mappings.Count)
        {
            return _pages.FirstIn(iova, length);
        }

        foreach (var mapping in _mappings.Values)
        {
            if (mapping.Iova < iova + length && iova < mapping.End)
            {
                return mapping;
            }
        }

        return null;
    }

    // Write lock held: every mapping inside [iova, end) goes to _removing (the v2 checks passed, so none
    // straddles a boundary).
    private void CollectInside(ulong iova, ulong end)
    {
        var pages = (end - iova) >> PageTableFormat.PageShift;
        if (pages <= (ulong)_mappings.Count)
        {
            for (var a = iova; a < end; a += PageTableFormat.PageSize)
            {
                if (_mappings.TryGetValue(a, out var mapping))
                {
                    _removing.Add(mapping);
                }
            }

            return;
        }

        foreach (var mapping in _mappings.Values)
        {
            if (mapping.Iova >= iova && mapping.End <= end)
            {
                _removing.Add(mapping);
            }
        }
    }

    // Unmap and write locks held: removes the collected mappings' pages, so no new translation finds them.
    private void RemoveCollectedPages()
    {
        foreach (var mapping in _removing)
        {
            _mappings.Remove(mapping.Iova);
            _pages.Clear(mapping.Iova, mapping.Length);
        }
    }

    // Unmap lock held, write lock not (maps go on meanwhile): waits for the device accesses that may still
    // use the removed pages (D29), then gives back their holds (D32). Returns the bytes removed.
    private ulong FinishRemoval()
    {
        var unmapped = 0UL;
        foreach (var mapping in _removing)
        {
            unmapped += mapping.Length;
        }

        if (unmapped != 0)
        {
            WaitForEarlierAccesses();
        }

        foreach (var mapping in _removing)
        {
            mapping.ReleaseHolds();
        }

        _removing.Clear();
        return unmapped;
    }

    // Write lock held. What pin_user_pages does at map (decision D32): every page of the host range must be
    // mapped in the process, readable, and writable when the device may write; memory the MemoryMapping
    // registry knows is held for the life of the mapping, other memory is checked in /proc/self/maps.
    // EFAULT (holding nothing) otherwise. Returns the new mapping, holding what it pinned.
    private IommuMapping PinHostMemory(ulong iova, nint host, ulong length, DmaAccess access)
    {
        var needed = (access & DmaAccess.DeviceWrite) != 0 ? MemoryProtection.ReadWrite : MemoryProtection.Read;
        MemoryMapping? only = null;
        List<MemoryMapping>? several = null;
        var at = (ulong)host;
        var end = (ulong)host + length;
        try
        {
            while (at < end)
            {
                var memory = MemoryMapping.Find((nint)at);
                if (memory is null)
                {
                    // Not ours: find where the next known mapping starts, and check the gap the kernel's way.
                    var next = MemoryMapping.FindNext((nint)at);
                    var gapEnd = next is null ? end : Math.Min(end, (ulong)next.Address);

                    if (!ProcessLimits.IsAccessible((nint)at, gapEnd - at, needed))
                    {
                        throw PinRefused(iova, host, length, at, "is not mapped in this process with the access the mapping asks for");
                    }

                    at = gapEnd;
                    continue;
                }

                if (memory.IsReleasedByOwner || (memory.Protection & needed) != needed)
                {
                    throw PinRefused(iova, host, length, at, memory.IsReleasedByOwner ? "was freed by its owner" : $"is mapped {memory.Protection}, the mapping needs {needed}");
                }

                if (!memory.TryHold())
                {
                    throw PinRefused(iova, host, length, at, "was freed by its owner");
                }

                if (only is null)
                {
                    only = memory;
                }
                else
                {
                    (several ??= [only]).Add(memory);
                }

                at = Math.Min(end, (ulong)memory.Address + memory.Length);
            }
        }
        catch
        {
            if (several is not null)
            {
                several.ForEach(held => held.ReleaseHold());
            }
            else
            {
                only?.ReleaseHold();
            }

            throw;
        }

        return new IommuMapping(iova, host, length, access, Interlocked.Increment(ref _generation), only, several?.ToArray());
    }

    private static IommuMappingException PinRefused(ulong iova, nint host, ulong length, ulong at, string why) =>
        new($"IOMMU map of IOVA 0x{iova:X} (host 0x{host:X}, {length} bytes): host page 0x{at:X} {why}; pin_user_pages refuses it. Map memory the process owns and keeps mapped.", "EFAULT");

    // Loops, not LINQ: map and unmap run on the driver's fault path, which is measured for allocations.
    private bool InWindow(ulong iova, ulong length)
    {
        for (var i = 0; i < Windows.Count; i++)
        {
            if (iova >= Windows[i].Start && iova + length - 1 <= Windows[i].End)
            {
                return true;
            }
        }

        return false;
    }

    // With _accessLock held.
    private bool AnyOpenBefore(long target)
    {
        foreach (var epoch in _openScopes.Keys)
        {
            if (epoch < target)
            {
                return true;
            }
        }

        return false;
    }

    // Waits (on the unmapping thread, holding only the unmap lock, which device accesses never take)
    // until every access that began before now ended.
    private void WaitForEarlierAccesses()
    {
        long target;
        lock (_accessLock)
        {
            target = ++_accessEpoch;
        }

        var spin = default(SpinWait);
        while (true)
        {
            lock (_accessLock)
            {
                if (!AnyOpenBefore(target))
                {
                    return;
                }
            }

            spin.SpinOnce();
        }
    }
}

/// <summary>One device access to host memory through the IOMMU; <see cref="ModelIommu.Unmap"/> waits for it.</summary>
internal readonly struct DeviceAccessScope : IDisposable
{
    private readonly ModelIommu _iommu;
    private readonly long _epoch;

    public DeviceAccessScope(ModelIommu iommu, long epoch)
    {
        _iommu = iommu;
        _epoch = epoch;
    }

    public void Dispose() => _iommu.EndDeviceAccess(_epoch);
}
