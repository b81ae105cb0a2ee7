using System.Diagnostics.Metrics;

namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// The on-demand paging instruments of one device (meter <c>FpgaAccel.Driver</c>): pages present, the budget and its
/// watermarks, evictions and their batches and fences, fault-around and prefetch. Observable instruments only: they
/// read the pager's counters when a listener (dotnet-counters, OpenTelemetry) collects, so the fault path records
/// nothing and allocates nothing for them. The fault service's own instruments are in meter <c>FpgaAccel.Faults</c>
/// (<see cref="Faults.FaultMetrics"/>).
/// </summary>
internal sealed class PagingMetrics : IDisposable
{
    /// <summary>Name of the meter, for listeners: <c>dotnet-counters monitor --counters FpgaAccel.Driver,FpgaAccel.Faults</c>.</summary>
    public const string MeterName = "FpgaAccel.Driver";

    private readonly Meter _meter;

    public PagingMetrics(DeviceMmu mmu)
    {
        var pager = mmu.Pager;
        _meter = new Meter(MeterName);
        _meter.CreateObservableGauge("fpgaaccel.ondemand.present_pages", () => pager.PinnedPages, "{page}", "Pages pinned on demand now (faulted in, fault-around, prefetched)");
        _meter.CreateObservableGauge("fpgaaccel.ondemand.budget_pages", () => pager.Budget, "{page}", "The on-demand budget");
        _meter.CreateObservableGauge("fpgaaccel.ondemand.high_watermark_pages", () => pager.HighWatermark, "{page}", "Pages present above which a reclaim batch runs");
        _meter.CreateObservableGauge("fpgaaccel.ondemand.low_watermark_pages", () => pager.LowWatermark, "{page}", "Pages present a reclaim batch evicts down to");
        _meter.CreateObservableCounter("fpgaaccel.ondemand.evicted_pages", () => pager.Evictions, "{page}", "On-demand pages evicted");
        _meter.CreateObservableCounter("fpgaaccel.ondemand.eviction_batches", () => pager.EvictionBatches, "{batch}", "Reclaim batches (each one range invalidation per context and one fence)");
        _meter.CreateObservableCounter("fpgaaccel.ondemand.eviction_fences", () => pager.EvictionFences, "{fence}", "Fence waits of reclaim batches");
        _meter.CreateObservableCounter("fpgaaccel.ondemand.direct_reclaims", () => pager.DirectReclaims, "{batch}", "Reclaim batches run on a fault's or prefetch's own path (budget full)");
        _meter.CreateObservableCounter("fpgaaccel.ondemand.fault_around_pages", () => mmu.FaultAroundTotal, "{page}", "Pages mapped by fault-around beyond the faulting pages");
        _meter.CreateObservableCounter("fpgaaccel.ondemand.prefetched_pages", () => mmu.PrefetchedTotal, "{page}", "Pages mapped by OnDemandRegion.Prefetch");
    }

    public void Dispose() => _meter.Dispose();
}
