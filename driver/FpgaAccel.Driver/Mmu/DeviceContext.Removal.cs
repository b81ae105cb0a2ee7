using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// One removal (unpin or unregister) of one context, split into the steps of the removal protocol so that an
/// <see cref="AddressSpace"/> can run step 1 and 2 on every device before it runs step 3 on any (issue 15, item 4).
/// </summary>
internal sealed class ContextRemoval
{
    internal ContextRemoval(DeviceContext context, PageTableChange change, ulong first, ulong end, List<ulong>? present, long id)
    {
        Context = context;
        Change = change;
        First = first;
        End = end;
        Present = present;
        Id = id;
    }

    public DeviceContext Context { get; }

    /// <summary>What the table change needs invalidated.</summary>
    public PageTableChange Change { get; }

    /// <summary>A pin's pages [First, End), released whole; unused for a region.</summary>
    public ulong First { get; }

    public ulong End { get; }

    /// <summary>A region's pages that were present (pinned on demand); null for a pin.</summary>
    public List<ulong>? Present { get; }

    /// <summary>The pin or region id, for the log.</summary>
    public long Id { get; }

    /// <summary>Step 2's fence, when an invalidation was issued.</summary>
    public InvalidationFence? Fence { get; set; }

    /// <summary>Why step 2 could not issue the invalidation (the device failed), or null.</summary>
    public Exception? IssueFailure { get; set; }

    /// <summary>Step 3's result: true when the device can no longer reach the pages and they were unpinned.</summary>
    public bool Fenced { get; set; }
}

/// <summary>The removal protocol's steps, one context at a time (see the remarks of <see cref="DeviceContext"/>).</summary>
/// <remarks>
/// Several devices (<see cref="AddressSpace"/>, after HMM's batched mmu_notifier invalidation): a removal runs step 1
/// (<see cref="BeginUnpin"/> / <see cref="BeginUnregister"/>) on every attached device's context, then step 2
/// (<see cref="IssueInvalidation"/>) on every one, and only then step 3 and 4 (<see cref="CompleteRemoval"/>), so the
/// second device's invalidation runs while the first one's fence is waited on.
/// Claim: after the removal returns, no device DMAs through a translation of the removed pages, and no page is unpinned
/// from a device's IOMMU while that device may still reach it. Argument, per device d: (a) step 1 on d bumps d's
/// context start count under d's context lock before it clears any entry, so the single-device argument above holds
/// on d unchanged: a fault on d that looked the page up before it backs off (ReadRetry), a DROPIN it already sent is
/// killed by d's TLB_INV (spec 4.4), and d's faults wait (ReadBegin) while the removal is active on d; (b) d's pages
/// leave d's IOMMU (or are quarantined, R14) only in d's step 4, after d's own fence passed; (c) each device has its
/// own table, TLB, IOMMU domain and invalidation stream, so nothing one device does can revive a translation on
/// another; (d) the removal returns only after step 4 ran on every device. The order across devices (every step 2
/// before any step 3) costs nothing in correctness and lets the fences overlap. Failure: every fence wait is bounded
/// (DeviceTimeout, and a failed device ends it at once through its health); a device whose fence fails keeps its own
/// pages quarantined and the others are unaffected, so a lost or hung device delays a removal on the others by at most
/// its DeviceTimeout and never wedges it. The host's own page (the memory hold and the process charge) goes with the
/// last device's IOMMU unit, so the pages are unpinned once, after the last fence.
/// </remarks>
public sealed partial class DeviceContext
{
    /// <summary>A pin for an <see cref="AddressSpace"/>: not a user of its host buffer (the address space's pin is).</summary>
    internal PinnedBuffer PinForAddressSpace(nint address, ulong length, DmaAccess access) => PinCore(address, length, access, null);

    /// <summary>A region for an <see cref="AddressSpace"/>: not a user of its host buffer (the address space's region is).</summary>
    internal OnDemandRegion RegisterForAddressSpace(nint address, ulong length, DmaAccess access) => RegisterCore(address, length, access, null);

    /// <summary>Step 1 of an unpin: under the lock, the pin's translations cleared (or downgraded) in mirror and table.</summary>
    internal ContextRemoval BeginUnpin(PinnedBuffer pin)
    {
        ArgumentNullException.ThrowIfNull(pin);
        if (pin.Context != this)
        {
            throw new InvalidPinHandleException(pin.ToString(), $"it belongs to context {pin.Context.Index}, not {Index}");
        }

        ulong first, end;
        PageTableChange change;
        ScheduleHooks.At(SchedulePoint.RemovalBegun);
        lock (Lock)
        {
            if (!_pins.ContainsKey(pin.Id) || !pin.MarkUnpinned())
            {
                throw new InvalidPinHandleException(pin.ToString(), _disposed ? "its context was disposed" : "it was already unpinned");
            }

            _pins.Remove(pin.Id);
            (first, end) = Pages(pin.Address, pin.Length);
            BeginRemoval();
            ChangeUse(first, end, pin.Access, -1, 0);
            PublishMirror(first, end);

            // A removal needs no new table (every chunk with a translation keeps its level-3 table), so this cannot fail.
            change = _table.Apply(first, end, _desired);
        }

        pin.Buffer?.RemoveUser(pin);
        return new ContextRemoval(this, change, first, end, null, pin.Id);
    }

    /// <summary>Step 1 of an unregistration: under the lock, the region's entries cleared in mirror and table.</summary>
    internal ContextRemoval BeginUnregister(OnDemandRegion region)
    {
        ArgumentNullException.ThrowIfNull(region);
        if (region.Context != this)
        {
            throw new InvalidPinHandleException(region.ToString(), $"it belongs to context {region.Context.Index}, not {Index}");
        }

        var present = new List<ulong>();
        PageTableChange change;
        ScheduleHooks.At(SchedulePoint.RemovalBegun);
        lock (Lock)
        {
            if (!_regions.Remove(region.Id) || !region.MarkUnregistered())
            {
                throw new InvalidPinHandleException(region.ToString(), _disposed ? "its context was disposed" : "it was already unregistered");
            }

            BeginRemoval();
            for (var page = region.FirstPage; page < region.EndPage; page += PageTableFormat.PageSize)
            {
                if (_mirror.Lookup(page).Present)
                {
                    present.Add(page);
                }

                _mirror.Set(page, default);
            }

            change = _table.Apply(region.FirstPage, region.EndPage, _desired);
        }

        region.Buffer?.RemoveUser(region);
        return new ContextRemoval(this, change, 0, 0, present, region.Id);
    }

    /// <summary>Step 2: TLB_INV over what step 1 changed (outside the lock). Never throws: a failed device is remembered.</summary>
    internal void IssueInvalidation(ContextRemoval removal)
    {
        removal.Fence = IssueRemovalInvalidation(removal.Change, out var failure);
        removal.IssueFailure = failure;
    }

    /// <summary>
    /// Step 3 and 4: waits (bounded) for step 2's fence, ends the removal, then unpins the pages from this device's
    /// IOMMU, or quarantines them when the fence failed (R14). Returns whether it was fenced. Never throws for the device.
    /// </summary>
    internal bool CompleteRemoval(ContextRemoval removal)
    {
        var fenced = FinishRemovalFence(removal.Change, removal.Fence, removal.IssueFailure);
        removal.Fenced = fenced;
        if (removal.Present is not { } present)
        {
            if (fenced)
            {
                _mmu.Iommu.Release(removal.First, removal.End - removal.First);
            }
            else
            {
                _mmu.Quarantine(removal.First, removal.End - removal.First);
            }

            LogUnpinned(_mmu.Logger, removal.Id, Index);
            return fenced;
        }

        foreach (var page in present)
        {
            if (fenced)
            {
                _mmu.Iommu.Release(page, PageTableFormat.PageSize);
            }
            else
            {
                _mmu.Quarantine(page, PageTableFormat.PageSize);
            }

            _mmu.Pager.Forget();
        }

        Interlocked.Add(ref _presentOnDemand, -present.Count);
        return fenced;
    }

    // Step 2 of any removal: the invalidation, or the device's failure to take it.
    private InvalidationFence? IssueRemovalInvalidation(PageTableChange change, out Exception? failure)
    {
        ScheduleHooks.At(SchedulePoint.RemovalTableChanged);
        failure = null;
        if (!change.NeedsInvalidation)
        {
            return null;
        }

        try
        {
            return _mmu.Invalidator.InvalidateRange(Index, change.FirstDva, change.Pages);
        }
        catch (Exception ex) when (ex is FpgaAccelException or ObjectDisposedException or InvalidOperationException)
        {
            failure = ex;
            return null;
        }
    }

    // Step 3 of any removal: the fence wait (bounded by DeviceTimeout, ended at once by the device's failure), then the
    // removal ends on this context. False when the device failed to fence: the caller quarantines the pages.
    private bool FinishRemovalFence(PageTableChange change, InvalidationFence? fence, Exception? failure)
    {
        try
        {
            if (failure is not null)
            {
                LogRemovalUnfenced(_mmu.Logger, Index, change.FirstDva, failure);
                return false;
            }

            if (fence is { } issued)
            {
                _mmu.Invalidator.Wait(issued);
                ScheduleHooks.At(SchedulePoint.RemovalFenced);
            }

            return true;
        }
        catch (FpgaAccelException ex)
        {
            LogRemovalUnfenced(_mmu.Logger, Index, change.FirstDva, ex);
            return false;
        }
        finally
        {
            Interlocked.Decrement(ref _invalidationsActive);
        }
    }
}
