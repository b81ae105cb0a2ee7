using FpgaAccel.Driver.Faults;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver.Mmu;

/// <summary>Batched eviction (issue 15): the context's side of one reclaim batch of <see cref="OnDemandPager"/>.</summary>
/// <remarks>
/// One batch is the removal protocol of <see cref="DeviceContext"/> run once for many pages: (1) under the lock, one
/// <see cref="BeginRemoval"/>, then every victim page of this context still present on demand is cleared in the mirror
/// and the table; (2) outside it, one range invalidation over the pages cleared; the pager issues every context's
/// invalidation before it waits (3) once for the last fence; (4) <see cref="EndEviction"/> ends the removal and unpins.
/// The install protocol's claim holds as for a single removal: the start count is bumped under the lock before the
/// first entry is cleared, so a fault that looked a victim up before the batch backs off, and a DROPIN sent after
/// the lookup is killed by the batch's invalidation (spec 4.4). The invalidated range may cover pages between the
/// victims that were not evicted: over-invalidating only costs the device a walk (spec 4.3).
/// </remarks>
public sealed partial class DeviceContext
{
    /// <summary>
    /// Step (1) and (2) of a batch: clears this context's victims (entries of <paramref name="victims"/> that are this
    /// context) that are still present on demand, and issues one range invalidation over them. Entries of this context
    /// not evicted are marked <see cref="ulong.MaxValue"/> in <paramref name="pages"/>. Returns the fence to wait for,
    /// or null when nothing the device may cache changed. Always begins a removal: call <see cref="EndEviction"/> after.
    /// </summary>
    internal InvalidationFence? BeginEviction(ReadOnlySpan<DeviceContext?> victims, Span<ulong> pages)
    {
        ulong low = ulong.MaxValue, high = 0;
        lock (Lock)
        {
            BeginRemoval();
            for (var i = 0; i < victims.Length; i++)
            {
                if (!ReferenceEquals(victims[i], this))
                {
                    continue;
                }

                var page = pages[i];
                var e = _mirror.Lookup(page);
                if (_disposed || !e.OnDemand || !e.Present)
                {
                    pages[i] = ulong.MaxValue; // unregistered or evicted already: its place went with it
                    continue;
                }

                _mirror.Set(page, new MirrorEntry(e.Raw & ~(ulong)MirrorFlags.Present));

                // A removal needs no new table (C1), so this cannot fail.
                var change = _table.Apply(page, page + PageTableFormat.PageSize, _desired);
                if (change.NeedsInvalidation)
                {
                    low = Math.Min(low, change.FirstDva);
                    high = Math.Max(high, change.EndDva);
                }
            }
        }

        ScheduleHooks.At(SchedulePoint.RemovalTableChanged);
        return low < high ? _mmu.Invalidator.InvalidateRange(Index, low, (high - low) >> PageTableFormat.PageShift) : null;
    }

    /// <summary>Step (3): waits for a batch's last fence (every context of a device shares its invalidation stream).</summary>
    internal void WaitForFence(InvalidationFence fence)
    {
        _mmu.Invalidator.Wait(fence);
        ScheduleHooks.At(SchedulePoint.RemovalFenced);
    }

    /// <summary>
    /// Step (4): ends the removal <see cref="BeginEviction"/> began and unpins this context's evicted pages when
    /// <paramref name="fenced"/>. Without the fence nothing is unpinned (spec 4.3): the pages are quarantined, still
    /// mapped, until the device is known gone or reset (decision R14), as a single removal's are. Returns how many
    /// pages left the context. Never throws.
    /// </summary>
    internal int EndEviction(ReadOnlySpan<DeviceContext?> victims, ReadOnlySpan<ulong> pages, bool fenced)
    {
        Interlocked.Decrement(ref _invalidationsActive);
        var evicted = 0;
        for (var i = 0; i < victims.Length; i++)
        {
            if (ReferenceEquals(victims[i], this) && pages[i] != ulong.MaxValue)
            {
                if (fenced)
                {
                    _mmu.Iommu.Release(pages[i], PageTableFormat.PageSize);
                }
                else
                {
                    _mmu.Quarantine(pages[i], PageTableFormat.PageSize);
                }

                evicted++;
            }
        }

        Interlocked.Add(ref _presentOnDemand, -evicted);
        return evicted;
    }
}
