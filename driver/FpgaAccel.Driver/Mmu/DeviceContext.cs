using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// One hardware context: a device page table mirroring part of this process's address space
/// (DVA = the process's own virtual address, spec 4), the pins and on-demand regions that populate
/// it, and the software mirror the fault service looks addresses up in.
/// </summary>
/// <remarks>
/// Overlapping pins: each 4 KiB page keeps a count of the pins that let the device read it and of
/// those that let it write it. The page translates while any pin covers it, with the union of their
/// access (a write pin also grants read: spec 4.1 makes W without R malformed). Adding access needs
/// no invalidation (spec 4.1). On-demand regions may not overlap pins or each other.
///
/// Removal protocol (unpin, unregister, eviction), after mmu_interval_read_begin/retry:
///   1. under the lock: <see cref="_invalidationsStarted"/>++ and <see cref="_invalidationsActive"/>++,
///      then clear or downgrade mirror entries and device PTEs;
///   2. outside the lock: TLB_INV, then wait for the INV_DONE fence (spec 4.3);
///   3. under the lock: free unlinked tables, <see cref="_invalidationsActive"/>--;
///   4. release the IOMMU mapping (unpin the pages).
/// Install protocol (the fault service, <see cref="ServiceFault"/>): read <see cref="_invalidationsStarted"/>
/// (waiting while any removal is active), look the page up without a lock, do the slow work (IOMMU
/// map), then under the lock install only if no removal started since the read; else undo and retry.
/// Claim: no translation looked up before a removal started is installed after it. Argument: the
/// removal bumps the start count under the lock before it touches any entry; the installer checks the
/// count under the same lock before it writes; so either the installer wrote first (and the removal,
/// which comes after in lock order, clears what it wrote and fences it), or the installer sees the
/// bumped count and backs off. The DROPIN the installer then sends after unlocking can only race with
/// a removal that started later, and that removal's TLB_INV kills the fault's tag, so the device
/// ignores the DROPIN and walks the (now cleared) table instead: the GRU kill rule (spec 4.4).
/// Lock order: context lock, then IOMMU mappings; never a context lock while waiting for a fence.
/// Several devices mirroring one address space (<see cref="AddressSpace"/>): the same protocol on each device's context, with
/// step 2 run on every device before step 3 on any; the argument for several devices is in DeviceContext.Removal.cs.
///
/// The fault path never reads the device page table without the lock (issue 11, defect 3): the leaf it drops in is
/// computed from the mirror entry alone, IOVA = host address + the layout's fixed delta and the permission the entry
/// records. Claim: that leaf never grants more than the table. Argument: the mirror and the table change only under
/// the lock and by the same rule (<see cref="DesiredFlags"/>); an addition (pin, install) writes the table first and
/// the mirror after, so a lock-free reader that sees a permission in the mirror finds the table already granting it;
/// a removal bumps the start count before it touches either, so a reader that raced it fails
/// <see cref="ReadRetry"/> and looks again (and a DROPIN sent after that check is killed by the removal's
/// invalidation, as above). The mirror's own tables are managed arrays that are never freed under a reader.
///
/// Failure atomicity (defect 5): pin, register and install change the use counts, the table and the mirror only
/// after every allocation that can fail has succeeded (<see cref="PageTable.Apply"/> allocates first, then
/// writes), and undo the counts and the IOMMU mapping if it throws, so a failed call leaves everything as it was.
/// </remarks>
public sealed partial class DeviceContext : IDisposable
{
    private readonly DeviceMmu _mmu;
    private readonly PageTable _table;
    private readonly AddressMirror _mirror = new();
    private readonly Dictionary<long, PinnedBuffer> _pins = [];
    private readonly Dictionary<uint, OnDemandRegion> _regions = [];
    private readonly Dictionary<ulong, PageUse> _pages = [];
    private readonly DesiredTranslation _desired;
    private long _invalidationsStarted;
    private int _invalidationsActive;
    private int _presentOnDemand;
    private volatile bool _disposed;

    internal DeviceContext(DeviceMmu mmu, int index, ContextOptions options)
    {
        _mmu = mmu;
        Index = index;
        NoFault = options.NoFault;
        _desired = DesiredFlags;
        _table = new PageTable(mmu.Iommu, mmu.Capabilities.Huge2M);
        try
        {
            var backend = mmu.Backend;
            backend.Write64(Fa1Registers.Context(index, Fa1Registers.CtxRoot), ContextRoot.Create(_table.RootIova, valid: true).Raw);
            var ctrl = ContextControl.Enable | (NoFault ? ContextControl.NoFault : ContextControl.None);
            backend.Write64(Fa1Registers.Context(index, Fa1Registers.CtxCtrl), (ulong)ctrl);
        }
        catch
        {
            _table.Dispose();
            throw;
        }

        LogCreated(mmu.Logger, index, NoFault);
    }

    /// <summary>The hardware context number (descriptor ctx field).</summary>
    public int Index { get; }

    /// <summary>True for a context whose faults abort at once (spec 4.2 NOFAULT).</summary>
    public bool NoFault { get; }

    /// <summary>True once disposed: its pins and regions are gone and its hardware context is free for another.</summary>
    public bool IsDisposed => _disposed;

    /// <summary>Live pins.</summary>
    public int PinCount
    {
        get
        {
            lock (Lock)
            {
                return _pins.Count;
            }
        }
    }

    /// <summary>Pages pinned long-term in this context now.</summary>
    public int MappedPages
    {
        get
        {
            lock (Lock)
            {
                return _pages.Count;
            }
        }
    }

    /// <summary>On-demand pages present (faulted in, not yet evicted) now.</summary>
    public int PresentOnDemandPages => Volatile.Read(ref _presentOnDemand);

    /// <summary>Faults the device counted in this context (CTX_FAULTS).</summary>
    public ulong DeviceFaults => _mmu.Backend.Read64(Fa1Registers.Context(Index, Fa1Registers.CtxFaults));

    /// <summary>The mirror the fault service walks.</summary>
    internal AddressMirror Mirror => _mirror;

    /// <summary>Device page-table tables allocated (root included).</summary>
    internal int PageTableTables => _table.TableCount;

    private Lock Lock => _mirror.Lock;

    /// <summary>Pins a <see cref="HostBuffer"/> whole.</summary>
    public PinnedBuffer Pin(HostBuffer buffer, DmaAccess access)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return buffer.AddUser(buffer.Start, buffer.Length, () => PinCore(buffer.Start, buffer.Length, access, buffer));
    }

    /// <summary>
    /// Pins [address, address + length) for the device with <paramref name="access"/>: maps its pages in
    /// the platform IOMMU (pinning them, charged against the locked-memory limit) and in this context's
    /// page table with DVA = address. Returns the handle that names the pin.
    /// </summary>
    public PinnedBuffer Pin(nint address, ulong length, DmaAccess access)
    {
        var owner = OwningBuffer(address, length);
        return owner is null
            ? PinCore(address, length, access, null)
            : owner.AddUser(address, length, () => PinCore(address, length, access, owner));
    }

    private PinnedBuffer PinCore(nint address, ulong length, DmaAccess access, HostBuffer? owner)
    {
        ScheduleHooks.At(SchedulePoint.AddBegun);
        var (first, end) = Validate(address, length, access);
        _mmu.Iommu.Acquire(first, end - first);
        PinnedBuffer pin;
        PageTableChange change;
        try
        {
            lock (Lock)
            {
                ThrowIfDisposed();
                ThrowIfOverlapsRegion(first, end, address, length);
                pin = new PinnedBuffer(this, _mmu.NextPinId(), address, length, access, owner);
                ChangeUse(first, end, access, +1, (uint)pin.Id);
                try
                {
                    change = _table.Apply(first, end, _desired);
                }
                catch
                {
                    // Apply changed nothing: undo the counts, and the pin never existed.
                    ChangeUse(first, end, access, -1, 0);
                    throw;
                }

                // The table first, then the mirror: the fault path's lock-free reader never sees more than the table grants.
                PublishMirror(first, end);
                _pins.Add(pin.Id, pin);
            }
        }
        catch
        {
            _mmu.Iommu.Release(first, end - first);
            throw;
        }

        // Adding removes no translation, but a chunk this pin completed became a 2 MiB leaf: the walk cache may keep
        // the pointer to its level-3 table (kept up to date, so it still translates right); invalidate it so no
        // cached entry points at a table the root no longer reaches (defect 1).
        ScheduleHooks.At(SchedulePoint.PinPublished);
        SettleAddition(change);
        LogPinned(_mmu.Logger, pin.Id, Index, address, length, access);
        return pin;
    }

    /// <summary>
    /// Unpins: removes the translations only this pin provided, invalidates them, waits for the fence,
    /// then releases the pages from the IOMMU. After it returns the device cannot reach the pages
    /// through this pin. Throws for a handle that is not live in this context.
    /// </summary>
    public void Unpin(PinnedBuffer pin)
    {
        var removal = BeginUnpin(pin);
        IssueInvalidation(removal);
        CompleteRemoval(removal);
    }

    /// <summary>
    /// Registers [address, address + length) for on-demand use: nothing is pinned now; the device's
    /// first touch of each page raises a fault that pins it (IOPF). The range may not overlap a pin or
    /// another region of this context.
    /// </summary>
    public OnDemandRegion RegisterOnDemand(nint address, ulong length, DmaAccess access)
    {
        var owner = OwningBuffer(address, length);
        return owner is null
            ? RegisterCore(address, length, access, null)
            : owner.AddUser(address, length, () => RegisterCore(address, length, access, owner));
    }

    private OnDemandRegion RegisterCore(nint address, ulong length, DmaAccess access, HostBuffer? owner)
    {
        ScheduleHooks.At(SchedulePoint.AddBegun);
        var (first, end) = Validate(address, length, access);
        lock (Lock)
        {
            ThrowIfDisposed();
            ThrowIfOverlapsRegion(first, end, address, length);
            for (var page = first; page < end; page += PageTableFormat.PageSize)
            {
                if (_pages.ContainsKey(page >> PageTableFormat.PageShift))
                {
                    throw new PinRejectedException(address, length, $"page 0x{page:X} is pinned in this context", "Register on-demand regions apart from pinned buffers.");
                }
            }

            var region = new OnDemandRegion(this, (uint)_mmu.NextPinId(), first, end, address, length, access, owner, _mmu.FaultAroundLog2);
            var absent = region.AbsentEntry;
            var set = first;
            try
            {
                for (; set < end; set += PageTableFormat.PageSize)
                {
                    _mirror.Set(set, absent);
                }

                _regions.Add(region.Id, region);
            }
            catch
            {
                // Out of memory for a mirror table: the pages set so far go back to nothing.
                for (var page = first; page < set; page += PageTableFormat.PageSize)
                {
                    _mirror.Set(page, default);
                }

                throw;
            }

            return region;
        }
    }

    /// <summary>Registers a <see cref="HostBuffer"/> whole for on-demand use.</summary>
    public OnDemandRegion RegisterOnDemand(HostBuffer buffer, DmaAccess access)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return buffer.AddUser(buffer.Start, buffer.Length, () => RegisterCore(buffer.Start, buffer.Length, access, buffer));
    }

    /// <summary>
    /// Unregisters an on-demand region: its present pages are cleared, invalidated, fenced, and only
    /// then unpinned. After it returns the device cannot reach the region.
    /// </summary>
    public void Unregister(OnDemandRegion region)
    {
        var removal = BeginUnregister(region);
        IssueInvalidation(removal);
        CompleteRemoval(removal);
    }

    /// <summary>
    /// Disables the context, invalidates it, waits for the fence, and releases every pin, region and table.
    /// </summary>
    public void Dispose()
    {
        List<(ulong First, ulong End)> release;
        (HostBuffer? Buffer, IDisposable User)[] buffers;
        int onDemand;
        lock (Lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            BeginRemoval();
            release = [];
            foreach (var pin in _pins.Values)
            {
                pin.MarkUnpinned();
                var (first, end) = Pages(pin.Address, pin.Length);
                release.Add((first, end));
                for (var page = first; page < end; page += PageTableFormat.PageSize)
                {
                    _mirror.Set(page, default);
                }
            }

            onDemand = 0;
            foreach (var region in _regions.Values)
            {
                region.MarkUnregistered();
                for (var page = region.FirstPage; page < region.EndPage; page += PageTableFormat.PageSize)
                {
                    if (_mirror.Lookup(page).Present)
                    {
                        release.Add((page, page + PageTableFormat.PageSize));
                        onDemand++;
                    }

                    _mirror.Set(page, default);
                }
            }

            buffers = [.. _pins.Values.Select(p => (p.Buffer, (IDisposable)p)), .. _regions.Values.Select(r => (r.Buffer, (IDisposable)r))];
            _pins.Clear();
            _regions.Clear();
            _pages.Clear();
        }

        foreach (var (buffer, user) in buffers)
        {
            buffer?.RemoveUser(user);
        }

        try
        {
            var backend = _mmu.Backend;
            backend.Write64(Fa1Registers.Context(Index, Fa1Registers.CtxCtrl), 0);
            backend.Write64(Fa1Registers.Context(Index, Fa1Registers.CtxRoot), 0);
            _mmu.Invalidator.Wait(_mmu.Invalidator.InvalidateContext(Index));
        }
        catch (FpgaAccelException ex)
        {
            // The device is gone or hung: its DMA cannot be fenced. Releasing the IOMMU mappings below
            // makes the platform IOMMU refuse whatever it still tries.
            LogDisposeUnfenced(_mmu.Logger, Index, ex);
        }
        finally
        {
            lock (Lock)
            {
                _table.Dispose();
                Interlocked.Decrement(ref _invalidationsActive);
            }

            foreach (var (first, end) in release)
            {
                _mmu.Iommu.Release(first, end - first);
            }

            for (var i = 0; i < onDemand; i++)
            {
                _mmu.Pager.Forget();
            }

            Interlocked.Add(ref _presentOnDemand, -onDemand);
            _mmu.Release(this);
        }
    }

    internal void UnpinIfPinned(PinnedBuffer pin)
    {
        bool live;
        lock (Lock)
        {
            live = _pins.ContainsKey(pin.Id);
        }

        if (live)
        {
            try
            {
                Unpin(pin);
            }
            catch (InvalidPinHandleException)
            {
                // Another thread unpinned it between the check and the call: the outcome is the same.
            }
        }
    }

    internal void UnregisterIfRegistered(OnDemandRegion region)
    {
        try
        {
            Unregister(region);
        }
        catch (InvalidPinHandleException)
        {
            // Already unregistered, by this or another thread.
        }
    }

    /// <summary>
    /// The fault service's path for one fault at <paramref name="dva"/> (spec 4.4). Looks the page up
    /// without a lock; for an on-demand page not present, pins it and installs the leaf under the
    /// install protocol above; <paramref name="queue"/> is the queue whose access faulted (the pager keeps the page its
    /// stalled access needs). On <see cref="FaultOutcome.Resolved"/>, <paramref name="leaf"/> is the 4 KiB
    /// entry to drop in for the faulting page, computed from the mirror (see the remarks). Allocates nothing in
    /// steady state. Throws, having undone everything, when the page cannot be pinned or its table built.
    /// </summary>
    internal FaultOutcome ServiceFault(ulong dva, bool write, int queue, out PageTableEntry leaf, out uint region)
    {
        var page = dva & ~(PageTableFormat.PageSize - 1);
        var spin = default(SpinWait);
        while (true)
        {
            leaf = default;
            var started = ReadBegin(ref spin);
            var entry = _mirror.Lookup(dva);
            region = entry.Region;
            ScheduleHooks.At(SchedulePoint.FaultLookedUp);
            _mmu.FaultTrace?.Mark(FaultStage.Lookup);
            if (_disposed || !entry.Allows(write))
            {
                return FaultOutcome.Abort;
            }

            if (entry.Present)
            {
                // Pinned, or faulted in already (a lazily upgraded permission shows as a stale TLB entry; the walk or
                // the dropin fixes it without invalidation). No table walk here: the leaf follows from the entry.
                leaf = LeafFor(page, entry);
                if (!ReadRetry(started))
                {
                    return FaultOutcome.Resolved;
                }

                spin.SpinOnce(sleep1Threshold: -1);
                continue;
            }

            // IOPF: pin the page and the absent pages around it (fault-around, within the budget), install them in one
            // page-table update, and drop in the faulting page's leaf (DeviceContext.FaultAround.cs).
            if (InstallAround(page, entry, queue, started, out leaf))
            {
                return FaultOutcome.Resolved;
            }

            // A removal started (or the entry changed) since the lookup: everything was undone; look again.
        }
    }

    /// <summary>
    /// Evicts one on-demand page under budget pressure: clear, invalidate, fence, unpin. Returns false
    /// when the page is no longer present (unregistered or evicted already).
    /// </summary>
    internal bool Evict(ulong page)
    {
        PageTableChange change;
        lock (Lock)
        {
            var e = _mirror.Lookup(page);
            if (_disposed || !e.OnDemand || !e.Present)
            {
                return false;
            }

            BeginRemoval();
            _mirror.Set(page, new MirrorEntry(e.Raw & ~(ulong)MirrorFlags.Present));
            change = _table.Apply(page, page + PageTableFormat.PageSize, _desired);
        }

        if (EndRemoval(change))
        {
            _mmu.Iommu.Release(page, PageTableFormat.PageSize);
        }
        else
        {
            _mmu.Quarantine(page, PageTableFormat.PageSize);
        }

        Interlocked.Decrement(ref _presentOnDemand);
        return true;
    }

    /// <summary>The leaf translating <paramref name="dva"/> now, as the device would walk it (for tests and tools).</summary>
    internal PageTableEntry Translation(ulong dva, out int level)
    {
        lock (Lock)
        {
            return _table.Lookup(dva, out level);
        }
    }

    private static (ulong First, ulong End) Pages(nint address, ulong length) =>
        ((ulong)address & ~(PageTableFormat.PageSize - 1),
         ((ulong)address + length + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1));

    // Waits while a removal is in flight, then returns the count of removals started (mmu_interval_read_begin).
    private long ReadBegin(ref SpinWait spin)
    {
        while (Volatile.Read(ref _invalidationsActive) > 0)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }

        return Volatile.Read(ref _invalidationsStarted);
    }

    // True when a removal started since ReadBegin returned started (mmu_interval_read_retry).
    private bool ReadRetry(long started) =>
        Volatile.Read(ref _invalidationsStarted) != started || Volatile.Read(ref _invalidationsActive) > 0;

    // Under the lock, before any entry is cleared.
    private void BeginRemoval()
    {
        Interlocked.Increment(ref _invalidationsStarted);
        Interlocked.Increment(ref _invalidationsActive);
    }

    // Pins one on-demand page. When the locked-memory limit (not the budget) is what ran out, gives back the least
    // recently faulted on-demand pages until the page fits: the limit is a transient cause on this path (defect 2).
    private void AcquireOnDemandPage(ulong page, int queue)
    {
        while (true)
        {
            try
            {
                _mmu.Iommu.Acquire(page, PageTableFormat.PageSize);
                return;
            }
            catch (PinLimitExceededException)
            {
                if (!_mmu.Pager.EvictOne(queue))
                {
                    throw; // nothing on demand left to give back: the pins and rings hold the limit
                }
            }
        }
    }

    // Outside the lock: invalidate what changed, wait for the fence, end the removal. False when the fence failed (the
    // device lost, FATAL or hung: issue 12): the caller then keeps the pages mapped (DeviceMmu.Quarantine) until the
    // device is known gone or reset, since it may still reach them through the old translation; the handle is gone
    // either way, and the device's state tells the application what happened.
    private bool EndRemoval(PageTableChange change)
    {
        var fence = IssueRemovalInvalidation(change, out var failure);
        return FinishRemovalFence(change, fence, failure);
    }

    /// <summary>After a reset (issue 12 recovery): CTX_ROOT and CTX_CTRL written again; the table itself lives in host memory.</summary>
    internal bool Restore()
    {
        lock (Lock)
        {
            if (_disposed)
            {
                return false;
            }

            var backend = _mmu.Backend;
            backend.Write64(Fa1Registers.Context(Index, Fa1Registers.CtxRoot), ContextRoot.Create(_table.RootIova, valid: true).Raw);
            var ctrl = ContextControl.Enable | (NoFault ? ContextControl.NoFault : ContextControl.None);
            backend.Write64(Fa1Registers.Context(Index, Fa1Registers.CtxCtrl), (ulong)ctrl);
            return true;
        }
    }

    // Outside the lock, after a pin or install: a promotion to a 2 MiB leaf leaves the walk cache free to keep the
    // pointer to the chunk's level-3 table. The table is kept up to date, so translation stays right either way;
    // the invalidation makes sure no cached entry points at a table the root no longer reaches. A device that does
    // not fence changes nothing for the caller: the pin is valid, the stale pointer harmless.
    private void SettleAddition(PageTableChange change)
    {
        if (!change.NeedsInvalidation)
        {
            return;
        }

        try
        {
            _mmu.Invalidator.Wait(_mmu.Invalidator.InvalidateRange(Index, change.FirstDva, change.Pages));
        }
        catch (FpgaAccelException ex)
        {
            LogPromotionUnfenced(_mmu.Logger, Index, change.FirstDva, ex);
        }
    }

    // The 4 KiB leaf a present mirror entry stands for: IOVA = host address + the fixed delta (IovaLayout), R, and W
    // when the entry has it. DesiredFlags gives the table the same permission from the same state.
    private PageTableEntry LeafFor(ulong page, MirrorEntry entry) =>
        PageTableEntry.Create(_mmu.Layout.IovaOf(page), PteFlags.Valid | PteFlags.Read | ((entry.Flags & MirrorFlags.Write) != 0 ? PteFlags.Write : PteFlags.None));

    private (ulong First, ulong End) Validate(nint address, ulong length, DmaAccess access)
    {
        if (length == 0)
        {
            throw new PinRejectedException(address, length, "the length is zero", "Pin at least one byte.");
        }

        var vaLimit = _mmu.VaLimit;
        if ((ulong)address + length < (ulong)address || (ulong)address + length > vaLimit)
        {
            throw new PinRejectedException(address, length, $"the range overflows the device's {_mmu.Capabilities.VaBits}-bit virtual address space", "Pin a range below 0x" + vaLimit.ToString("X", System.Globalization.CultureInfo.InvariantCulture) + ".");
        }

        if (access is not (DmaAccess.DeviceRead or DmaAccess.DeviceWrite or DmaAccess.ReadWrite))
        {
            throw new PinRejectedException(address, length, $"access {access} is not DeviceRead, DeviceWrite or ReadWrite", "Say what the device does with the buffer.");
        }

        var (first, end) = Pages(address, length);
        if (NotOwnedMemory(first, end) is { } why)
        {
            throw new PinRejectedException(address, length, why, "Pin memory the process owns with read and write access (HostBuffer.Allocate), and unpin it before freeing it.");
        }

        if (!_mmu.Layout.IsMappable(first, end - first))
        {
            throw new PinRejectedException(address, length, $"its IOVAs (host address + 0x{_mmu.Layout.Delta:X}) fall outside the IOMMU's valid ranges", "Allocate the buffer elsewhere (HostBuffer.Allocate), or use a platform whose IOMMU covers user space.");
        }

        return (first, end);
    }

    // Why [first, end) cannot be pinned, or null: what pin_user_pages would refuse (memory not mapped, or without read and
    // write: the IOMMU maps DMA memory read-write), and memory its owner freed that is still mapped only because an IOMMU
    // mapping holds it. Mappings the registry knows (HostBuffer, DmaMemory) answer from their own record; any other
    // memory is looked up in /proc/self/maps.
    private static string? NotOwnedMemory(ulong first, ulong end)
    {
        for (var at = first; at < end;)
        {
            if (MemoryMapping.Find((nint)at) is { } known)
            {
                if (known.IsReleasedByOwner)
                {
                    return $"the memory at 0x{at:X} was freed (disposed) by its owner; only an IOMMU mapping keeps it mapped";
                }

                if ((known.Protection & MemoryProtection.ReadWrite) != MemoryProtection.ReadWrite)
                {
                    return $"the memory at 0x{at:X} is mapped {known.Protection}, and DMA memory is mapped read-write";
                }

                at = (ulong)known.Address + known.Length;
                continue;
            }

            var next = MemoryMapping.FindNext((nint)at) is { } following ? Math.Min((ulong)following.Address, end) : end;
            if (!ProcessLimits.IsAccessible((nint)at, next - at, MemoryProtection.ReadWrite))
            {
                return $"part of [0x{at:X}, 0x{next:X}) is not mapped in this process with read and write access (freed, never allocated, or read-only)";
            }

            at = next;
        }

        return null;
    }

    // The host buffer a range lies in, or null for memory of another origin. A range across a buffer's edge is refused:
    // disposing one buffer must be able to release everything over its memory.
    internal static HostBuffer? OwningBuffer(nint address, ulong length)
    {
        if (length == 0 || (ulong)address + length < (ulong)address)
        {
            return null; // Validate refuses it with the reason
        }

        var owner = HostBuffer.Owning(address);
        if (HostBuffer.Owning((nint)((ulong)address + length - 1)) != owner)
        {
            throw new PinRejectedException(address, length, "the range spans more than one host buffer, or a host buffer and other memory", "Pin or register each buffer on its own.");
        }

        return owner;
    }

    private void ThrowIfOverlapsRegion(ulong first, ulong end, nint address, ulong length)
    {
        foreach (var r in _regions.Values)
        {
            if (first < r.EndPage && r.FirstPage < end)
            {
                throw new PinRejectedException(address, length, $"it overlaps {r}", "Keep pins and on-demand regions of one context apart.");
            }
        }
    }

    // Use counts only (the mirror follows in PublishMirror). A page keeps the id of the first pin that covered it, so
    // undoing a failed pin (delta -1 after +1) restores every count exactly.
    private void ChangeUse(ulong first, ulong end, DmaAccess access, int delta, uint id)
    {
        var writes = (access & DmaAccess.DeviceWrite) != 0 ? delta : 0;
        for (var page = first; page < end; page += PageTableFormat.PageSize)
        {
            var vpn = page >> PageTableFormat.PageShift;
            var known = _pages.TryGetValue(vpn, out var use);
            use = new PageUse(use.Readers + delta, use.Writers + writes, known ? use.Region : id);
            if (use.Readers == 0)
            {
                _pages.Remove(vpn);
            }
            else
            {
                _pages[vpn] = use;
            }
        }
    }

    // The mirror entries of pinned pages from their use counts (none left: no entry). Pins and regions never overlap.
    private void PublishMirror(ulong first, ulong end)
    {
        for (var page = first; page < end; page += PageTableFormat.PageSize)
        {
            if (_pages.TryGetValue(page >> PageTableFormat.PageShift, out var use))
            {
                var flags = MirrorFlags.Valid | MirrorFlags.Present | MirrorFlags.Read | (use.Writers > 0 ? MirrorFlags.Write : MirrorFlags.None);
                _mirror.Set(page, MirrorEntry.Create(use.Region, flags));
            }
            else
            {
                _mirror.Set(page, default);
            }
        }
    }

    // What the device table should say for a page: pinned pages from their use counts, on-demand
    // pages from the mirror while present. On-demand pages never join a 2 MiB leaf: their installs and evictions then
    // never promote or split a chunk, so the fault path needs no invalidation of its own. Called with the lock held.
    private PteFlags DesiredFlags(ulong dva, out bool mayJoinHugeLeaf)
    {
        mayJoinHugeLeaf = true;
        if (_pages.TryGetValue(dva >> PageTableFormat.PageShift, out var use))
        {
            return PteFlags.Read | (use.Writers > 0 ? PteFlags.Write : PteFlags.None);
        }

        var e = _mirror.Lookup(dva);
        if (e.OnDemand)
        {
            mayJoinHugeLeaf = false;
            if (e.Present || (dva - _installFirst < _installEnd - _installFirst && e.Raw == _installAbsent))
            {
                // Present, or about to be: an install writes the table before it publishes the mirror (InstallRun).
                return PteFlags.Read | ((e.Flags & MirrorFlags.Write) != 0 ? PteFlags.Write : PteFlags.None);
            }
        }

        return PteFlags.None;
    }

    private void ThrowIfDisposed()
    {
        if (_disposed)
        {
            throw new DisposedResourceException($"Device context {Index}");
        }
    }

    private readonly record struct PageUse(int Readers, int Writers, uint Region);

    [LoggerMessage(EventId = 30, Level = LogLevel.Debug, Message = "Context {Context} created (NOFAULT {NoFault})")]
    private static partial void LogCreated(ILogger logger, int context, bool noFault);

    [LoggerMessage(EventId = 31, Level = LogLevel.Debug, Message = "Pin #{Id} in context {Context}: 0x{Address:X} +{Length} {Access}")]
    private static partial void LogPinned(ILogger logger, long id, int context, nint address, ulong length, DmaAccess access);

    [LoggerMessage(EventId = 32, Level = LogLevel.Debug, Message = "Unpinned #{Id} in context {Context}")]
    private static partial void LogUnpinned(ILogger logger, long id, int context);

    [LoggerMessage(EventId = 37, Level = LogLevel.Warning, Message = "Context {Context}: the fence of a removal at DVA 0x{Dva:X} failed; its pages stay mapped until the device is known gone or reset")]
    private static partial void LogRemovalUnfenced(ILogger logger, int context, ulong dva, Exception ex);

    [LoggerMessage(EventId = 33, Level = LogLevel.Warning, Message = "Context {Context} disposed without a device fence")]
    private static partial void LogDisposeUnfenced(ILogger logger, int context, Exception ex);

    [LoggerMessage(EventId = 34, Level = LogLevel.Warning, Message = "Context {Context}: the invalidation after a 2 MiB promotion at DVA 0x{Dva:X} did not complete; the pin is valid (the level-3 table stays up to date)")]
    private static partial void LogPromotionUnfenced(ILogger logger, int context, ulong dva, Exception ex);
}
