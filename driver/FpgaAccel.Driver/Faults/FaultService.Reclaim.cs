using FpgaAccel.Driver.Mmu;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver.Faults;

/// <summary>The fault service's reclaim between batches of records (issue 15, decision F3).</summary>
public sealed partial class FaultService
{
    /// <summary>
    /// After a drained batch has been answered (the device is already running on): when on-demand pages passed the high
    /// watermark, evict down to the low watermark in one batch (one invalidation per context, one fence). This is where
    /// eviction fences go in steady state, off every fault's path. A batch that fails (a fence that never came) is logged
    /// and left: the faults were answered, and the next fault that finds the budget full reclaims on its own path. A lost
    /// device ends the service as everywhere else.
    /// </summary>
    private readonly FaultStageTrace? _trace;

    /// <summary>
    /// Where the service time went, step by step (median, p99, mean over the last 16384 faults of each step), when
    /// started with <see cref="FaultServiceOptions.TraceStages"/>; empty otherwise.
    /// </summary>
    public IReadOnlyList<FaultStageTime> StageTimes => _trace?.Summary() ?? [];

    private void ReclaimAfterBatch()
    {
        try
        {
            _trace?.Restart();
            if (_mmu.Pager.ReclaimAboveHighWatermark() > 0)
            {
                _trace?.Mark(FaultStage.Reclaim);
            }
        }
        catch (FpgaAccelException ex) when (ex is not DeviceLostException)
        {
            LogReclaimFailed(_logger, ex);
        }
    }

    [LoggerMessage(EventId = 1501, Level = LogLevel.Warning, Message = "On-demand reclaim after a fault batch failed; the next fault over the budget reclaims on its own path")]
    private static partial void LogReclaimFailed(ILogger logger, Exception ex);
}
