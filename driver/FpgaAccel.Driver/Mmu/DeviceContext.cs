using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// One hardware context: a device page table mirroring part of this process's address space
/// (DVA = the process's own virtual address, spec 4), and the pins that populate it.
/// </summary>
/// <remarks>
/// Overlapping pins: each 4 KiB page keeps a count of the pins that let the device read it and of
/// those that let it write it. The page translates while any pin covers it, with the union of their
/// access (a write pin also grants read: spec 4.1 makes W without R malformed). Unpinning one of two
/// overlapping pins leaves the page translated for the other; if it loses write access, that removal
/// is invalidated and fenced like any other. Adding access needs no invalidation (spec 4.1).
/// Unpin order (spec 4.3): clear or downgrade entries, TLB_INV, wait for the INV_DONE fence, free
/// unlinked tables, and only then release the IOMMU mapping (unpin the pages).
/// All pin state changes hold <see cref="_lock"/>; lock order is context, then IOMMU mappings.
/// </remarks>
public sealed partial class DeviceContext : IDisposable
{
    private readonly DeviceMmu _mmu;
    private readonly PageTable _table;
    private readonly Lock _lock = new();
    private readonly Dictionary<long, PinnedBuffer> _pins = [];
    private readonly Dictionary<ulong, PageUse> _pages = [];
    private bool _disposed;

    internal DeviceContext(DeviceMmu mmu, int index, ContextOptions options)
    {
        _mmu = mmu;
        Index = index;
        NoFault = options.NoFault;
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

    /// <summary>Live pins.</summary>
    public int PinCount
    {
        get
        {
            lock (_lock)
            {
                return _pins.Count;
            }
        }
    }

    /// <summary>Pages the device may translate in this context now.</summary>
    public int MappedPages
    {
        get
        {
            lock (_lock)
            {
                return _pages.Count;
            }
        }
    }

    /// <summary>Device page-table tables allocated (root included).</summary>
    internal int PageTableTables => _table.TableCount;

    /// <summary>Faults the device counted in this context (CTX_FAULTS).</summary>
    public ulong DeviceFaults => _mmu.Backend.Read64(Fa1Registers.Context(Index, Fa1Registers.CtxFaults));

    /// <summary>Pins a <see cref="HostBuffer"/> whole.</summary>
    public PinnedBuffer Pin(HostBuffer buffer, DmaAccess access)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (buffer.IsDisposed)
        {
            throw new PinRejectedException(0, buffer.Length, "the host buffer was already freed (disposed)", "Pin a live buffer.");
        }

        return Pin(buffer.Address, buffer.Length, access);
    }

    /// <summary>
    /// Pins [address, address + length) for the device with <paramref name="access"/>: maps its pages in
    /// the platform IOMMU (pinning them, charged against the locked-memory limit) and in this context's
    /// page table with DVA = address. Returns the handle that names the pin.
    /// </summary>
    public PinnedBuffer Pin(nint address, ulong length, DmaAccess access)
    {
        Validate(address, length, access);
        var first = (ulong)address & ~(PageTableFormat.PageSize - 1);
        var end = ((ulong)address + length + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1);
        lock (_lock)
        {
            ThrowIfDisposed();
            _mmu.Iommu.Acquire(first, end - first);
            try
            {
                ChangeUse(first, end, access, +1);
                Commit(first, end);
            }
            catch
            {
                ChangeUse(first, end, access, -1);
                Commit(first, end);
                _mmu.Iommu.Release(first, end - first);
                throw;
            }

            var pin = new PinnedBuffer(this, _mmu.NextPinId(), address, length, access);
            _pins.Add(pin.Id, pin);
            LogPinned(_mmu.Logger, pin.Id, Index, address, length, access);
            return pin;
        }
    }

    /// <summary>
    /// Unpins: removes the translations only this pin provided, invalidates them, waits for the fence,
    /// then releases the pages from the IOMMU. After it returns the device cannot reach the pages
    /// through this pin. Throws for a handle that is not live in this context.
    /// </summary>
    public void Unpin(PinnedBuffer pin)
    {
        ArgumentNullException.ThrowIfNull(pin);
        if (pin.Context != this)
        {
            throw new InvalidPinHandleException(pin.ToString(), $"it belongs to context {pin.Context.Index}, not {Index}");
        }

        lock (_lock)
        {
            if (!_pins.ContainsKey(pin.Id) || !pin.MarkUnpinned())
            {
                throw new InvalidPinHandleException(pin.ToString(), _disposed ? "its context was disposed" : "it was already unpinned");
            }

            _pins.Remove(pin.Id);
            var first = (ulong)pin.Address & ~(PageTableFormat.PageSize - 1);
            var end = ((ulong)pin.Address + pin.Length + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1);
            ChangeUse(first, end, pin.Access, -1);
            Commit(first, end);

            // Spec 4.3: only after the fence may the pages be unpinned.
            _mmu.Iommu.Release(first, end - first);
            LogUnpinned(_mmu.Logger, pin.Id, Index);
        }
    }

    /// <summary>
    /// Disables the context, invalidates it, waits for the fence, and releases every pin and table.
    /// </summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            try
            {
                var backend = _mmu.Backend;
                backend.Write64(Fa1Registers.Context(Index, Fa1Registers.CtxCtrl), 0);
                backend.Write64(Fa1Registers.Context(Index, Fa1Registers.CtxRoot), 0);
                _mmu.Invalidator.Wait(_mmu.Invalidator.InvalidateContext(Index));
            }
            catch (FpgaAccelException ex)
            {
                // The device is gone or hung. Its DMA cannot be fenced; releasing the IOMMU mappings
                // below makes the platform IOMMU refuse any access it still tries.
                LogDisposeUnfenced(_mmu.Logger, Index, ex);
            }
            finally
            {
                foreach (var pin in _pins.Values)
                {
                    pin.MarkUnpinned();
                    var first = (ulong)pin.Address & ~(PageTableFormat.PageSize - 1);
                    var end = ((ulong)pin.Address + pin.Length + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1);
                    _mmu.Iommu.Release(first, end - first);
                }

                _pins.Clear();
                _pages.Clear();
                _table.Dispose();
                _mmu.Release(this);
            }
        }
    }

    internal void UnpinIfPinned(PinnedBuffer pin)
    {
        lock (_lock)
        {
            if (_pins.ContainsKey(pin.Id))
            {
                Unpin(pin);
            }
        }
    }

    /// <summary>The leaf translating <paramref name="dva"/> now, as the device would walk it (for tests and tools).</summary>
    internal PageTableEntry Translation(ulong dva, out int level)
    {
        lock (_lock)
        {
            return _table.Lookup(dva, out level);
        }
    }

    private void Validate(nint address, ulong length, DmaAccess access)
    {
        if (length == 0)
        {
            throw new PinRejectedException(address, length, "the length is zero", "Pin at least one byte.");
        }

        var vaLimit = 1UL << Math.Min(_mmu.Capabilities.VaBits, PageTableFormat.VaBits);
        if ((ulong)address + length < (ulong)address || (ulong)address + length > vaLimit)
        {
            throw new PinRejectedException(address, length, $"the range overflows the device's {_mmu.Capabilities.VaBits}-bit virtual address space", "Pin a range below 0x" + vaLimit.ToString("X", System.Globalization.CultureInfo.InvariantCulture) + ".");
        }

        if (access is not (DmaAccess.DeviceRead or DmaAccess.DeviceWrite or DmaAccess.ReadWrite))
        {
            throw new PinRejectedException(address, length, $"access {access} is not DeviceRead, DeviceWrite or ReadWrite", "Say what the device does with the buffer.");
        }

        var first = (ulong)address & ~(PageTableFormat.PageSize - 1);
        var end = ((ulong)address + length + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1);
        if (!ProcessLimits.IsMapped((nint)first, end - first))
        {
            throw new PinRejectedException(address, length, "part of the range is not mapped in this process (freed, or never allocated)", "Pin memory the process owns, and unpin before freeing it.");
        }

        if (!_mmu.Layout.IsMappable(first, end - first))
        {
            throw new PinRejectedException(address, length, $"its IOVAs (host address + 0x{_mmu.Layout.Delta:X}) fall outside the IOMMU's valid ranges", "Allocate the buffer elsewhere (HostBuffer.Allocate), or use a platform whose IOMMU covers user space.");
        }
    }

    private void ChangeUse(ulong first, ulong end, DmaAccess access, int delta)
    {
        var reads = access != DmaAccess.None ? delta : 0;
        var writes = (access & DmaAccess.DeviceWrite) != 0 ? delta : 0;
        for (var page = first; page < end; page += PageTableFormat.PageSize)
        {
            var vpn = page >> PageTableFormat.PageShift;
            _pages.TryGetValue(vpn, out var use);
            use = new PageUse(use.Readers + reads, use.Writers + writes);
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

    // Brings the page table in line with _pages over [first, end), and fences any removal.
    private void Commit(ulong first, ulong end)
    {
        var change = _table.Apply(first, end, DesiredFlags);
        if (change.RemovedSomething || _table.RetiredCount > 0)
        {
            var fence = change.RemovedSomething
                ? _mmu.Invalidator.InvalidateRange(Index, change.FirstDva, change.Pages)
                : _mmu.Invalidator.InvalidateContext(Index);
            _mmu.Invalidator.Wait(fence);
            _table.FreeRetired();
        }
    }

    private PteFlags DesiredFlags(ulong dva)
    {
        if (!_pages.TryGetValue(dva >> PageTableFormat.PageShift, out var use))
        {
            return PteFlags.None;
        }

        return PteFlags.Read | (use.Writers > 0 ? PteFlags.Write : PteFlags.None);
    }

    private void ThrowIfDisposed()
    {
        if (_disposed)
        {
            throw new DisposedResourceException($"Device context {Index}");
        }
    }

    private readonly record struct PageUse(int Readers, int Writers);

    [LoggerMessage(EventId = 30, Level = LogLevel.Debug, Message = "Context {Context} created (NOFAULT {NoFault})")]
    private static partial void LogCreated(ILogger logger, int context, bool noFault);

    [LoggerMessage(EventId = 31, Level = LogLevel.Debug, Message = "Pin #{Id} in context {Context}: 0x{Address:X} +{Length} {Access}")]
    private static partial void LogPinned(ILogger logger, long id, int context, nint address, ulong length, DmaAccess access);

    [LoggerMessage(EventId = 32, Level = LogLevel.Debug, Message = "Unpinned #{Id} in context {Context}")]
    private static partial void LogUnpinned(ILogger logger, long id, int context);

    [LoggerMessage(EventId = 33, Level = LogLevel.Warning, Message = "Context {Context} disposed without a device fence")]
    private static partial void LogDisposeUnfenced(ILogger logger, int context, Exception ex);
}
