using System.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Diagnostics;

/// <summary>What <c>fpgaaccel stress --inject</c> injects (issue 12).</summary>
public enum InjectionKind
{
    /// <summary>Surprise removal; the device returns after a while (spec 8: as after a management reset).</summary>
    Loss,

    /// <summary>One queue's engine stops consuming descriptors: its commands pass their deadline.</summary>
    Hang,

    /// <summary>The next MSI-X messages are lost: the health check finds their completions.</summary>
    LostIrq,

    /// <summary>The device goes FATAL, each cause in turn.</summary>
    Fatal,

    /// <summary>A garbage record in a fault ring or completion ring.</summary>
    Garbage,
}

/// <summary>A bad <c>--inject</c> list: names the value, the rule and the fix.</summary>
public sealed class InvalidInjectionException : ArgumentException
{
    /// <summary><paramref name="value"/> broke <paramref name="rule"/>.</summary>
    public InvalidInjectionException(string value, string rule)
        : base($"--inject '{value}' is invalid: {rule}. Give a comma-separated list of loss, hang, lost-irq, fatal, garbage (for example --inject loss,fatal).")
    {
        Value = value;
    }

    /// <summary>The value given.</summary>
    public string Value { get; }
}

/// <summary>How the recovery stress runs.</summary>
public sealed record RecoveryStressOptions
{
    /// <summary>How long to inject.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Seed of the injection schedule and of the traffic.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>What to inject, in the seeded order.</summary>
    public IReadOnlyList<InjectionKind> Kinds { get; init; } = Enum.GetValues<InjectionKind>();

    /// <summary>Queues with traffic: pinned and on-demand buffers, interrupt and poll mode, in turn.</summary>
    public int Queues { get; init; } = 4;

    /// <summary>How long a lost device stays off the bus.</summary>
    public TimeSpan LossDuration { get; init; } = TimeSpan.FromMilliseconds(150);

    /// <summary>Parses a comma-separated list (loss, hang, lost-irq, fatal, garbage).</summary>
    public static IReadOnlyList<InjectionKind> ParseKinds(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            throw new InvalidInjectionException(text ?? string.Empty, "the list is empty");
        }

        var kinds = new List<InjectionKind>();
        foreach (var raw in text.Split(','))
        {
            var name = raw.Trim().ToLowerInvariant();
            InjectionKind kind = name switch
            {
                "loss" => InjectionKind.Loss,
                "hang" => InjectionKind.Hang,
                "lost-irq" => InjectionKind.LostIrq,
                "fatal" => InjectionKind.Fatal,
                "garbage" => InjectionKind.Garbage,
                "" => throw new InvalidInjectionException(text, "an entry of the list is empty"),
                _ => throw new InvalidInjectionException(text, $"'{raw.Trim()}' is not an injection"),
            };
            if (kinds.Contains(kind))
            {
                throw new InvalidInjectionException(text, $"'{raw.Trim()}' is named twice");
            }

            kinds.Add(kind);
        }

        return kinds;
    }
}

/// <summary>What the recovery stress saw.</summary>
public sealed record RecoveryStressReport
{
    /// <summary>Injections made.</summary>
    public long Injections { get; init; }

    /// <summary>Injections by kind.</summary>
    public IReadOnlyDictionary<string, long> InjectionsByKind { get; init; } = new Dictionary<string, long>();

    /// <summary>Injections after which the device served every queue again (must equal <see cref="Injections"/>).</summary>
    public long Recoveries { get; init; }

    /// <summary>Recover() calls that reset the device (injections that failed it: loss, hang, fatal, and garbage that overflowed a ring).</summary>
    public long Resets { get; init; }

    /// <summary>Commands that claimed success.</summary>
    public long Commands { get; init; }

    /// <summary>Bytes compared after those commands.</summary>
    public long BytesVerified { get; init; }

    /// <summary>Commands that claimed success with wrong data.</summary>
    public long DataErrors { get; init; }

    /// <summary>Commands released with a failure, by exception type.</summary>
    public IReadOnlyDictionary<string, long> FailedCommands { get; init; } = new Dictionary<string, long>();

    /// <summary>Completions the health check found in interrupt-mode rings (lost MSI-X messages).</summary>
    public long CompletionsFoundByHealthCheck { get; init; }

    /// <summary>From each injection to the last waiter released: median, in milliseconds.</summary>
    public double ReleaseP50Ms { get; init; }

    /// <summary>From each injection to the last waiter released: maximum, in milliseconds.</summary>
    public double ReleaseMaxMs { get; init; }

    /// <summary>The injection that took longest to release.</summary>
    public string ReleaseMaxKind { get; init; } = string.Empty;

    /// <summary>Failures no injection caused (a deadline passed under load): should be 0.</summary>
    public long UnexpectedFailures { get; init; }

    /// <summary>What went wrong, if anything.</summary>
    public IReadOnlyList<string> Failures { get; init; } = [];

    /// <summary>No data error, every injection recovered, every release under 100 ms, nothing unexpected.</summary>
    public bool Passed => Failures.Count == 0;
}

/// <summary>
/// <c>fpgaaccel stress --inject</c> (issue 12): traffic on several queues (pinned and on-demand buffers, interrupt and
/// poll mode), injections from <see cref="FpgaDevice.FaultInjection"/> on a seeded schedule, Recover() after each that
/// fails the device, every byte of every command that claimed success verified, and the time from each injection to the
/// last waiter released.
/// </summary>
public static class RecoveryStress
{
    /// <summary>The release bound issue 12 sets.</summary>
    public static readonly TimeSpan ReleaseBound = TimeSpan.FromMilliseconds(100);

    // How long a lost-irq or garbage injection must leave the device Ready, after every queue progressed, to count as handled.
    private static readonly TimeSpan s_settleTime = TimeSpan.FromMilliseconds(30);

    private const int BufferBytes = 16 * 1024;

    // Commands every worker completes, uncounted, before the first injection (Run.WarmUpAsync), and the bound on that.
    private const int WarmUpCommands = 20;
    private static readonly TimeSpan s_warmUpBound = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The device options the run needs: a short command deadline (a stopped engine is a hang within the release bound)
    /// and a fast health check.
    /// </summary>
    public static FpgaDeviceOptions Configure(FpgaDeviceOptions options) => options with
    {
        DeviceTimeout = TimeSpan.FromMilliseconds(50),
        HealthCheckInterval = TimeSpan.FromMilliseconds(5),
        RecoverTimeout = TimeSpan.FromSeconds(5),
    };

    /// <summary>Runs the stress on <paramref name="device"/> (which must offer fault injection: the model).</summary>
    public static async Task<RecoveryStressReport> RunAsync(FpgaDevice device, RecoveryStressOptions options, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        var inject = device.FaultInjection ?? throw new InvalidDeviceOptionException("backend", device.Info.Backend,
            "fault injection needs the model (--backend model); a board cannot be made to fail on purpose");
        if (options.Kinds.Count == 0)
        {
            throw new InvalidInjectionException(string.Empty, "the list is empty");
        }

        var run = new Run(device, options);
        device.StartFaultService(new FaultServiceOptions());
        using var context = device.CreateContext();
        var workers = new List<Worker>();
        try
        {
            for (var q = 0; q < Math.Min(options.Queues, device.Info.Capabilities.Queues); q++)
            {
                workers.Add(new Worker(run, context, device.OpenQueue(q, 16, q % 4 < 2 ? CompletionMode.Interrupt : CompletionMode.Poll), onDemand: q % 2 == 1, options.Seed * 31 + q));
            }

            var traffic = workers.Select(w => Task.Run(w.RunAsync)).ToArray();
            await run.InjectAsync(inject, workers, progress).ConfigureAwait(false);
            run.Stop();
            await Task.WhenAll(traffic).ConfigureAwait(false);
        }
        finally
        {
            foreach (var w in workers)
            {
                w.Dispose();
            }
        }

        return run.Report(device);
    }

    private sealed class Run(FpgaDevice device, RecoveryStressOptions options)
    {
        private readonly List<double> _releases = [];
        private readonly Dictionary<string, long> _byKind = [];
        private readonly Dictionary<string, long> _failed = [];
        private readonly List<string> _failures = [];
        private TaskCompletionSource _resume = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private volatile bool _stopping;
        private long _injections;
        private long _recoveries;
        private long _resets;
        private long _commands;
        private long _bytes;
        private long _dataErrors;
        private long _unexpected;
        private double _maxRelease;
        private string _maxKind = string.Empty;

        public FpgaDevice Device => device;

        public bool Stopping => _stopping;

        public Task Resume => Volatile.Read(ref _resume).Task;

        public void Stop()
        {
            _stopping = true;
            Volatile.Read(ref _resume).TrySetResult();
        }

        public void Verified(long bytes)
        {
            Interlocked.Increment(ref _commands);
            Interlocked.Add(ref _bytes, bytes);
        }

        public void DataError(string what)
        {
            Interlocked.Increment(ref _dataErrors);
            lock (_failures)
            {
                if (_failures.Count < 20)
                {
                    _failures.Add("data error: " + what);
                }
            }
        }

        public void CommandFailed(Exception ex)
        {
            lock (_failed)
            {
                var name = ex.GetType().Name;
                _failed[name] = _failed.GetValueOrDefault(name) + 1;
            }
        }

        public async Task InjectAsync(Driver.Backends.IDeviceFaultInjection inject, List<Worker> workers, Action<string>? progress)
        {
            var rng = new Random(options.Seed);
            var clock = Stopwatch.StartNew();
            var fatalCause = 0;
            if (!await WarmUpAsync(workers).ConfigureAwait(false))
            {
                return;
            }

            while (clock.Elapsed < options.Duration)
            {
                await Task.Delay(rng.Next(20, 80)).ConfigureAwait(false);
                if (device.State != DeviceState.Ready)
                {
                    // A failure no injection caused: count it, and recover so the run goes on.
                    Interlocked.Increment(ref _unexpected);
                    AddFailure($"unexpected failure: {device.Failure?.Message}");
                    await RecoverAsync(workers).ConfigureAwait(false);
                    continue;
                }

                var kind = options.Kinds[rng.Next(options.Kinds.Count)];
                var before = workers.Select(w => w.Completed).ToArray();
                var epoch = workers.Select(w => w.Failures).ToArray();
                var t0 = Stopwatch.GetTimestamp();
                switch (kind)
                {
                    case InjectionKind.Loss:
                        inject.RemoveFromBus(options.LossDuration);
                        break;
                    case InjectionKind.Hang:
                        inject.StopEngine(rng.Next(workers.Count));
                        break;
                    case InjectionKind.LostIrq:
                        inject.LoseInterrupts(rng.Next(1, 4));
                        break;
                    case InjectionKind.Fatal:
                        inject.RaiseFatal((FatalCause)(1 + (fatalCause++ % 3)), (uint)rng.Next());
                        break;
                    default:
                        inject.Garbage(rng);
                        break;
                }

                _injections++;
                _byKind[Name(kind)] = _byKind.GetValueOrDefault(Name(kind)) + 1;
                var failing = kind is InjectionKind.Loss or InjectionKind.Hang or InjectionKind.Fatal;
                var progressed = false;
                var progressedAt = 0L;
                if (!failing)
                {
                    // Lost IRQs are found by the health check and garbage is ignored: every waiter at the injection is
                    // released by a completion. Garbage that overflowed a ring fails the device instead.
                    progressed = await Until(() => device.State != DeviceState.Ready || workers.Select((w, i) => w.Completed > before[i] || w.Failures > epoch[i]).All(x => x), TimeSpan.FromSeconds(5)).ConfigureAwait(false)
                        && device.State == DeviceState.Ready;
                    progressedAt = Stopwatch.GetTimestamp();
                    if (progressed)
                    {
                        // Settle: a garbage tail jump fails the device when the fault service reads FQ_TAIL, which may
                        // come after every queue progressed; that failure is this injection's, not an unexpected one.
                        await Task.Delay(s_settleTime).ConfigureAwait(false);
                        progressed = device.State == DeviceState.Ready;
                    }

                    if (!progressed && device.State == DeviceState.Ready)
                    {
                        AddFailure($"{Name(kind)}: a queue made no progress within 5 s");
                        Stop();
                        return;
                    }
                }

                double released;
                if (!progressed)
                {
                    // Every worker ends its command with the failure (or finds the device failed at once).
                    if (!await Until(() => workers.Select((w, i) => w.Failures > epoch[i]).All(x => x), TimeSpan.FromSeconds(5)).ConfigureAwait(false))
                    {
                        AddFailure($"{Name(kind)}: a worker was not released within 5 s (state {device.State})");
                        Stop();
                        return;
                    }

                    released = workers.Max(w => Stopwatch.GetElapsedTime(t0, w.LastFailureAt).TotalMilliseconds);
                    if (!await RecoverAsync(workers).ConfigureAwait(false))
                    {
                        return;
                    }

                    _recoveries++;
                }
                else
                {
                    released = Stopwatch.GetElapsedTime(t0, progressedAt).TotalMilliseconds;
                    _recoveries++;
                }

                _releases.Add(released);
                if (released > _maxRelease)
                {
                    _maxRelease = released;
                    _maxKind = Name(kind);
                }

                if (progress is not null && _injections % 25 == 0)
                {
                    progress($"{clock.Elapsed.TotalSeconds:0}s: {_injections} injections, {_recoveries} recoveries, {Interlocked.Read(ref _commands)} commands verified");
                }
            }
        }

        public RecoveryStressReport Report(FpgaDevice device)
        {
            var sorted = _releases.OrderBy(x => x).ToArray();
            var failures = new List<string>(_failures);
            if (_dataErrors > 0 && failures.All(f => !f.StartsWith("data error", StringComparison.Ordinal)))
            {
                failures.Add($"{_dataErrors} data errors");
            }

            if (_recoveries != _injections)
            {
                failures.Add($"{_recoveries} recoveries for {_injections} injections");
            }

            if (_maxRelease >= ReleaseBound.TotalMilliseconds)
            {
                failures.Add($"release took {_maxRelease:0.0} ms after a {_maxKind} injection, over the {ReleaseBound.TotalMilliseconds:0} ms bound");
            }

            if (_injections == 0)
            {
                failures.Add("no injection was made: run longer");
            }

            return new RecoveryStressReport
            {
                Injections = _injections,
                InjectionsByKind = _byKind,
                Recoveries = _recoveries,
                Resets = _resets,
                Commands = Interlocked.Read(ref _commands),
                BytesVerified = Interlocked.Read(ref _bytes),
                DataErrors = Interlocked.Read(ref _dataErrors),
                FailedCommands = _failed,
                CompletionsFoundByHealthCheck = device.CompletionsFoundByHealthCheck,
                ReleaseP50Ms = sorted.Length == 0 ? 0 : sorted[sorted.Length / 2],
                ReleaseMaxMs = _maxRelease,
                ReleaseMaxKind = _maxKind,
                UnexpectedFailures = Interlocked.Read(ref _unexpected),
                Failures = failures,
            };
        }

        private static string Name(InjectionKind kind) => kind == InjectionKind.LostIrq ? "lost-irq" : kind.ToString().ToLowerInvariant();

        private static async Task<bool> Until(Func<bool> condition, TimeSpan bound)
        {
            var clock = Stopwatch.StartNew();
            while (!condition())
            {
                if (clock.Elapsed > bound)
                {
                    return false;
                }

                await Task.Delay(1).ConfigureAwait(false);
            }

            return true;
        }

        // Traffic first, not counted: every worker completes WarmUpCommands commands with the device Ready throughout. The
        // first command down each path compiles its code, which with the CLI's full-optimization JIT (decision F23) can
        // take longer than the run's 50 ms deadline; a device the health check failed for that is recovered and the
        // warm-up starts over. Bounded by WarmUpBound.
        private async Task<bool> WarmUpAsync(List<Worker> workers)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < s_warmUpBound)
            {
                var before = workers.Select(w => w.Completed).ToArray();
                var done = await Until(() => device.State != DeviceState.Ready || workers.Select((w, i) => w.Completed >= before[i] + WarmUpCommands).All(x => x),
                    s_warmUpBound - clock.Elapsed).ConfigureAwait(false);
                if (done && device.State == DeviceState.Ready)
                {
                    return true;
                }

                if (device.State != DeviceState.Ready && !await RecoverAsync(workers, counted: false).ConfigureAwait(false))
                {
                    return false;
                }
            }

            AddFailure($"warm-up: the workers did not complete {WarmUpCommands} commands each with the device Ready within {s_warmUpBound.TotalSeconds:0} s");
            Stop();
            return false;
        }

        private async Task<bool> RecoverAsync(List<Worker> workers, bool counted = true)
        {
            try
            {
                await Task.Run(device.Recover).ConfigureAwait(false);
                if (counted)
                {
                    _resets++;
                }
            }
            catch (FpgaAccelException ex)
            {
                AddFailure("recovery failed: " + ex.Message);
                Stop();
                return false;
            }

            var old = Interlocked.Exchange(ref _resume, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            old.TrySetResult();
            return true;
        }

        private void AddFailure(string failure)
        {
            lock (_failures)
            {
                _failures.Add(failure);
            }
        }
    }

    private sealed class Worker : IDisposable
    {
        private readonly Run _run;
        private readonly DeviceContext _context;
        private readonly CommandQueue _queue;
        private readonly HostBuffer _source;
        private readonly HostBuffer _destination;
        private readonly IDisposable _sourceUse;
        private readonly IDisposable _destinationUse;
        private readonly Random _rng;
        private long _completed;
        private long _failures;
        private long _lastFailureAt;

        public Worker(Run run, DeviceContext context, CommandQueue queue, bool onDemand, int seed)
        {
            _run = run;
            _context = context;
            _queue = queue;
            _rng = new Random(seed);
            _source = HostBuffer.Allocate(BufferBytes);
            _destination = HostBuffer.Allocate(BufferBytes);
            _sourceUse = onDemand ? context.RegisterOnDemand(_source, DmaAccess.DeviceRead) : context.Pin(_source, DmaAccess.DeviceRead);
            _destinationUse = onDemand ? context.RegisterOnDemand(_destination, DmaAccess.ReadWrite) : context.Pin(_destination, DmaAccess.DeviceWrite);
        }

        public long Completed => Interlocked.Read(ref _completed);

        public long Failures => Interlocked.Read(ref _failures);

        public long LastFailureAt => Interlocked.Read(ref _lastFailureAt);

        public async Task RunAsync()
        {
            while (!_run.Stopping)
            {
                var length = _rng.Next(1, BufferBytes);
                var offset = _rng.Next(0, BufferBytes - length + 1);
                _rng.NextBytes(_source.Span.Slice(offset, length));
                _destination.Span.Clear();
                try
                {
                    var result = await _queue.CopyAsync(_context, (ulong)_source.Address + (ulong)offset, (ulong)_destination.Address + (ulong)offset, (ulong)length).ConfigureAwait(false);
                    if (result.Status != CompletionStatus.Ok)
                    {
                        _run.CommandFailed(new InvalidOperationException(result.Status.ToString()));
                        Interlocked.Increment(ref _completed);
                        continue;
                    }

                    if (!_source.Span.Slice(offset, length).SequenceEqual(_destination.Span.Slice(offset, length)))
                    {
                        _run.DataError($"queue {_queue.Index}: COPY of {length} bytes at offset {offset} claimed success with other bytes");
                    }

                    _run.Verified(length);
                    Interlocked.Increment(ref _completed);
                }
                catch (FpgaAccelException ex) when (ex is DeviceLostException or DeviceFatalException or DeviceHungException)
                {
                    _run.CommandFailed(ex);
                    Interlocked.Exchange(ref _lastFailureAt, Stopwatch.GetTimestamp());
                    Interlocked.Increment(ref _failures);

                    // Wait for the injector's recovery: it recovers only once every worker has been released.
                    await _run.Resume.ConfigureAwait(false);
                }
                catch (FpgaAccelException ex)
                {
                    // A command the device completed wrongly (a garbage record): failed, not trusted; the run goes on.
                    _run.CommandFailed(ex);
                    Interlocked.Increment(ref _completed);
                }
            }
        }

        public void Dispose()
        {
            _queue.Dispose();
            _sourceUse.Dispose();
            _destinationUse.Dispose();
            _source.Dispose();
            _destination.Dispose();
        }
    }
}
