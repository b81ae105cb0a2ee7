using System.Diagnostics;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver.Faults;

/// <summary>A step of one fault's service, timed by <see cref="FaultServiceOptions.TraceStages"/> (issue 15).</summary>
public enum FaultStage
{
    /// <summary>The device detected the fault (the record's cycle) to the service's drain beginning: MSI-X, eventfd, epoll wake-up.</summary>
    Wake,

    /// <summary>Drain began (or the previous record was answered) to this record: IRQ_STATUS, FQ_TAIL, the record read and validated.</summary>
    Ring,

    /// <summary>The lock-free mirror lookup (and the wait for a removal in progress, if any).</summary>
    Lookup,

    /// <summary>Places taken in the budget (a direct reclaim's fence, when the budget was full).</summary>
    Reserve,

    /// <summary>The IOMMU map of the run (the kernel's pin on a board; the model's IOMMU here).</summary>
    Pin,

    /// <summary>The page-table update and the mirror, under the context lock.</summary>
    Install,

    /// <summary>The pager's record of the pages mapped.</summary>
    Record,

    /// <summary>FAULT_PTE and FAULT_RESP written, metrics recorded.</summary>
    Respond,

    /// <summary>A reclaim batch after a drain (per batch, not per fault).</summary>
    Reclaim,
}

/// <summary>The time of each <see cref="FaultStage"/> over the faults traced: median and 99th percentile, in microseconds.</summary>
/// <param name="Stage">The step.</param>
/// <param name="Count">Samples (faults, or reclaim batches).</param>
/// <param name="P50Microseconds">Median.</param>
/// <param name="P99Microseconds">99th percentile.</param>
/// <param name="MeanMicroseconds">Mean.</param>
public sealed record FaultStageTime(FaultStage Stage, long Count, double P50Microseconds, double P99Microseconds, double MeanMicroseconds);

/// <summary>
/// Where one fault's service time goes: Stopwatch timestamps at each step of the fault service thread's path, kept in
/// preallocated rings (the fault path allocates nothing with tracing on either). Only the service thread records;
/// a step reached by another thread (a caller's prefetch) is ignored. Off by default: each mark costs a timestamp.
/// </summary>
internal sealed class FaultStageTrace
{
    private const int Capacity = 1 << 14;
    private readonly IDeviceBackend _backend;
    private readonly double _microsecondsPerCycle;
    private readonly double[][] _samples;
    private readonly long[] _counts;
    private int _owner;
    private long _last;
    private ulong _drainCycle;

    public FaultStageTrace(IDeviceBackend backend, ulong clockHz)
    {
        _backend = backend;
        _microsecondsPerCycle = 1e6 / clockHz;
        var stages = Enum.GetValues<FaultStage>().Length;
        _samples = new double[stages][];
        for (var i = 0; i < stages; i++)
        {
            _samples[i] = new double[Capacity];
        }

        _counts = new long[stages];
    }

    /// <summary>The service thread: only its marks count.</summary>
    public void Own() => _owner = Environment.CurrentManagedThreadId;

    /// <summary>A drain begins: the clock for the Ring step, and the device's cycle for the Wake step.</summary>
    public void BeginBatch()
    {
        _drainCycle = _backend.Read64(Fa1Registers.Cycles);
        _last = Stopwatch.GetTimestamp();
    }

    /// <summary>Wake: the record's cycle to the drain's.</summary>
    public void Wake(ulong recordCycle)
    {
        if (_drainCycle >= recordCycle && _drainCycle != Fa1Identity.DeviceLost)
        {
            Add(FaultStage.Wake, (_drainCycle - recordCycle) * _microsecondsPerCycle);
        }
    }

    /// <summary>Starts the clock again without recording (before a reclaim).</summary>
    public void Restart() => _last = Stopwatch.GetTimestamp();

    /// <summary>The step that just ended: the time since the previous mark.</summary>
    public void Mark(FaultStage stage)
    {
        if (Environment.CurrentManagedThreadId != _owner)
        {
            return;
        }

        var now = Stopwatch.GetTimestamp();
        Add(stage, Stopwatch.GetElapsedTime(_last, now).TotalMicroseconds);
        _last = now;
    }

    public IReadOnlyList<FaultStageTime> Summary()
    {
        var result = new List<FaultStageTime>();
        foreach (var stage in Enum.GetValues<FaultStage>())
        {
            var n = (int)Math.Min(Interlocked.Read(ref _counts[(int)stage]), Capacity);
            if (n == 0)
            {
                continue;
            }

            var sorted = _samples[(int)stage].AsSpan(0, n).ToArray();
            Array.Sort(sorted);
            result.Add(new FaultStageTime(stage, Interlocked.Read(ref _counts[(int)stage]), sorted[(n - 1) / 2], sorted[Math.Min(n - 1, (int)Math.Ceiling(0.99 * n) - 1)], sorted.Average()));
        }

        return result;
    }

    private void Add(FaultStage stage, double microseconds)
    {
        var slot = Interlocked.Increment(ref _counts[(int)stage]) - 1;
        _samples[(int)stage][slot % Capacity] = microseconds;
    }
}
