using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Dma;

/// <summary>
/// The device's IOMMU mappings, reference-counted per 4 KiB host page: a page is mapped (pinned and
/// charged) when its first user arrives and unmapped when its last user leaves. Every user (a pin in
/// any context, a ring, a page table) acquires and releases whole pages.
/// </summary>
/// <remarks>
/// IOMMU mappings are always read+write for the device, as DPDK and SPDK map them: per-context access
/// is enforced by the device page table (spec 4.1), and one mapping per page keeps overlapping users
/// simple. So memory the process itself cannot write (a PROT_READ mapping) cannot be pinned.
/// Invariant: _refs[page] == number of users holding the page, and the page is mapped in the IOMMU
/// exactly while that number is above zero. Argument: both change only under _lock, and the backend
/// call that maps (unmaps) a run happens inside the same critical section as the 0->1 (1->0) step.
/// Callers release only after the device can no longer reach the pages (the spec 4.3 fence).
/// </remarks>
internal sealed class IommuMappings
{
    private readonly IDeviceBackend _backend;
    private readonly IovaLayout _layout;
    private readonly PinAccountant _accountant;
    private readonly Dictionary<ulong, int> _refs = [];
    private readonly Lock _lock = new();

    public IommuMappings(IDeviceBackend backend, IovaLayout layout, PinAccountant accountant)
    {
        _backend = backend;
        _layout = layout;
        _accountant = accountant;
    }

    public IovaLayout Layout => _layout;

    /// <summary>Pages mapped now.</summary>
    public int MappedPages
    {
        get
        {
            lock (_lock)
            {
                return _refs.Count;
            }
        }
    }

    /// <summary>Adds a user to every page of [host, host + length) (page-aligned), mapping pages that had none.</summary>
    public void Acquire(ulong host, ulong length)
    {
        const ulong page = PageTableFormat.PageSize;
        lock (_lock)
        {
            var newPages = 0UL;
            for (var a = host; a < host + length; a += page)
            {
                if (!_refs.ContainsKey(a >> PageTableFormat.PageShift))
                {
                    newPages++;
                }
            }

            _accountant.Charge(newPages * page);
            var mappedUpTo = host;
            try
            {
                // Map maximal runs of pages that have no user yet: one IOMMU call a run.
                var a = host;
                while (a < host + length)
                {
                    if (_refs.ContainsKey(a >> PageTableFormat.PageShift))
                    {
                        a += page;
                        mappedUpTo = a;
                        continue;
                    }

                    var runEnd = a;
                    while (runEnd < host + length && !_refs.ContainsKey(runEnd >> PageTableFormat.PageShift))
                    {
                        runEnd += page;
                    }

                    _backend.MapDma(_layout.IovaOf(a), (nint)a, runEnd - a, DmaAccess.ReadWrite);
                    for (var p = a; p < runEnd; p += page)
                    {
                        _refs[p >> PageTableFormat.PageShift] = 0;
                    }

                    a = runEnd;
                    mappedUpTo = a;
                }
            }
            catch
            {
                // Undo the runs mapped by this call (their count is still 0), then the charge.
                for (var p = host; p < mappedUpTo; p += page)
                {
                    if (_refs.TryGetValue(p >> PageTableFormat.PageShift, out var n) && n == 0)
                    {
                        _refs.Remove(p >> PageTableFormat.PageShift);
                        _backend.UnmapDma(_layout.IovaOf(p), page);
                    }
                }

                _accountant.Release(newPages * page);
                throw;
            }

            for (var a = host; a < host + length; a += page)
            {
                _refs[a >> PageTableFormat.PageShift]++;
            }
        }
    }

    /// <summary>Removes a user from every page of the range; pages left with none are unmapped (unpinned).</summary>
    public void Release(ulong host, ulong length)
    {
        const ulong page = PageTableFormat.PageSize;
        lock (_lock)
        {
            // Each page is dropped exactly once; consecutive pages that reach zero are unmapped as one run.
            var freed = 0UL;
            var runStart = 0UL;
            var inRun = false;
            for (var a = host; a < host + length; a += page)
            {
                if (Drop(a >> PageTableFormat.PageShift))
                {
                    if (!inRun)
                    {
                        runStart = a;
                        inRun = true;
                    }

                    continue;
                }

                if (inRun)
                {
                    _backend.UnmapDma(_layout.IovaOf(runStart), a - runStart);
                    freed += a - runStart;
                    inRun = false;
                }
            }

            if (inRun)
            {
                _backend.UnmapDma(_layout.IovaOf(runStart), host + length - runStart);
                freed += host + length - runStart;
            }

            _accountant.Release(freed);
        }
    }

    // Decrements the page's count; true when it reached zero (the page must be unmapped).
    private bool Drop(ulong pageNumber)
    {
        if (!_refs.TryGetValue(pageNumber, out var n))
        {
            throw new InvalidOperationException($"IOMMU page 0x{pageNumber << PageTableFormat.PageShift:X} released without being acquired.");
        }

        if (n == 1)
        {
            _refs.Remove(pageNumber);
            return true;
        }

        _refs[pageNumber] = n - 1;
        return false;
    }
}
