using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using FpgaAccel.Driver.Faults;
using FpgaAccel.FirmwareInterface;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver.Health;

/// <summary>
/// The one owner of <see cref="FpgaDevice.State"/> (issue 12), and the health thread that looks at the device while
/// anything waits on it.
/// </summary>
/// <remarks>
/// Invariant: the state changes only in <see cref="Move"/>, under <see cref="_lock"/>, along an edge
/// <see cref="Allowed"/> permits; each change is logged once, counted once, and published (waiters released, the
/// event raised) once and in order. Argument: every detector (the interrupt dispatcher, the fault service, fence
/// waiters, the health thread, <see cref="FpgaDevice.Recover"/>) calls <see cref="Fail"/> or the recovery methods,
/// which all go through <see cref="Move"/>; the compare of the old state and the write of the new one happen under one
/// lock, so two detectors that see the same loss produce one transition (the second finds the edge not allowed, or
/// the same state). The failure exception is published (volatile) before the state, so a submitter that reads a failed
/// state finds the exception to throw. Release runs after the lock is left, on the detecting thread, so it never
/// waits for a lock a detector may hold; it is idempotent (a queue already failed fails nothing twice), which is what
/// makes a stronger diagnosis (Hung, then Lost) safe to publish as well. Events go through a serial queue on the thread
/// pool: a handler that calls Recover() cannot deadlock the detector, and handlers see the moves in order.
///
/// The health thread costs nothing when the device is idle: it blocks on <see cref="_kick"/> until a queue's first
/// command goes in flight or a fence wait starts (each sets it), and only then ticks every
/// <see cref="FpgaDeviceOptions.HealthCheckInterval"/> (a timed wait, never a spin) until nothing waits again.
/// </remarks>
internal sealed partial class DeviceHealth : IDisposable
{
    private static readonly object s_ready = nameof(DeviceState.Ready);
    private static readonly object s_lost = nameof(DeviceState.Lost);
    private static readonly object s_fatal = nameof(DeviceState.Fatal);
    private static readonly object s_hung = nameof(DeviceState.Hung);
    private static readonly object s_recovering = nameof(DeviceState.Recovering);
    private readonly FpgaDevice _device;
    private readonly FpgaDeviceOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly Meter _meter;
    private readonly Counter<long> _transitions;
    private readonly ManualResetEventSlim _kick = new(false);
    private readonly ManualResetEventSlim _stop = new(false);
    private readonly ConcurrentQueue<DeviceStateChangedEventArgs> _events = new();
    private readonly Thread _thread;
    private int _state;
    private FpgaAccelException? _failure;
    private long _failedAt;
    private long _failures;
    private long _recoveries;
    private long _sweeps;
    private int _draining;
    private int _autoAttempts;

    // The managed thread running the recovery (set before the move into Recovering, by the caller of BeginRecovery, which
    // holds FpgaDevice's recovery lock, so one recovery at a time): the only thread that may fail the device while Recovering.
    private int _recoveryThread;
    private TimeSpan _backoff;
    private volatile bool _stopping;

    public DeviceHealth(FpgaDevice device, FpgaDeviceOptions options, ILogger logger)
    {
        _device = device;
        _options = options;
        _logger = logger;
        _meter = new Meter(FaultMetrics.MeterName);
        _transitions = _meter.CreateCounter<long>("fpgaaccel.device.state_transitions", "{transition}",
            "Device state transitions (ready, lost, fatal, hung, recovering), tagged by the state entered");
        _backoff = options.RecoverBackoff;
        _thread = new Thread(Run) { IsBackground = true, Name = "fpgaaccel-health" };
        _thread.Start();
    }

    /// <summary>Raised (on the thread pool, in order) after each move.</summary>
    public event EventHandler<DeviceStateChangedEventArgs>? StateChanged;

    public DeviceState State => (DeviceState)Volatile.Read(ref _state);

    public bool IsReady => Volatile.Read(ref _state) == (int)DeviceState.Ready;

    /// <summary>The exception waiters were released with; null while Ready.</summary>
    public FpgaAccelException? Failure => Volatile.Read(ref _failure);

    /// <summary>Stopwatch timestamp of the last move into a failed state.</summary>
    public long FailedAt => Interlocked.Read(ref _failedAt);

    /// <summary>Moves into Lost, Fatal or Hung.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>Recoveries completed (Recovering to Ready).</summary>
    public long Recoveries => Interlocked.Read(ref _recoveries);

    /// <summary>Health checks run (ticks while something waited).</summary>
    public long Sweeps => Interlocked.Read(ref _sweeps);

    /// <summary>Wakes the health thread: something now waits on the device. Cheap when it is awake already.</summary>
    public void Kick()
    {
        if (!_kick.IsSet)
        {
            _kick.Set();
        }
    }

    /// <summary>
    /// The device read all ones <paramref name="when"/>: confirm with ID (spec 2) and declare it lost. True when it is
    /// lost (now or before).
    /// </summary>
    public bool ReportAllOnes(string when)
    {
        if (State == DeviceState.Lost)
        {
            return true;
        }

        if (_device.Backend.Read64(Fa1Registers.Id) != Fa1Identity.DeviceLost)
        {
            return false;
        }

        Fail(DeviceState.Lost, $"reads all ones {when}, and so does ID", new DeviceLostException(when, _device.Backend.Description));
        return true;
    }

    /// <summary>Declares the device <paramref name="state"/> (Lost, Fatal or Hung) and releases every waiter with <paramref name="error"/>.</summary>
    public bool Fail(DeviceState state, string cause, FpgaAccelException error)
    {
        Debug.Assert(state is DeviceState.Lost or DeviceState.Fatal or DeviceState.Hung);

        // While Recovering, the recovery owns the verdict: it is waiting for the device (which reads all ones until it is
        // back) or resetting it (which clears a FATAL), and checks the registers itself when done. A verdict from another
        // thread then (the interrupt dispatcher reading IRQ_STATUS, the health check) would fail a recovery that is going
        // to succeed; its waiters were released when the device failed, and new commands wait for Ready.
        if (State == DeviceState.Recovering && Volatile.Read(ref _recoveryThread) != Environment.CurrentManagedThreadId)
        {
            return false;
        }

        if (!Move(state, cause, error))
        {
            return false;
        }

        _device.ReleaseWaiters(error, state);
        Kick(); // auto-recovery runs on the health thread
        return true;
    }

    /// <summary>From a failed state to Recovering. False when the device is Ready or recovering already.</summary>
    public bool BeginRecovery(string cause)
    {
        Volatile.Write(ref _recoveryThread, Environment.CurrentManagedThreadId);
        return Move(DeviceState.Recovering, cause, Failure);
    }

    /// <summary>Recovering to Ready: commands are accepted again.</summary>
    public bool EndRecovery(string cause)
    {
        if (!Move(DeviceState.Ready, cause, null))
        {
            return false;
        }

        Interlocked.Increment(ref _recoveries);
        lock (_lock)
        {
            _autoAttempts = 0;
            _backoff = _options.RecoverBackoff;
        }

        return true;
    }

    public void Dispose()
    {
        _stopping = true;
        _stop.Set();
        _kick.Set();
        if (!_thread.Join(TimeSpan.FromSeconds(5)))
        {
            LogStuck(_logger);
            return;
        }

        _meter.Dispose();
        _kick.Dispose();
        _stop.Dispose();
    }

    private static bool Allowed(DeviceState from, DeviceState to) => (from, to) switch
    {
        (DeviceState.Ready, DeviceState.Lost or DeviceState.Fatal or DeviceState.Hung) => true,

        // A stronger diagnosis replaces a weaker one: a hung device found gone or FATAL, a FATAL one found gone.
        (DeviceState.Hung, DeviceState.Lost or DeviceState.Fatal) => true,
        (DeviceState.Fatal, DeviceState.Lost) => true,
        (DeviceState.Lost or DeviceState.Fatal or DeviceState.Hung, DeviceState.Recovering) => true,
        (DeviceState.Recovering, DeviceState.Ready or DeviceState.Lost or DeviceState.Fatal or DeviceState.Hung) => true,
        _ => false,
    };

    private static object Tag(DeviceState state) => state switch
    {
        DeviceState.Ready => s_ready,
        DeviceState.Lost => s_lost,
        DeviceState.Fatal => s_fatal,
        DeviceState.Hung => s_hung,
        _ => s_recovering,
    };

    private bool Move(DeviceState to, string cause, FpgaAccelException? error)
    {
        DeviceState from;
        lock (_lock)
        {
            from = (DeviceState)_state;
            if (!Allowed(from, to))
            {
                return false;
            }

            if (to is DeviceState.Lost or DeviceState.Fatal or DeviceState.Hung)
            {
                Volatile.Write(ref _failure, error);
                Interlocked.Exchange(ref _failedAt, Stopwatch.GetTimestamp());
                Interlocked.Increment(ref _failures);
            }
            else if (to == DeviceState.Ready)
            {
                Volatile.Write(ref _failure, null);
            }

            Volatile.Write(ref _state, (int)to);
            if (to is DeviceState.Lost or DeviceState.Fatal or DeviceState.Hung)
            {
                LogFailed(_logger, from, to, cause);
            }
            else
            {
                LogMoved(_logger, from, to, cause);
            }

            _transitions.Add(1, new KeyValuePair<string, object?>("state", Tag(to)));
            _events.Enqueue(new DeviceStateChangedEventArgs(from, to, cause, error, DateTimeOffset.UtcNow));
        }

        RaiseEvents();
        return true;
    }

    // One drainer at a time, on the thread pool: handlers run in order and never on a detector's thread.
    private void RaiseEvents()
    {
        if (Interlocked.CompareExchange(ref _draining, 1, 0) != 0)
        {
            return;
        }

        ThreadPool.UnsafeQueueUserWorkItem(static health =>
        {
            while (true)
            {
                while (health._events.TryDequeue(out var e))
                {
                    try
                    {
                        health.StateChanged?.Invoke(health._device, e);
                    }
                    catch (Exception ex)
                    {
                        LogHandlerFailed(health._logger, ex);
                    }
                }

                Volatile.Write(ref health._draining, 0);

                // An event queued after the last dequeue and before the flag cleared found the flag set: take it here.
                if (health._events.IsEmpty || Interlocked.CompareExchange(ref health._draining, 1, 0) != 0)
                {
                    return;
                }
            }
        }, this, preferLocal: false);
    }

    private void Run()
    {
        while (!_stopping)
        {
            try
            {
                if (AutoRecoveryDue(out var wait))
                {
                    if (wait > TimeSpan.Zero)
                    {
                        _stop.Wait(wait);
                        continue;
                    }

                    TryAutoRecover();
                    continue;
                }

                if (!_device.AnythingWaits())
                {
                    // Idle: block until a command goes in flight or a fence wait starts. Reset, then look again, so a
                    // kick between the look above and the reset is not lost (the kicker changed the count first).
                    _kick.Reset();
                    if (!_device.AnythingWaits() && !_stopping && !AutoRecoveryDue(out _))
                    {
                        _kick.Wait();
                    }

                    continue;
                }

                if (_stop.Wait(_options.HealthCheckInterval))
                {
                    return;
                }

                Interlocked.Increment(ref _sweeps);
                _device.HealthSweep();
            }
            catch (Exception ex)
            {
                // A detector threw something unexpected: log it and keep watching (bounded: the interval paces it).
                LogSweepFailed(_logger, ex);
                _stop.Wait(_options.HealthCheckInterval);
            }
        }
    }

    // A failed device with AutoRecover and attempts left: due now (wait zero) or after the backoff.
    private bool AutoRecoveryDue(out TimeSpan wait)
    {
        wait = TimeSpan.Zero;
        if (!_options.AutoRecover || _stopping)
        {
            return false;
        }

        var state = State;
        if (state is not (DeviceState.Lost or DeviceState.Fatal or DeviceState.Hung))
        {
            return false;
        }

        lock (_lock)
        {
            if (_autoAttempts >= _options.AutoRecoverAttempts)
            {
                return false;
            }

            if (_autoAttempts > 0)
            {
                var next = Stopwatch.GetElapsedTime(_lastAttempt);
                wait = next >= _backoff ? TimeSpan.Zero : _backoff - next;
            }

            return true;
        }
    }

    private long _lastAttempt;

    private void TryAutoRecover()
    {
        int attempt;
        lock (_lock)
        {
            attempt = ++_autoAttempts;
            if (attempt > 1)
            {
                _backoff = TimeSpan.FromTicks(Math.Min(_backoff.Ticks * 2, _options.RecoverBackoffMax.Ticks));
            }
        }

        try
        {
            // Each attempt waits for the device at most one backoff: a device still gone is tried again later.
            _device.RecoverCore(_backoff, automatic: true);
        }
        catch (FpgaAccelException ex)
        {
            LogAutoRecoverFailed(_logger, attempt, _options.AutoRecoverAttempts, ex.Message);
        }
        finally
        {
            lock (_lock)
            {
                _lastAttempt = Stopwatch.GetTimestamp();
            }
        }
    }

    [LoggerMessage(EventId = 80, Level = LogLevel.Critical, Message = "FA-1 state {From} -> {To}: {Cause}")]
    private static partial void LogFailed(ILogger logger, DeviceState from, DeviceState to, string cause);

    [LoggerMessage(EventId = 81, Level = LogLevel.Warning, Message = "FA-1 state {From} -> {To}: {Cause}")]
    private static partial void LogMoved(ILogger logger, DeviceState from, DeviceState to, string cause);

    [LoggerMessage(EventId = 82, Level = LogLevel.Error, Message = "A StateChanged handler threw")]
    private static partial void LogHandlerFailed(ILogger logger, Exception ex);

    [LoggerMessage(EventId = 83, Level = LogLevel.Error, Message = "Health check failed")]
    private static partial void LogSweepFailed(ILogger logger, Exception ex);

    [LoggerMessage(EventId = 84, Level = LogLevel.Warning, Message = "Automatic recovery attempt {Attempt} of {Attempts} failed: {Reason}")]
    private static partial void LogAutoRecoverFailed(ILogger logger, int attempt, int attempts, string reason);

    [LoggerMessage(EventId = 85, Level = LogLevel.Warning, Message = "Health thread did not stop within 5 s")]
    private static partial void LogStuck(ILogger logger);
}
