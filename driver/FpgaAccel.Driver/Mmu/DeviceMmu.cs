using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Dma;
using FpgaAccel.FirmwareInterface;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// The driver's side of the device MMU and the platform IOMMU: IOVA layout, pin accounting,
/// reference-counted IOMMU mappings, TLB invalidation, and the hardware contexts.
/// </summary>
internal sealed partial class DeviceMmu : IDisposable
{
    private readonly DeviceContext?[] _contexts;
    private readonly Lock _lock = new();
    private long _nextPinId;
    private long _faultAroundRetired;
    private long _prefetchedRetired;

    // Ranges whose removal fence failed (issue 12): still mapped, since the device might reach them, until it is known
    // gone or reset. Guarded by _lock.
    private readonly List<(ulong First, ulong Length)> _quarantine = [];
    private int _quarantinedPages;

    public DeviceMmu(IDeviceBackend backend, Capabilities caps, FpgaDeviceOptions options, ILoggerFactory loggers, Func<int, int>? commandsInFlight = null)
    {
        Backend = backend;
        Capabilities = caps;
        Logger = loggers.CreateLogger<DeviceContext>();
        VaLimit = 1UL << Math.Clamp(caps.VaBits, 0, PageTableFormat.VaBits);
        Layout = IovaLayout.Choose(backend.IovaRanges, caps.IovaBits);
        Accountant = new PinAccountant(options.MemlockLimitBytes);
        Iommu = new IommuMappings(backend, Layout, Accountant, loggers.CreateLogger<IommuMappings>());
        Invalidator = new TlbInvalidator(backend, options.DeviceTimeout);
        _contexts = new DeviceContext?[caps.Contexts];
        Pager = new OnDemandPager(ClampBudget(options.OnDemandBudgetPages), caps.Queues, commandsInFlight);
        FaultAroundLog2 = System.Numerics.BitOperations.Log2((uint)options.FaultAroundPages);
        PagingMetrics = new PagingMetrics(this);
    }

    /// <summary>log2 of the fault-around window new on-demand regions start with (<see cref="FpgaDeviceOptions.FaultAroundPages"/>).</summary>
    public int FaultAroundLog2 { get; }

    /// <summary>The running fault service's step timer, when it traces (<see cref="Faults.FaultServiceOptions.TraceStages"/>).</summary>
    public Faults.FaultStageTrace? FaultTrace { get; set; }

    /// <summary>The paging instruments (meter <c>FpgaAccel.Driver</c>).</summary>
    public PagingMetrics PagingMetrics { get; }

    /// <summary>The on-demand budget and its eviction order.</summary>
    public OnDemandPager Pager { get; }

    public IDeviceBackend Backend { get; }

    public Capabilities Capabilities { get; }

    public ILogger Logger { get; }

    public IovaLayout Layout { get; }

    /// <summary>The first DVA a pin may not reach: 2^(CAPS VA bits), at most 2^48 (four levels of table, spec 4.1).</summary>
    public ulong VaLimit { get; }

    public PinAccountant Accountant { get; }

    public IommuMappings Iommu { get; }

    public TlbInvalidator Invalidator { get; }

    public long NextPinId() => Interlocked.Increment(ref _nextPinId);

    private AddressSpace? _addressSpace;

    /// <summary>The address space this device is attached to, or null. A device attaches to one at a time (it has one IOMMU container).</summary>
    public AddressSpace? AddressSpace => Volatile.Read(ref _addressSpace);

    /// <summary>Attaches to <paramref name="space"/>; false when attached to one already.</summary>
    public bool TryJoin(AddressSpace space) => Interlocked.CompareExchange(ref _addressSpace, space, null) is null;

    /// <summary>Detaches from <paramref name="space"/> (nothing when attached to another, or none).</summary>
    public void Leave(AddressSpace space) => Interlocked.CompareExchange(ref _addressSpace, null, space);

    /// <summary>Pages kept mapped because their fence failed.</summary>
    public int QuarantinedPages => Volatile.Read(ref _quarantinedPages);

    /// <summary>
    /// A removal whose fence failed: the device may still hold the old translation, so the pages stay mapped (pinned)
    /// until <see cref="ReleaseQuarantined"/> (the device known gone, or reset). Never lost: released then, or at dispose.
    /// </summary>
    public void Quarantine(ulong first, ulong length)
    {
        lock (_lock)
        {
            _quarantine.Add((first, length));
            _quarantinedPages += (int)(length / PageTableFormat.PageSize);
        }

        // Claim: a range quarantined while the device is lost does not wait for a recovery. Argument: the health moves
        // the state to Lost before it calls ReleaseQuarantined; a range added after that call's snapshot is added
        // after the move, so this look sees Lost and releases it here.
        if (DeviceGone?.Invoke() == true)
        {
            ReleaseQuarantined();
        }
    }

    /// <summary>True when the device is known gone (Lost): set by the device.</summary>
    public Func<bool>? DeviceGone { get; set; }

    /// <summary>The device can no longer reach any quarantined page (gone, or reset): unmap them and return their accounting.</summary>
    public void ReleaseQuarantined()
    {
        (ulong First, ulong Length)[] ranges;
        lock (_lock)
        {
            if (_quarantine.Count == 0)
            {
                return;
            }

            ranges = [.. _quarantine];
            _quarantine.Clear();
            Volatile.Write(ref _quarantinedPages, 0);
        }

        foreach (var (first, length) in ranges)
        {
            Iommu.Release(first, length);
        }

        LogQuarantineReleased(Logger, ranges.Length);
    }

    /// <summary>After a reset: every live context's CTX_ROOT and CTX_CTRL written again. Returns how many.</summary>
    public int RestoreContexts()
    {
        DeviceContext?[] live;
        lock (_lock)
        {
            live = [.. _contexts];
        }

        var restored = 0;
        foreach (var c in live)
        {
            if (c is not null && c.Restore())
            {
                restored++;
            }
        }

        return restored;
    }

    /// <summary>Pages mapped by fault-around in every live context, plus those of contexts already disposed.</summary>
    public long FaultAroundTotal => Interlocked.Read(ref _faultAroundRetired) + Live().Sum(c => c.FaultAroundPages);

    /// <summary>Pages prefetched in every live context, plus those of contexts already disposed.</summary>
    public long PrefetchedTotal => Interlocked.Read(ref _prefetchedRetired) + Live().Sum(c => c.PrefetchedPages);

    private IEnumerable<DeviceContext> Live()
    {
        for (var i = 0; i < _contexts.Length; i++)
        {
            if (Volatile.Read(ref _contexts[i]) is { } c)
            {
                yield return c;
            }
        }
    }

    public DeviceContext CreateContext(ContextOptions options)
    {
        lock (_lock)
        {
            for (var i = 0; i < _contexts.Length; i++)
            {
                if (_contexts[i] is null)
                {
                    var context = new DeviceContext(this, i, options);
                    Volatile.Write(ref _contexts[i], context);
                    return context;
                }
            }
        }

        throw new NoFreeContextException(_contexts.Length);
    }

    /// <summary>The live context with this index, or null. Lock-free (the fault path calls it).</summary>
    public DeviceContext? Context(int index) =>
        (uint)index < (uint)_contexts.Length ? Volatile.Read(ref _contexts[index]) : null;

    public void Release(DeviceContext context)
    {
        lock (_lock)
        {
            if (_contexts[context.Index] == context)
            {
                Interlocked.Add(ref _faultAroundRetired, context.FaultAroundPages);
                Interlocked.Add(ref _prefetchedRetired, context.PrefetchedPages);
                Volatile.Write(ref _contexts[context.Index], null);
            }
        }
    }

    // The budget may not exceed half the locked-memory limit (the rest is for pins, rings and page tables): a budget
    // above it would only fail on the fault path. The default (4096 pages, 16 MiB) is above a common lab's 8 MiB
    // RLIMIT_MEMLOCK, so this is the usual case there, and it is logged.
    private int ClampBudget(int requested)
    {
        if (!Accountant.Enforced)
        {
            return requested;
        }

        var allowed = (long)(Accountant.Limit / 2 / PageTableFormat.PageSize);
        if (requested <= allowed)
        {
            return requested;
        }

        var budget = (int)Math.Max(allowed, OnDemandPager.MinimumBudget);
        LogBudgetClamped(Logger, requested, budget, Accountant.Limit, Accountant.LimitSource);
        return budget;
    }

    [LoggerMessage(EventId = 35, Level = LogLevel.Warning, Message = "On-demand budget clamped from {Requested} to {Budget} pages: half the locked-memory limit of {Limit} bytes ({Source}); raise the limit for a larger budget")]
    private static partial void LogBudgetClamped(ILogger logger, int requested, int budget, ulong limit, string source);

    [LoggerMessage(EventId = 36, Level = LogLevel.Warning, Message = "Released {Ranges} range(s) whose fence had failed: the device can no longer reach them")]
    private static partial void LogQuarantineReleased(ILogger logger, int ranges);

    public void Dispose()
    {
        PagingMetrics.Dispose();
        DeviceContext?[] live;
        lock (_lock)
        {
            live = [.. _contexts];
        }

        foreach (var c in live)
        {
            c?.Dispose();
        }

        // The device is being closed and its contexts are disabled: nothing is left to protect these pages for.
        ReleaseQuarantined();
    }
}

/// <summary>How a context is created.</summary>
public sealed record ContextOptions
{
    /// <summary>
    /// CTX_CTRL.NOFAULT (spec 4.2): a translation fault aborts the command at once, with no fault
    /// record. For contexts that use pinned buffers only.
    /// </summary>
    public bool NoFault { get; init; }
}
