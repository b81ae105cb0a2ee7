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
/// <param name="Host">Host virtual address of the 4 KiB page.</param>
/// <param name="Access">What the device may do.</param>
/// <param name="Generation">Distinct for every map call, so a use of a mapping after its unmap is recognisable.</param>
internal readonly record struct IommuPage(nint Host, DmaAccess Access, long Generation);

/// <summary>
/// The model's platform IOMMU (spec 6), behaving like VFIO type1: IOVA pages map to host memory;
/// mapping a page pins it (counted against <see cref="ModelOptions.MemlockLimitBytes"/> like
/// RLIMIT_MEMLOCK); an access to an unmapped IOVA is refused and counted.
/// </summary>
/// <remarks>
/// <para>Concurrency: lookups (<see cref="TryTranslate"/>) are lock-free reads of a concurrent dictionary
/// and run on device engine threads while the driver maps and unmaps. Map and unmap serialize on
/// <see cref="_writeLock"/> so the overlap check and the insert are one step, as in type1.</para>
/// <para>Unmap is synchronous with the device, as type1's is (decision D29; the IOTLB flush drains translated
/// requests): when <see cref="Unmap"/> returns, no device access still touches the pages it removed,
/// so the caller may free them. Invariant: every device access that touches host memory does so
/// inside a <see cref="DeviceAccessScope"/> taken before it translates. Unmap removes the pages (no
/// new translation can find them), then opens a new access epoch and waits until no scope of an
/// earlier epoch is open. A scope is short (one page of one command, or one ring or table entry)
/// and never waits for anything while open, so the wait is bounded; device threads never block on
/// it (they take a short lock only).</para>
/// </remarks>
public sealed class ModelIommu
{
    private readonly ConcurrentDictionary<ulong, IommuPage> _pages = new();
    private readonly Lock _writeLock = new();
    private readonly ulong _memlockLimit;
    private readonly Lock _accessLock = new();
    private readonly Dictionary<long, int> _openScopes = [];
    private long _generation;
    private long _refused;
    private long _mapCalls;
    private long _unmapCalls;
    private long _accessEpoch;

    /// <summary>An empty IOMMU for an IOVA space of <paramref name="iovaBits"/> bits, pinning at most <paramref name="memlockLimitBytes"/>.</summary>
    internal ModelIommu(int iovaBits, ulong memlockLimitBytes)
    {
        _memlockLimit = memlockLimitBytes;
        var top = iovaBits >= 64 ? ulong.MaxValue : (1UL << iovaBits) - 1;

        // Like x86 VT-d under type1: IOVA 0 page and the MSI window 0xFEE00000..0xFEEFFFFF are reserved.
        Windows = [new IovaWindow(0x1000, 0xFEDF_FFFF), new IovaWindow(0xFEF0_0000, top)];
    }

    /// <summary>IOVA windows a mapping may use (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE).</summary>
    public IReadOnlyList<IovaWindow> Windows { get; }

    /// <summary>Pages mapped now.</summary>
    internal long MappedPages => _pages.Count;

    /// <summary>Bytes pinned now (mapped pages x 4 KiB).</summary>
    internal ulong PinnedBytes => (ulong)_pages.Count * PageTableFormat.PageSize;

    /// <summary>Device accesses the IOMMU refused.</summary>
    internal long RefusedAccesses => Interlocked.Read(ref _refused);

    /// <summary>Successful <see cref="Map"/> calls.</summary>
    internal long MapCalls => Interlocked.Read(ref _mapCalls);

    /// <summary><see cref="Unmap"/> calls.</summary>
    internal long UnmapCalls => Interlocked.Read(ref _unmapCalls);

    /// <summary>Maps <paramref name="length"/> bytes at <paramref name="iova"/> to host memory at <paramref name="host"/>.</summary>
    public void Map(ulong iova, nint host, ulong length, DmaAccess access)
    {
        const ulong page = PageTableFormat.PageSize;
        if (length == 0 || iova % page != 0 || (ulong)host % page != 0 || length % page != 0)
        {
            throw new IommuMappingException(
                $"IOMMU map of IOVA 0x{iova:X} host 0x{host:X} length 0x{length:X}: IOVA, host address and length must be non-zero multiples of 4 KiB.", "EINVAL");
        }

        if (access == DmaAccess.None)
        {
            throw new IommuMappingException($"IOMMU map of IOVA 0x{iova:X}: a mapping needs read or write access.", "EINVAL");
        }

        if (iova + length < iova || !InWindow(iova, length))
        {
            throw new IommuMappingException(
                $"IOMMU map of IOVA 0x{iova:X}..0x{iova + length - 1:X} is outside the valid IOVA ranges ({string.Join(", ", Windows.Select(w => $"0x{w.Start:X}-0x{w.End:X}"))}).", "EINVAL");
        }

        lock (_writeLock)
        {
            if ((ulong)_pages.Count * page + length > _memlockLimit)
            {
                throw new IommuMappingException(
                    $"IOMMU map of {length} bytes would pin {(ulong)_pages.Count * page + length} bytes, over the locked-memory limit of {_memlockLimit} bytes.", "ENOMEM");
            }

            for (var off = 0UL; off < length; off += page)
            {
                if (_pages.ContainsKey((iova + off) >> PageTableFormat.PageShift))
                {
                    throw new IommuMappingException($"IOMMU map: IOVA 0x{iova + off:X} is already mapped.", "EEXIST");
                }
            }

            var generation = Interlocked.Increment(ref _generation);
            for (var off = 0UL; off < length; off += page)
            {
                _pages[(iova + off) >> PageTableFormat.PageShift] = new IommuPage(host + (nint)off, access, generation);
            }

            Interlocked.Increment(ref _mapCalls);
        }
    }

    /// <summary>Unmaps every mapped page in the range; returns the bytes unmapped (type1 semantics).</summary>
    public ulong Unmap(ulong iova, ulong length)
    {
        const ulong page = PageTableFormat.PageSize;
        if (iova % page != 0 || length % page != 0)
        {
            throw new IommuMappingException($"IOMMU unmap of IOVA 0x{iova:X} length 0x{length:X}: both must be multiples of 4 KiB.", "EINVAL");
        }

        var unmapped = 0UL;
        lock (_writeLock)
        {
            for (var off = 0UL; off < length; off += page)
            {
                if (_pages.TryRemove((iova + off) >> PageTableFormat.PageShift, out _))
                {
                    unmapped += page;
                }
            }

            Interlocked.Increment(ref _unmapCalls);
        }

        if (unmapped != 0)
        {
            WaitForEarlierAccesses();
        }

        return unmapped;
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

    // Waits (on the unmapping thread, holding no lock) until every access that began before now ended.
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

    /// <summary>
    /// Translates a device access. Returns false, and counts a refusal, when the page is unmapped or
    /// lacks the access; the caller then applies spec 6 (data: DMA_ERROR; rings and tables: FATAL).
    /// </summary>
    internal bool TryTranslate(ulong iova, DmaAccess access, out IommuPage page)
    {
        if (_pages.TryGetValue(iova >> PageTableFormat.PageShift, out page) && (page.Access & access) == access)
        {
            page = page with { Host = page.Host + (nint)(iova & (PageTableFormat.PageSize - 1)) };
            return true;
        }

        Interlocked.Increment(ref _refused);
        page = default;
        return false;
    }

    /// <summary>Looks a page up without it counting as a device access (the model's oracle uses this).</summary>
    internal bool TryPeek(ulong iova, out IommuPage page) => _pages.TryGetValue(iova >> PageTableFormat.PageShift, out page);

    /// <summary>Drops every mapping (the container closed); returns once no device access touches them.</summary>
    internal void Clear()
    {
        lock (_writeLock)
        {
            _pages.Clear();
        }

        WaitForEarlierAccesses();
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
