using System.Diagnostics.Metrics;

namespace FpgaAccel.Driver.Faults;

/// <summary>
/// The fault path's counters as <see cref="System.Diagnostics.Metrics"/> instruments (meter
/// <c>FpgaAccel.Faults</c>), and as plain totals for reports. Recording allocates nothing.
/// </summary>
public sealed class FaultMetrics : IDisposable
{
    /// <summary>Name of the meter, for listeners (dotnet-counters, OpenTelemetry).</summary>
    public const string MeterName = "FpgaAccel.Faults";

    private readonly Meter _meter;
    private readonly Counter<long> _faults;
    private readonly Counter<long> _retries;
    private readonly Counter<long> _dropins;
    private readonly Counter<long> _killedDropins;
    private readonly Counter<long> _aborts;
    private readonly Counter<long> _badRecords;
    private readonly Counter<long> _failures;
    private readonly Histogram<double> _serviceTime;
    private long _faultCount;
    private long _retryCount;
    private long _dropinCount;
    private long _killedDropinCount;
    private long _abortCount;
    private long _badRecordCount;
    private long _failureCount;
    private readonly double[] _recentServiceTimes = new double[RecentCapacity];
    private long _serviceTimeCount;

    /// <summary>How many recent service times are kept for <see cref="RecentServiceTimes"/>.</summary>
    public const int RecentCapacity = 1 << 16;

    private readonly Func<long> _limitEvictions;

    internal FaultMetrics(Func<long> evictions, Func<int> onDemandPinned, Func<long>? limitEvictions = null)
    {
        _limitEvictions = limitEvictions ?? (() => 0);
        _meter = new Meter(MeterName);
        _faults = _meter.CreateCounter<long>("fpgaaccel.faults", "{fault}", "Fault records serviced");
        _retries = _meter.CreateCounter<long>("fpgaaccel.fault.retries", "{fault}", "Faults answered RETRY");
        _dropins = _meter.CreateCounter<long>("fpgaaccel.fault.dropins", "{fault}", "Faults answered DROPIN");
        _killedDropins = _meter.CreateCounter<long>("fpgaaccel.fault.dropins_killed", "{fault}",
            "DROPINs sent after an invalidation was issued since the fault's record was read (the device ignores them: spec 4.4 kill rule)");
        _aborts = _meter.CreateCounter<long>("fpgaaccel.fault.aborts", "{fault}", "Faults answered ABORT");
        _badRecords = _meter.CreateCounter<long>("fpgaaccel.fault.bad_records", "{record}", "Fault records rejected by validation");
        _failures = _meter.CreateCounter<long>("fpgaaccel.fault.failures", "{fault}",
            "Faults whose service failed (the page could not be pinned or mapped, an eviction's fence timed out): each answered ABORT");
        _meter.CreateObservableCounter("fpgaaccel.ondemand.evictions", evictions, "{page}", "On-demand pages evicted under the budget");
        _meter.CreateObservableGauge("fpgaaccel.ondemand.pinned_pages", onDemandPinned, "{page}", "Pages pinned on demand now");
        _meter.CreateObservableCounter("fpgaaccel.ondemand.limit_evictions", _limitEvictions, "{page}",
            "On-demand pages given back because the locked-memory limit, not the budget, ran out on the fault path");
        _serviceTime = _meter.CreateHistogram<double>("fpgaaccel.fault.service_time", "us", "From the fault record's device cycle to its response being sent");
    }

    /// <summary>Fault records serviced (answered RETRY, DROPIN or ABORT) since the service started.</summary>
    public long Faults => Interlocked.Read(ref _faultCount);

    /// <summary>Faults answered RETRY: the device walks the page table again (spec 4.4).</summary>
    public long Retries => Interlocked.Read(ref _retryCount);

    /// <summary>Faults answered DROPIN: the translation went with the answer, saving the device a walk.</summary>
    public long Dropins => Interlocked.Read(ref _dropinCount);

    /// <summary>DROPINs an invalidation had already killed when they were sent (the device ignores them: spec 4.4).</summary>
    public long KilledDropins => Interlocked.Read(ref _killedDropinCount);

    /// <summary>Faults answered ABORT: no pin or region covered the address with the access asked for.</summary>
    public long Aborts => Interlocked.Read(ref _abortCount);

    /// <summary>Fault records rejected by validation (sequence, context, reserved fields, address): a device not to be trusted.</summary>
    public long BadRecords => Interlocked.Read(ref _badRecordCount);

    /// <summary>
    /// Faults whose service failed (the page could not be pinned or its table built, an eviction's fence timed out):
    /// each was answered ABORT, and the service went on.
    /// </summary>
    public long Failures => Interlocked.Read(ref _failureCount);

    /// <summary>On-demand pages given back because the locked-memory limit, not the budget, ran out on the fault path (device-wide).</summary>
    public long LimitEvictions => _limitEvictions();

    /// <summary>Removes the meter, so listeners stop seeing its instruments; the fault service does this when it stops.</summary>
    public void Dispose() => _meter.Dispose();

    internal void Fault()
    {
        Interlocked.Increment(ref _faultCount);
        _faults.Add(1);
    }

    internal void Retry()
    {
        Interlocked.Increment(ref _retryCount);
        _retries.Add(1);
    }

    internal void Dropin(bool raced)
    {
        Interlocked.Increment(ref _dropinCount);
        _dropins.Add(1);
        if (raced)
        {
            Interlocked.Increment(ref _killedDropinCount);
            _killedDropins.Add(1);
        }
    }

    internal void Abort()
    {
        Interlocked.Increment(ref _abortCount);
        _aborts.Add(1);
    }

    internal void Failure()
    {
        Interlocked.Increment(ref _failureCount);
        _failures.Add(1);
    }

    internal void BadRecord()
    {
        Interlocked.Increment(ref _badRecordCount);
        _badRecords.Add(1);
    }

    /// <summary>
    /// The most recent fault service times in microseconds (record's device cycle to response sent), up to
    /// <see cref="RecentCapacity"/>, oldest first. Kept in a preallocated ring: recording allocates nothing.
    /// </summary>
    public double[] RecentServiceTimes()
    {
        var count = Interlocked.Read(ref _serviceTimeCount);
        var n = (int)Math.Min(count, RecentCapacity);
        var result = new double[n];
        for (var i = 0; i < n; i++)
        {
            result[i] = Volatile.Read(ref _recentServiceTimes[(count - n + i) % RecentCapacity]);
        }

        return result;
    }

    internal void ServiceTime(double microseconds)
    {
        _serviceTime.Record(microseconds);
        var slot = Interlocked.Increment(ref _serviceTimeCount) - 1;
        Volatile.Write(ref _recentServiceTimes[slot % RecentCapacity], microseconds);
    }
}
