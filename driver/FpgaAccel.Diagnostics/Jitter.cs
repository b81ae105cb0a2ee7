using System.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Diagnostics;

/// <summary>How the measured buffers are made available to the device.</summary>
public enum BufferMode
{
    /// <summary>Pinned long-term before the run: no faults.</summary>
    Pinned,

    /// <summary>Registered on demand: pages fault in on first touch and again after eviction under the budget.</summary>
    OnDemand,
}

/// <summary>The DMA operation measured.</summary>
public enum JitterOperation
{
    /// <summary>COPY: the device reads the source and writes the destination, so both sides may fault.</summary>
    Copy,

    /// <summary>FILL: the device only writes, so only the destination faults.</summary>
    Fill,

    /// <summary>CRC32C: the device only reads, so only the source faults.</summary>
    Crc,
}

/// <summary>Settings of a latency and IOPF-jitter run.</summary>
public sealed record JitterOptions
{
    /// <summary>Largest transfer the run accepts per command.</summary>
    public const ulong MaxSize = 64UL << 20;

    /// <summary>Most measured (and warm-up) commands per mode: every sample is kept for exact percentiles.</summary>
    public const int MaxCount = 10_000_000;

    /// <summary>Which command every measured operation is.</summary>
    public JitterOperation Operation { get; init; } = JitterOperation.Copy;

    /// <summary>Bytes per command.</summary>
    public ulong Size { get; init; } = 16 * 1024;

    /// <summary>Measured commands per mode.</summary>
    public int Count { get; init; } = 5000;

    /// <summary>Unmeasured commands per mode before the measured ones.</summary>
    public int Warmup { get; init; } = 500;

    /// <summary>
    /// Working set, in commands' worth of buffer: the stream walks through it in order and wraps. For
    /// on-demand it is twice the budget, so pages keep being evicted and faulted in again.
    /// </summary>
    public int WorkingSetPages { get; init; }

    /// <summary>How the queue learns of completions: interrupt or polling (part of the measured latency).</summary>
    public CompletionMode Completion { get; init; } = CompletionMode.Interrupt;

    /// <summary>
    /// Where the client's code after each await runs (decision F25). Inline by default: the client is a run-to-completion
    /// loop (await a result, submit the next command), which is how a latency-bound caller drives a queue, and it leaves
    /// no thread-pool worker spinning on a core the fault service may need. ThreadPool measures the queue's default.
    /// </summary>
    public ContinuationMode Continuations { get; init; } = ContinuationMode.Inline;

    /// <summary>
    /// Fault-around window of the on-demand regions, in pages (a power of two, 1 = off); null keeps the device's default
    /// (<see cref="FpgaDeviceOptions.FaultAroundPages"/>, 16).
    /// </summary>
    public int? FaultAroundPages { get; init; }

    /// <summary>
    /// On demand: prefetch each command's source and destination range (<see cref="OnDemandRegion.Prefetch"/>) right
    /// before submitting it. The measured latency includes the prefetch.
    /// </summary>
    public bool Prefetch { get; init; }

    /// <summary>The fault service the on-demand mode starts when the device has none running.</summary>
    public FaultServiceOptions FaultService { get; init; } = new();

    /// <summary>Checks the settings against each other and the device; throws naming the first bad one.</summary>
    public void Validate(int budgetPages)
    {
        if (Size == 0 || Size > MaxSize)
        {
            throw new InvalidDeviceOptionException("size", Size, $"a command moves 1 byte to {MaxSize} bytes");
        }

        if (Count is < 1 or > MaxCount)
        {
            throw new InvalidDeviceOptionException("count", Count, $"measure 1 to {MaxCount} commands (every sample is kept)");
        }

        if (Warmup is < 0 or > MaxCount)
        {
            throw new InvalidDeviceOptionException("warmup", Warmup, $"warm-up is 0 to {MaxCount} commands");
        }

        if (FaultAroundPages is { } around && (around < 1 || around > DeviceContext.MaxFaultAroundPages || (around & (around - 1)) != 0))
        {
            throw new InvalidDeviceOptionException("fault-around", around, $"fault-around is a power of two from 1 (off) to {DeviceContext.MaxFaultAroundPages} pages");
        }

        if (budgetPages < 2)
        {
            throw new InvalidDeviceOptionException("budget", budgetPages, "the on-demand budget is at least 2 pages (a COPY stalled on a fault needs its source and its destination page at once)");
        }
    }
}

/// <summary>One measured command.</summary>
/// <param name="HostNanoseconds">From submission to the completion being seen by the caller.</param>
/// <param name="DeviceStartCycle">The device's start cycle.</param>
/// <param name="DeviceEndCycle">The device's completion cycle.</param>
/// <param name="Faults">Faults the command took.</param>
/// <param name="Status">Its completion status.</param>
public readonly record struct JitterSample(long HostNanoseconds, ulong DeviceStartCycle, ulong DeviceEndCycle, ushort Faults, CompletionStatus Status)
{
    /// <summary>Device time from start to end at <paramref name="nsPerCycle"/> (0 when the device reported an end before its start).</summary>
    public double DeviceNanoseconds(double nsPerCycle) => (DeviceEndCycle >= DeviceStartCycle ? DeviceEndCycle - DeviceStartCycle : 0) * nsPerCycle;
}

/// <summary>
/// Order statistics of a latency sample. Percentiles are exact: nearest rank over the sorted samples
/// (the value below which p of the samples fall, rank ceil(p * n)), no histogram and no interpolation.
/// </summary>
/// <param name="Count">Samples.</param>
/// <param name="Min">Smallest sample.</param>
/// <param name="P50">Median (nearest rank).</param>
/// <param name="P90">90th percentile (nearest rank).</param>
/// <param name="P99">99th percentile (nearest rank).</param>
/// <param name="P999">99.9th percentile (nearest rank): the tail on-demand faults show up in.</param>
/// <param name="Max">Largest sample.</param>
/// <param name="Mean">Arithmetic mean.</param>
/// <param name="StdDev">Sample standard deviation (n - 1).</param>
public sealed record LatencyStats(long Count, double Min, double P50, double P90, double P99, double P999, double Max, double Mean, double StdDev)
{
    /// <summary>How the percentiles are computed, for reports that must say so (the jitter JSON carries it).</summary>
    public const string Method = "exact (nearest rank over all samples, no binning)";

    /// <summary>The statistics of <paramref name="values"/> (any unit; all zero for no values).</summary>
    public static LatencyStats From(ReadOnlySpan<double> values)
    {
        if (values.IsEmpty)
        {
            return new LatencyStats(0, 0, 0, 0, 0, 0, 0, 0, 0);
        }

        var sorted = values.ToArray();
        Array.Sort(sorted);
        double mean = 0, m2 = 0;
        for (var i = 0; i < sorted.Length; i++)
        {
            // Welford: stable for long runs.
            var delta = sorted[i] - mean;
            mean += delta / (i + 1);
            m2 += delta * (sorted[i] - mean);
        }

        var std = sorted.Length > 1 ? Math.Sqrt(m2 / (sorted.Length - 1)) : 0;
        return new LatencyStats(sorted.Length, sorted[0], Rank(sorted, 0.50), Rank(sorted, 0.90), Rank(sorted, 0.99), Rank(sorted, 0.999), sorted[^1], mean, std);
    }

    private static double Rank(double[] sorted, double p) => sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
}

/// <summary>The measured samples of one mode and their statistics.</summary>
/// <param name="Mode">Pinned or on demand.</param>
/// <param name="Samples">Every measured command.</param>
/// <param name="Host">Host latency statistics, in ns.</param>
/// <param name="Device">Device time (end - start cycle) statistics, in ns.</param>
/// <param name="Faults">Faults taken by the measured commands.</param>
/// <param name="Evictions">On-demand pages evicted during the measured phase.</param>
/// <param name="NonOk">Commands that did not complete OK.</param>
/// <param name="Gen0">Gen-0 collections during the measured phase.</param>
/// <param name="Gen1">Gen-1 collections during the measured phase.</param>
/// <param name="Gen2">Gen-2 collections during the measured phase.</param>
/// <param name="AllocatedBytes">Bytes allocated by every thread during the measured phase.</param>
/// <param name="FaultService">Fault service time (record's device cycle to response sent) of the measured phase's faults, in ns; null without faults.</param>
/// <param name="ServiceBytesPerFault">Bytes the fault service thread allocated per fault in the measured phase; null without faults.</param>
/// <param name="Paging">The on-demand pager's counters over the measured phase (differences); null for pinned.</param>
public sealed record JitterModeResult(BufferMode Mode, JitterSample[] Samples, LatencyStats Host, LatencyStats Device, long Faults, long Evictions, long NonOk, int Gen0, int Gen1, int Gen2, long AllocatedBytes,
    LatencyStats? FaultService = null, double? ServiceBytesPerFault = null, PagingDelta? Paging = null)
{
    /// <summary>Faults per measured command (the issue-15 target for a 16 KiB COPY: at most 2).</summary>
    public double FaultsPerCommand => Samples.Length == 0 ? 0 : (double)Faults / Samples.Length;
}

/// <summary>What the on-demand pager did over a measured phase.</summary>
/// <param name="FaultAroundPages">The regions' fault-around window, in pages.</param>
/// <param name="Prefetch">Whether each command's ranges were prefetched.</param>
/// <param name="EvictionBatches">Reclaim batches.</param>
/// <param name="EvictionFences">Fence waits of those batches.</param>
/// <param name="DirectReclaims">Batches run on a fault's or a prefetch's own path.</param>
/// <param name="FaultAroundMapped">Pages mapped by fault-around beyond the faulting pages.</param>
/// <param name="PrefetchedPages">Pages mapped by prefetch.</param>
public sealed record PagingDelta(int FaultAroundPages, bool Prefetch, long EvictionBatches, long EvictionFences, long DirectReclaims, long FaultAroundMapped, long PrefetchedPages);

/// <summary>
/// Runs a stream of DMA commands, one at a time, over buffers pinned long-term or on demand, and
/// records each command's host latency (submit to completion seen), the device's own start and end
/// cycles, and the faults it took.
/// </summary>
public static class Jitter
{
    /// <summary>
    /// Measures one <paramref name="mode"/> on <paramref name="device"/>: warm-up, then the measured commands, one at a
    /// time on queue 0 in a context of its own; starts the fault service for on-demand when none is running.
    /// </summary>
    public static async Task<JitterModeResult> RunAsync(FpgaDevice device, BufferMode mode, JitterOptions options, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        var budget = device.OnDemand.Budget;
        options.Validate(budget);
        if (mode == BufferMode.OnDemand && device.Faults is null)
        {
            device.StartFaultService(options.FaultService);
        }

        // The stream walks a working set of whole pages; on demand it is twice the budget so that
        // eviction keeps making pages fault again.
        var commandPages = (int)((options.Size + PageTableFormat.PageSize - 1) / PageTableFormat.PageSize);
        var workingPages = options.WorkingSetPages > 0 ? options.WorkingSetPages : Math.Max(2 * budget, 4 * commandPages);
        var slots = Math.Max(1, workingPages / Math.Max(1, commandPages) / (options.Operation == JitterOperation.Copy ? 2 : 1));
        var stride = (ulong)commandPages * PageTableFormat.PageSize;
        var bytes = stride * (ulong)slots;

        // Both buffers start on a 2 MiB boundary (HostBuffer aligns a buffer of 2 MiB or more), and the stream uses
        // their first `bytes`: so where its pages fall in 2 MiB chunks, TLB sets and invalidation ranges does not
        // depend on where mmap put them, and on the virtual clock the same options give the same device timestamps
        // run after run (spec 7). Only the used prefix is pinned or registered.
        var allocation = Math.Max(bytes, PageTableFormat.HugePageSize);
        using var source = HostBuffer.Allocate(allocation);
        using var destination = HostBuffer.Allocate(allocation);
        new Random(1).NextBytes(source.Span[..(int)bytes]);
        using var context = device.CreateContext(new ContextOptions { NoFault = mode == BufferMode.Pinned });
        IDisposable a, b;
        OnDemandRegion? sourceRegion = null, destinationRegion = null;
        if (mode == BufferMode.Pinned)
        {
            a = context.Pin(source.Address, bytes, DmaAccess.DeviceRead);
            b = context.Pin(destination.Address, bytes, DmaAccess.ReadWrite);
        }
        else
        {
            a = sourceRegion = context.RegisterOnDemand(source.Address, bytes, DmaAccess.DeviceRead);
            b = destinationRegion = context.RegisterOnDemand(destination.Address, bytes, DmaAccess.ReadWrite);
            if (options.FaultAroundPages is { } around)
            {
                sourceRegion.FaultAroundPages = around;
                destinationRegion.FaultAroundPages = around;
            }
        }

        var prefetch = options.Prefetch && mode == BufferMode.OnDemand ? (sourceRegion, destinationRegion) : default;

        try
        {
            var queue = device.OpenQueue(0, 64, options.Completion, options.Continuations);
            try
            {
                var samples = new JitterSample[options.Count];
                var evictionsBefore = device.OnDemand.Evictions;
                for (var i = 0; i < options.Warmup; i++)
                {
                    Prefetch(prefetch, options, stride, i % slots);
                    await IssueAsync(queue, context, options, source, destination, stride, i % slots, cancellationToken).ConfigureAwait(false);
                }

                evictionsBefore = device.OnDemand.Evictions;
                var pagingBefore = device.OnDemandStatistics;
                var service = device.Faults;
                var serviceFaultsBefore = service?.Metrics.Faults ?? 0;
                var serviceBytesBefore = service?.AllocatedBytes ?? 0;
                var gen0 = GC.CollectionCount(0);
                var gen1 = GC.CollectionCount(1);
                var gen2 = GC.CollectionCount(2);
                var allocated = GC.GetTotalAllocatedBytes(precise: false);
                for (var i = 0; i < options.Count; i++)
                {
                    var slot = (options.Warmup + i) % slots;
                    var start = Stopwatch.GetTimestamp();
                    Prefetch(prefetch, options, stride, slot);
                    var result = await IssueAsync(queue, context, options, source, destination, stride, slot, cancellationToken).ConfigureAwait(false);
                    var elapsed = Stopwatch.GetElapsedTime(start);
                    samples[i] = new JitterSample((long)elapsed.TotalNanoseconds, result.StartCycle, result.EndCycle, result.Faults, result.Status);
                    if ((i & 255) == 255)
                    {
                        progress?.Report(i + 1);
                    }
                }

                allocated = GC.GetTotalAllocatedBytes(precise: false) - allocated;
                await Task.Yield(); // F25: the statistics are not the harvesting thread's work
                progress?.Report(options.Count);
                var nsPerCycle = 1e9 / device.Info.ClockHz;
                var host = samples.Select(s => (double)s.HostNanoseconds).ToArray();
                var dev = samples.Select(s => s.DeviceNanoseconds(nsPerCycle)).ToArray();
                LatencyStats? serviceStats = null;
                double? bytesPerFault = null;
                var serviceFaults = (service?.Metrics.Faults ?? 0) - serviceFaultsBefore;
                if (service is not null && serviceFaults > 0)
                {
                    var recent = service.Metrics.RecentServiceTimes();
                    var take = (int)Math.Min(serviceFaults, recent.Length);
                    serviceStats = LatencyStats.From(recent.AsSpan(recent.Length - take).ToArray().Select(us => us * 1000).ToArray());
                    bytesPerFault = (double)(service.AllocatedBytes - serviceBytesBefore) / serviceFaults;
                }

                return new JitterModeResult(
                    mode,
                    samples,
                    LatencyStats.From(host),
                    LatencyStats.From(dev),
                    samples.Sum(s => (long)s.Faults),
                    device.OnDemand.Evictions - evictionsBefore,
                    samples.LongCount(s => s.Status != CompletionStatus.Ok),
                    GC.CollectionCount(0) - gen0,
                    GC.CollectionCount(1) - gen1,
                    GC.CollectionCount(2) - gen2,
                    allocated,
                    mode == BufferMode.OnDemand ? serviceStats : null,
                    mode == BufferMode.OnDemand ? bytesPerFault : null,
                    mode == BufferMode.OnDemand ? Delta(pagingBefore, device.OnDemandStatistics, sourceRegion!.FaultAroundPages, options.Prefetch) : null);
            }
            finally
            {
                // F25: with inline continuations this may be the thread that harvested the last completion; leave it before
                // disposing the queue (which refuses to run there) and the buffers.
                await Task.Yield();
                queue.Dispose();
            }
        }
        finally
        {
            a.Dispose();
            b.Dispose();
        }
    }

    /// <summary>
    /// Runs <paramref name="sweep"/>: at each of its values, every mode of <paramref name="modes"/> with
    /// <paramref name="options"/> but the swept setting (a budget point first sets the device's budget). Points run in
    /// the order given, each with its own warm-up; <paramref name="progress"/> hears (point, mode) as each one starts.
    /// </summary>
    public static async Task<IReadOnlyList<JitterSweepPoint>> SweepAsync(FpgaDevice device, JitterSweep sweep, JitterOptions options, IReadOnlyList<BufferMode> modes,
        IProgress<(int Point, BufferMode Mode)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(sweep);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(modes);

        // Every point is checked before the first runs, so a bad one fails the sweep before any work.
        var pointOptions = sweep.Values.Select(v => sweep.Apply(options, v)).ToArray();
        for (var i = 0; i < pointOptions.Length; i++)
        {
            pointOptions[i].Validate(sweep.Parameter == SweepParameter.Budget ? (int)sweep.Values[i] : device.OnDemand.Budget);
        }

        var points = new List<JitterSweepPoint>(sweep.Values.Count);
        for (var i = 0; i < sweep.Values.Count; i++)
        {
            if (sweep.Parameter == SweepParameter.Budget)
            {
                device.SetOnDemandBudget((int)sweep.Values[i]);
            }

            var results = new List<JitterModeResult>(modes.Count);
            foreach (var mode in modes)
            {
                progress?.Report((i, mode));
                results.Add(await RunAsync(device, mode, pointOptions[i], null, cancellationToken).ConfigureAwait(false));
            }

            points.Add(new JitterSweepPoint(sweep.Values[i], pointOptions[i], results));
        }

        return points;
    }

    private static PagingDelta Delta(OnDemandStatistics before, OnDemandStatistics after, int faultAround, bool prefetch) =>
        new(faultAround, prefetch, after.EvictionBatches - before.EvictionBatches, after.EvictionFences - before.EvictionFences, after.DirectReclaims - before.DirectReclaims,
            after.FaultAroundPages - before.FaultAroundPages, after.PrefetchedPages - before.PrefetchedPages);

    // The ranges the next command touches, mapped ahead of it (ibv_advise_mr's prefetch).
    private static void Prefetch((OnDemandRegion? Source, OnDemandRegion? Destination) regions, JitterOptions options, ulong stride, int slot)
    {
        var offset = stride * (ulong)slot;
        if (options.Operation != JitterOperation.Fill)
        {
            regions.Source?.Prefetch(offset, options.Size);
        }

        if (options.Operation != JitterOperation.Crc)
        {
            regions.Destination?.Prefetch(offset, options.Size);
        }
    }

    private static ValueTask<CommandResult> IssueAsync(CommandQueue queue, DeviceContext context, JitterOptions options, HostBuffer source, HostBuffer destination, ulong stride, int slot, CancellationToken ct)
    {
        var offset = stride * (ulong)slot;
        return options.Operation switch
        {
            JitterOperation.Copy => queue.CopyAsync(context, (ulong)source.Address + offset, (ulong)destination.Address + offset, options.Size, ct),
            JitterOperation.Fill => queue.FillAsync(context, (ulong)destination.Address + offset, options.Size, 0x0123_4567_89AB_CDEF, ct),
            _ => queue.Crc32CAsync(context, (ulong)source.Address + offset, options.Size, ct),
        };
    }
}
