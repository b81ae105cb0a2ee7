namespace FpgaAccel.Driver.Mmu;

/// <summary>The on-demand pager's counters at one moment (device-wide, cumulative since open unless said otherwise).</summary>
/// <param name="PresentPages">Pages pinned on demand now.</param>
/// <param name="Budget">The budget, in pages.</param>
/// <param name="HighWatermark">Pages present above which the fault service reclaims a batch after answering.</param>
/// <param name="LowWatermark">Pages present a reclaim batch evicts down to.</param>
/// <param name="Evictions">Pages evicted (budget and locked-memory limit).</param>
/// <param name="EvictionBatches">Reclaim batches that evicted at least one page.</param>
/// <param name="EvictionFences">Fence waits of reclaim batches: one per batch.</param>
/// <param name="DirectReclaims">Batches run on a fault's or a prefetch's own path because the budget was full.</param>
/// <param name="FaultAroundPages">Pages mapped by fault-around beyond the faulting pages.</param>
/// <param name="PrefetchedPages">Pages mapped by <see cref="OnDemandRegion.Prefetch"/>.</param>
/// <param name="OverBudget">Faults that went over the budget so a stalled access kept its pages (normally 0).</param>
public sealed record OnDemandStatistics(int PresentPages, int Budget, int HighWatermark, int LowWatermark, long Evictions, long EvictionBatches,
    long EvictionFences, long DirectReclaims, long FaultAroundPages, long PrefetchedPages, long OverBudget)
{
    internal static OnDemandStatistics Read(DeviceMmu mmu)
    {
        var p = mmu.Pager;
        return new OnDemandStatistics(p.PinnedPages, p.Budget, p.HighWatermark, p.LowWatermark, p.Evictions, p.EvictionBatches, p.EvictionFences,
            p.DirectReclaims, mmu.FaultAroundTotal, mmu.PrefetchedTotal, p.OverBudget);
    }
}
