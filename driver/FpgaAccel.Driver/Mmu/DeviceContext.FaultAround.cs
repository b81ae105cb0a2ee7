using FpgaAccel.Driver.Faults;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Mmu;

/// <summary>Fault-around and prefetch (issue 15): installing a run of on-demand pages at once.</summary>
/// <remarks>
/// Fault-around, after the kernel's do_fault_around: a fault in an on-demand page also maps the absent pages of the
/// same region around it, inside the window of <see cref="OnDemandRegion.FaultAroundPages"/> pages aligned to its own
/// size (16 pages: 64 KiB, the kernel's fault_around_bytes), nearest first in the direction of the access (the pages
/// after the fault, then those before it), as far as the budget has room without evicting (decision F1). The run is
/// contiguous and absent, so it is pinned with one IOMMU map call where the pages share a unit, and installed with one
/// page-table update; only the faulting page is dropped in (its tag is answered once); the device walks the table for
/// the others, which is what lets its later accesses to them hit without faulting.
///
/// Install order: the table first, then the mirror (<see cref="InstallRun"/>). Under the lock the run's pages are
/// marked as about to be present (<see cref="_installFirst"/>, <see cref="_installEnd"/>, <see cref="_installAbsent"/>)
/// so that <see cref="DesiredFlags"/> gives the table their leaves; then each mirror entry is replaced from absent to
/// present. So the lock-free fault path never sees a present mirror entry before the table grants it (C4), whichever
/// thread installs (the fault service, or a caller's <see cref="Prefetch"/>). Two installers of one page: each
/// replaces the entry only if it still reads absent, under the lock, so exactly one counts the page; the other gives
/// back its pin and its place.
/// </remarks>
public sealed partial class DeviceContext
{
    /// <summary>The largest fault-around window, in pages (256 KiB; beyond it, prefetch: decision F1).</summary>
    public const int MaxFaultAroundPages = 64;

    // The run InstallRun is installing (lock held): pages in [_installFirst, _installEnd) whose mirror entry is
    // _installAbsent read as present in DesiredFlags. Empty (0, 0) otherwise.
    private ulong _installFirst;
    private ulong _installEnd;
    private ulong _installAbsent;
    private long _faultAroundPages;
    private long _prefetchedPages;

    /// <summary>Pages mapped by fault-around beyond the faulting pages, in this context since it was created.</summary>
    public long FaultAroundPages => Interlocked.Read(ref _faultAroundPages);

    /// <summary>Pages mapped by <see cref="OnDemandRegion.Prefetch"/> in this context since it was created.</summary>
    public long PrefetchedPages => Interlocked.Read(ref _prefetchedPages);

    /// <summary>
    /// The IOPF path for an absent on-demand page (lock-free until the install): chooses the fault-around run, takes its
    /// places, pins it, installs it. True with the faulting page's leaf; false when a removal started since
    /// <paramref name="started"/> or another installer took the faulting page (everything undone: look again).
    /// Allocates nothing.
    /// </summary>
    private bool InstallAround(ulong page, MirrorEntry absent, int queue, long started, out PageTableEntry leaf)
    {
        leaf = default;

        // The absent run around the page inside its aligned window: same region, same entry (lock-free lookups; the
        // install re-checks every page under the lock).
        var window = (ulong)absent.FaultAroundPages * PageTableFormat.PageSize;
        var windowFirst = page & ~(window - 1);
        var forward = 1UL;
        while (page + (forward * PageTableFormat.PageSize) < windowFirst + window && _mirror.Lookup(page + (forward * PageTableFormat.PageSize)).Raw == absent.Raw)
        {
            forward++;
        }

        var backward = 0UL;
        while (page - ((backward + 1) * PageTableFormat.PageSize) >= windowFirst && page >= (backward + 1) * PageTableFormat.PageSize
            && _mirror.Lookup(page - ((backward + 1) * PageTableFormat.PageSize)).Raw == absent.Raw)
        {
            backward++;
        }

        // Places within the budget: the faulting page's always; neighbours forward first, as far as there is room.
        var granted = (ulong)_mmu.Pager.Reserve(queue, (int)(forward + backward));
        _mmu.FaultTrace?.Mark(FaultStage.Reserve);
        forward = Math.Min(forward, granted);
        backward = Math.Min(backward, granted - forward);
        var first = page - (backward * PageTableFormat.PageSize);
        var end = page + (forward * PageTableFormat.PageSize);
        try
        {
            AcquireRun(ref first, ref end, page, queue);
        }
        catch
        {
            _mmu.Pager.Forget((int)granted);
            throw;
        }

        if (granted > (end - first) >> PageTableFormat.PageShift)
        {
            _mmu.Pager.Forget((int)(granted - ((end - first) >> PageTableFormat.PageShift))); // fell back to the page alone
        }

        ScheduleHooks.At(SchedulePoint.FaultPagePinned);
        _mmu.FaultTrace?.Mark(FaultStage.Pin);
        Span<ulong> installed = stackalloc ulong[(MaxFaultAroundPages + 63) / 64];
        installed.Clear();
        if (!InstallRun(first, end, absent, started, installed))
        {
            return false;
        }

        _mmu.FaultTrace?.Mark(FaultStage.Install);

        // Neighbours first, then the faulting page: the page an access needs is the youngest, and the only one the pager
        // protects for the queue (a neighbour is not needed by a stalled access).
        var mine = false;
        var count = 0L;
        for (var p = first; p < end; p += PageTableFormat.PageSize)
        {
            var i = (int)((p - first) >> PageTableFormat.PageShift);
            if ((installed[i >> 6] & (1UL << (i & 63))) == 0)
            {
                continue;
            }

            if (p == page)
            {
                mine = true;
                continue;
            }

            count++;
            _mmu.Pager.Record(this, p, -1);
        }

        Interlocked.Add(ref _faultAroundPages, count);
        if (!mine)
        {
            return false; // another installer (a prefetch) mapped the faulting page: its entry is present now
        }

        _mmu.Pager.Record(this, page, queue);
        _mmu.FaultTrace?.Mark(FaultStage.Record);
        leaf = LeafFor(page, new MirrorEntry(absent.Raw | (ulong)MirrorFlags.Present));
        return true;
    }

    // Pins [first, end) in one call; when the IOMMU refuses the run, falls back to the faulting page alone (giving back
    // least recently faulted pages for it at the locked-memory limit: AcquireOnDemandPage), and narrows the run to it.
    private void AcquireRun(ref ulong first, ref ulong end, ulong page, int queue)
    {
        if (end - first > PageTableFormat.PageSize)
        {
            try
            {
                _mmu.Iommu.Acquire(first, end - first);
                return;
            }
            catch (FpgaAccelException ex) when (ex is not DeviceLostException)
            {
                // The neighbours are optional: a run the IOMMU refuses (the locked-memory limit, a page it cannot pin)
                // does not fail the fault, which maps its own page alone as before fault-around.
                (first, end) = (page, page + PageTableFormat.PageSize);
            }
        }

        AcquireOnDemandPage(page, queue);
    }

    // The install protocol for a run of pinned pages [first, end) whose mirror entries read `absent` at the lookup:
    // under the lock, unless a removal started since `started`, the table first (every page of the run still absent
    // gets its leaf, in one Apply), then the mirror (absent to present, page by page). Bit i of `installed` is set for
    // each page this call made present. Pins and places of pages it did not install are given back. False when a
    // removal started (nothing installed, everything given back). Throws, with everything given back, when a table
    // cannot be allocated.
    private bool InstallRun(ulong first, ulong end, MirrorEntry absent, long started, Span<ulong> installed)
    {
        var present = new MirrorEntry(absent.Raw | (ulong)MirrorFlags.Present);
        var done = false;
        var count = 0;
        PageTableChange change = default;
        try
        {
            lock (Lock)
            {
                if (!ReadRetry(started))
                {
                    (_installFirst, _installEnd, _installAbsent) = (first, end, absent.Raw);
                    try
                    {
                        change = _table.Apply(first, end, _desired);
                    }
                    finally
                    {
                        (_installFirst, _installEnd, _installAbsent) = (0, 0, 0);
                    }

                    for (var p = first; p < end; p += PageTableFormat.PageSize)
                    {
                        if (_mirror.Replace(p, absent, present))
                        {
                            var i = (int)((p - first) >> PageTableFormat.PageShift);
                            installed[i >> 6] |= 1UL << (i & 63);
                            count++;
                        }
                    }

                    done = true;
                }
            }
        }
        catch
        {
            _mmu.Iommu.Release(first, end - first);
            _mmu.Pager.Forget((int)((end - first) >> PageTableFormat.PageShift));
            throw;
        }

        // Give back what this call did not install: everything when a removal intervened, else the pages another
        // installer took first (rare). One release per page: the run's pins were taken in one call.
        for (var p = first; p < end; p += PageTableFormat.PageSize)
        {
            var i = (int)((p - first) >> PageTableFormat.PageShift);
            if (!done || (installed[i >> 6] & (1UL << (i & 63))) == 0)
            {
                _mmu.Iommu.Release(p, PageTableFormat.PageSize);
                _mmu.Pager.Forget();
            }
        }

        if (!done)
        {
            return false;
        }

        // On-demand pages never join a 2 MiB leaf (C3), so an install neither removes nor promotes; kept for safety.
        SettleAddition(change);
        Interlocked.Add(ref _presentOnDemand, count);
        return true;
    }

    /// <summary>
    /// Maps the absent pages of [<paramref name="offset"/>, + <paramref name="length"/>) of <paramref name="region"/>
    /// before the device touches them (see <see cref="OnDemandRegion.Prefetch"/>). Returns the pages it mapped.
    /// </summary>
    internal int Prefetch(OnDemandRegion region, ulong offset, ulong length)
    {
        if (offset > region.Length || length == 0 || length > region.Length - offset)
        {
            throw new PrefetchRejectedException(region.ToString(), offset, length,
                $"the range must lie inside the region's {region.Length} bytes and hold at least one byte",
                "Prefetch an offset and length within the region (offset + length <= Length).");
        }

        var first = ((ulong)region.Address + offset) & ~(PageTableFormat.PageSize - 1);
        var end = ((ulong)region.Address + offset + length + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1);
        var pages = (end - first) >> PageTableFormat.PageShift;
        var budget = _mmu.Pager.Budget;
        if (pages > (ulong)budget)
        {
            throw new PrefetchRejectedException(region.ToString(), offset, length,
                $"it covers {pages} pages and the on-demand budget holds {budget} (prefetched pages count against it, and all of them must be present at once)",
                $"Prefetch at most {budget} pages ({(ulong)budget * PageTableFormat.PageSize} bytes) at a time, or raise the budget (FpgaDeviceOptions.OnDemandBudgetPages, FpgaDevice.SetOnDemandBudget).");
        }

        var mapped = 0;
        var spin = default(SpinWait);
        var installed = new ulong[(pages + 63) / 64];
        for (var at = first; at < end;)
        {
            var started = ReadBegin(ref spin);
            var absent = _mirror.Lookup(at);
            if (!region.IsRegistered || _disposed)
            {
                throw new InvalidPinHandleException(region.ToString(), _disposed ? "its context was disposed" : "it was unregistered");
            }

            if (absent.Region != region.Id || absent.Present)
            {
                at += PageTableFormat.PageSize; // present already (faulted in, or prefetched)
                continue;
            }

            var runEnd = at + PageTableFormat.PageSize;
            while (runEnd < end && _mirror.Lookup(runEnd).Raw == absent.Raw)
            {
                runEnd += PageTableFormat.PageSize;
            }

            var wanted = (int)((runEnd - at) >> PageTableFormat.PageShift);
            var granted = _mmu.Pager.ReserveForPrefetch(wanted);
            if (granted == 0)
            {
                throw new PrefetchRejectedException(region.ToString(), offset, length,
                    $"no place in the on-demand budget ({budget} pages) could be freed: every present page is one a stalled access needs",
                    "Prefetch again once the commands in flight have completed, or raise the budget.");
            }

            runEnd = at + ((ulong)granted * PageTableFormat.PageSize);
            try
            {
                _mmu.Iommu.Acquire(at, runEnd - at);
            }
            catch
            {
                _mmu.Pager.Forget(granted);
                throw;
            }

            Array.Clear(installed);
            if (!InstallRun(at, runEnd, absent, started, installed))
            {
                continue; // a removal intervened: look this run up again
            }

            for (var p = at; p < runEnd; p += PageTableFormat.PageSize)
            {
                var i = (int)((p - at) >> PageTableFormat.PageShift);
                if ((installed[i >> 6] & (1UL << (i & 63))) != 0)
                {
                    _mmu.Pager.Record(this, p, -1);
                    mapped++;
                }
            }

            at = runEnd;
        }

        Interlocked.Add(ref _prefetchedPages, mapped);
        return mapped;
    }

    /// <summary>Rewrites the fault-around window of every page of <paramref name="region"/> (present or not) under the lock.</summary>
    internal void SetFaultAround(OnDemandRegion region, int log2)
    {
        lock (Lock)
        {
            if (!region.IsRegistered || _disposed)
            {
                throw new InvalidPinHandleException(region.ToString(), _disposed ? "its context was disposed" : "it was unregistered");
            }

            region.SetFaultAroundLog2(log2);
            for (var page = region.FirstPage; page < region.EndPage; page += PageTableFormat.PageSize)
            {
                var e = _mirror.Lookup(page);
                var next = MirrorEntry.Create(e.Region, e.Flags, log2);
                _mirror.Set(page, next);
            }
        }
    }
}
