using System.Runtime.InteropServices;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FpgaAccel.Driver.Dma;

/// <summary>
/// The device's IOMMU mappings, in the units the kernel maps and unmaps: every user (a pin in any context, an
/// on-demand page, a ring, a page table) acquires and releases whole 4 KiB pages, counted per page; pages with no
/// mapping are mapped in units (one map call each), and a unit is unmapped whole once none of its pages has a user.
/// </summary>
/// <remarks>
/// Why units: VFIO type1v2 (what the board backend selects) refuses an unmap that would split an earlier mapping
/// (EINVAL), so a page cannot be unmapped alone out of a larger map call; and each map call is one entry against
/// type1's dma_entry_limit (65535 by default), so mapping page by page would cap what can be pinned at 256 MiB.
/// A unit covers a run of pages that had no mapping, cut at every 2 MiB boundary: one map call per 2 MiB at most
/// (128 GiB within the entry limit), and a page still in use keeps at most the rest of its 2 MiB chunk mapped.
/// Pages of a live unit that lost their last user stay mapped (and charged) until the unit goes; a new user of such
/// a page just counts it (a map there would be EEXIST).
/// Charge: exactly the pages mapped, as the kernel charges locked_vm per page it pins (<see cref="PinAccountant"/>); a
/// unit remembers the ledger that charged it (the process's, or an address space's: F21), so it is given back there
/// even when the device was detached in between.
/// Invariants: _pages[p].Refs == users of page p; page p is in _pages exactly while the IOMMU maps it, inside the unit
/// named by _pages[p].Unit; _units[u].Live == pages of unit u with Refs &gt; 0; a unit is mapped and charged exactly
/// while it is in _units. Argument: all of them change only under _lock, and the backend call that maps (unmaps) a
/// unit happens inside the same critical section as the step that adds (removes) it. When the kernel refuses an unmap
/// the unit stays mapped, charged and listed, as the kernel has it, so the counts never drift from the kernel's.
/// Callers release only after the device can no longer reach the pages (the spec 4.3 fence).
/// IOMMU mappings are always read+write for the device, as DPDK and SPDK map them: per-context access is enforced
/// by the device page table (spec 4.1), and one mapping per page keeps overlapping users simple. So memory the
/// process itself cannot write (a PROT_READ mapping) cannot be pinned.
/// The steady-state fault path (one page acquired and released at a time) allocates nothing: the tables hold structs.
/// </remarks>
internal sealed partial class IommuMappings
{
    private const ulong PageSize = PageTableFormat.PageSize;
    private readonly IDeviceBackend _backend;
    private readonly IovaLayout _layout;
    private readonly PinAccountant _accountant;
    private readonly ILogger _logger;
    private readonly Dictionary<ulong, PageState> _pages = [];
    private readonly Dictionary<ulong, Unit> _units = [];
    private readonly Lock _lock = new();
    private long _failedUnmaps;

    // Acquire calls completed: a unit remembers which one created it, so a failed Acquire undoes only its own units.
    private long _acquires;

    public IommuMappings(IDeviceBackend backend, IovaLayout layout, PinAccountant accountant, ILogger? logger = null)
    {
        _backend = backend;
        _layout = layout;
        _accountant = accountant;
        _logger = logger ?? NullLogger.Instance;
    }

    public IovaLayout Layout => _layout;

    /// <summary>Pages mapped now (used or idle in a live unit).</summary>
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

    /// <summary>Map calls (units) alive now: what counts against the kernel's mapping limit.</summary>
    public int Units
    {
        get
        {
            lock (_lock)
            {
                return _units.Count;
            }
        }
    }

    /// <summary>Unmaps the kernel refused (the unit stayed mapped and charged): 0 unless something is badly wrong.</summary>
    public long FailedUnmaps => Interlocked.Read(ref _failedUnmaps);

    /// <summary>
    /// Adds a user to every page of [host, host + length) (page-aligned), mapping the pages that had no mapping in
    /// units. Throws, with nothing changed, when the charge or a map is refused.
    /// </summary>
    public void Acquire(ulong host, ulong length)
    {
        var end = host + length;
        lock (_lock)
        {
            // Map every run of unmapped pages, one unit per run piece inside a 2 MiB chunk.
            var a = host;
            try
            {
                while (a < end)
                {
                    if (_pages.ContainsKey(a >> PageTableFormat.PageShift))
                    {
                        a += PageSize;
                        continue;
                    }

                    // A unit lies in one 2 MiB chunk and in one memory mapping (the one it holds), or in none.
                    var memory = MemoryMapping.Find((nint)a);
                    var limit = memory is not null
                        ? (ulong)memory.Address + memory.Length
                        : MemoryMapping.FindNext((nint)a) is { } next ? (ulong)next.Address : ulong.MaxValue;
                    var unitEnd = Math.Min(Math.Min((a | (PageTableFormat.HugePageSize - 1)) + 1, limit), end);
                    var runEnd = a;
                    while (runEnd < unitEnd && !_pages.ContainsKey(runEnd >> PageTableFormat.PageShift))
                    {
                        runEnd += PageSize;
                    }

                    MapUnit(a, runEnd, memory);
                    a = runEnd;
                }
            }
            catch
            {
                // Undo the units this call mapped: their pages still have no user.
                for (var p = host; p < a; p += PageSize)
                {
                    if (_pages.TryGetValue(p >> PageTableFormat.PageShift, out var state) && state.Refs == 0
                        && _units.TryGetValue(state.Unit, out var unit) && unit.Live == 0 && unit.CreatedBy == _acquires)
                    {
                        UnmapUnit(state.Unit, unit, undo: true);
                    }
                }

                throw;
            }

            for (var p = host; p < end; p += PageSize)
            {
                ref var state = ref CollectionsMarshal.GetValueRefOrNullRef(_pages, p >> PageTableFormat.PageShift);
                if (state.Refs++ == 0)
                {
                    ref var unit = ref CollectionsMarshal.GetValueRefOrNullRef(_units, state.Unit);
                    unit.Live++;
                }
            }

            _acquires++;
        }
    }

    /// <summary>Removes a user from every page of the range; a unit left with no used page is unmapped whole (unpinned).</summary>
    public void Release(ulong host, ulong length)
    {
        var end = host + length;
        lock (_lock)
        {
            // Check first, so a bad release changes nothing.
            for (var p = host; p < end; p += PageSize)
            {
                if (!_pages.TryGetValue(p >> PageTableFormat.PageShift, out var state) || state.Refs == 0)
                {
                    throw new InvalidOperationException($"IOMMU page 0x{p:X} released without being acquired.");
                }
            }

            for (var p = host; p < end; p += PageSize)
            {
                ref var state = ref CollectionsMarshal.GetValueRefOrNullRef(_pages, p >> PageTableFormat.PageShift);
                if (--state.Refs != 0)
                {
                    continue;
                }

                var unitStart = state.Unit;
                ref var unit = ref CollectionsMarshal.GetValueRefOrNullRef(_units, unitStart);
                if (--unit.Live == 0)
                {
                    UnmapUnit(unitStart, unit, undo: false);
                }
            }
        }
    }

    // Lock held. Holds the memory, charges and maps [first, end) as one unit; throws with nothing changed.
    // The hold is what pin_user_pages' page reference is: the owner's free is deferred while the unit maps the memory,
    // so the address cannot be handed to a new allocation that the IOMMU would confuse with the old pages (defect 7).
    private void MapUnit(ulong first, ulong end, MemoryMapping? memory)
    {
        var bytes = end - first;
        AddressSpacePinLedger? chargedBy;
        if (memory is not null && !memory.TryHold())
        {
            throw new DmaMappingException(_layout.IovaOf(first), bytes, "EFAULT", $"the memory at 0x{first:X} was freed by its owner.");
        }

        try
        {
            chargedBy = _accountant.Charge(first, bytes);
            try
            {
                _backend.MapDma(_layout.IovaOf(first), (nint)first, bytes, DmaAccess.ReadWrite);
            }
            catch
            {
                _accountant.Release(first, bytes, chargedBy);
                throw;
            }
        }
        catch
        {
            memory?.ReleaseHold();
            throw;
        }

        var unitKey = first >> PageTableFormat.PageShift;
        _units[unitKey] = new Unit(end >> PageTableFormat.PageShift, 0, _acquires, memory, chargedBy);
        for (var p = first; p < end; p += PageSize)
        {
            _pages[p >> PageTableFormat.PageShift] = new PageState(0, unitKey);
        }
    }

    // Lock held. Unmaps a unit whole; if the kernel refuses, the unit stays mapped and charged (as the kernel has it).
    private void UnmapUnit(ulong unitKey, Unit unit, bool undo)
    {
        var first = unitKey << PageTableFormat.PageShift;
        var bytes = (unit.EndPage - unitKey) << PageTableFormat.PageShift;
        try
        {
            _backend.UnmapDma(_layout.IovaOf(first), bytes);
        }
        catch (Exception ex) when (ex is FpgaAccelException or InvalidOperationException)
        {
            Interlocked.Increment(ref _failedUnmaps);
            LogUnmapRefused(_logger, _layout.IovaOf(first), bytes, undo, ex);
            return;
        }

        for (var p = unitKey; p < unit.EndPage; p++)
        {
            _pages.Remove(p);
        }

        _units.Remove(unitKey);
        _accountant.Release(first, bytes, unit.ChargedBy);

        // The kernel no longer pins it: the owner's free (if it came) may now run.
        unit.Held?.ReleaseHold();
    }

    [LoggerMessage(EventId = 60, Level = LogLevel.Error, Message = "The IOMMU refused to unmap IOVA 0x{Iova:X} (+{Bytes} bytes, undoing a failed map: {Undo}); it stays mapped and charged")]
    private static partial void LogUnmapRefused(ILogger logger, ulong iova, ulong bytes, bool undo, Exception ex);

    private record struct PageState(int Refs, ulong Unit);

    private record struct Unit(ulong EndPage, int Live, long CreatedBy, MemoryMapping? Held, AddressSpacePinLedger? ChargedBy);
}
