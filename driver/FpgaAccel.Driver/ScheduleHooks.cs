using System.Runtime.CompilerServices;

namespace FpgaAccel.Driver;

/// <summary>A point in the driver's concurrency protocols where a test harness may change the schedule.</summary>
public enum SchedulePoint
{
    /// <summary>A removal (unpin, unregister, eviction) changed the mirror and the table, and is about to invalidate.</summary>
    RemovalTableChanged,

    /// <summary>A removal's fence passed; the IOMMU mapping is released next.</summary>
    RemovalFenced,

    /// <summary>A pin wrote its table and mirror entries and is about to settle a 2 MiB promotion.</summary>
    PinPublished,

    /// <summary>An invalidation was issued (INV_CMD written).</summary>
    InvalidationIssued,

    /// <summary>The fault path looked a page up without a lock.</summary>
    FaultLookedUp,

    /// <summary>The fault path pinned an on-demand page and is about to install it under the lock.</summary>
    FaultPagePinned,

    /// <summary>The fault service is about to write a response (DROPIN, RETRY or ABORT).</summary>
    FaultAnswering,

    /// <summary>The pager chose a page to evict.</summary>
    EvictionChosen,

    /// <summary>A submission holds its credit and is about to write the ring.</summary>
    SubmitPosting,

    /// <summary>A harvest of the completion ring is about to begin.</summary>
    HarvestBegun,

    /// <summary>A queue is closing (no new submission gets through).</summary>
    QueueClosing,

    /// <summary>The fault service is stopping.</summary>
    FaultServiceStopping,

    /// <summary>A host buffer is releasing its pins and regions before it frees its memory.</summary>
    BufferReleasing,

    /// <summary>A pin or a registration begins (before the context lock).</summary>
    AddBegun,

    /// <summary>An unpin or an unregistration begins (before the context lock).</summary>
    RemovalBegun,

    /// <summary>A thread begins waiting for an invalidation fence.</summary>
    FenceWaiting,

    /// <summary>A submitter found the ring full and waits for a credit.</summary>
    CreditWaiting,

    /// <summary>A completion was matched to its command and is handed to the caller.</summary>
    CompletionDelivered,
}

/// <summary>Called at each <see cref="SchedulePoint"/> a thread reaches while installed (see <see cref="ScheduleHooks"/>).</summary>
public interface IScheduleExplorer
{
    /// <summary>The calling thread reached <paramref name="point"/>; the explorer may delay it (yield, spin, sleep) and must return.</summary>
    void Reached(SchedulePoint point);
}

/// <summary>
/// Schedule points for interleaving exploration (the stress harness's seeded schedules): a test harness installs an
/// explorer, and each thread that reaches a point in the driver's protocols calls it, so the harness can perturb the
/// order in which threads pass those points (PCT style) and count the interleavings it produced.
/// </summary>
/// <remarks>
/// Cost when nothing is installed: one read of a static field and a null check (no call, no allocation: the fault
/// and completion paths stay allocation-free). There is no point in <c>AddressMirror.Lookup</c>, whose machine code is
/// checked to make no call. An explorer can only delay: whatever it throws is swallowed at the point, so the protocol
/// it interrupts always runs on. Process-wide (every device); install one only in a harness, and uninstall it after.
/// </remarks>
public static class ScheduleHooks
{
    private static IScheduleExplorer? s_explorer;

    /// <summary>Installs <paramref name="explorer"/> (null uninstalls); returns the one installed before.</summary>
    public static IScheduleExplorer? Install(IScheduleExplorer? explorer) => Interlocked.Exchange(ref s_explorer, explorer);

    /// <summary>A schedule point: a null check unless an explorer is installed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void At(SchedulePoint point)
    {
        var explorer = s_explorer;
        if (explorer is not null)
        {
            Reach(explorer, point);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Reach(IScheduleExplorer explorer, SchedulePoint point)
    {
        try
        {
            explorer.Reached(point);
        }
        catch (Exception)
        {
            // An explorer may only delay: the protocol it interrupted runs on.
        }
    }
}
