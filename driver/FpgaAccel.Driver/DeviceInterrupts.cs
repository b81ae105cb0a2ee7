using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver;

/// <summary>
/// The device's MSI-X vectors as eventfds, and one dispatcher thread that waits on them with epoll,
/// reads and acknowledges IRQ_STATUS (W1C), and runs the handler of each cause that fired.
/// </summary>
/// <remarks>
/// Invariant: every cause latched in IRQ_STATUS is acknowledged and dispatched at least once after
/// the message that announced it. Argument: the dispatcher drains the eventfd before reading
/// IRQ_STATUS, and clears exactly the bits it read; a cause that latches after the read sends a new
/// message (spec 3), which makes the eventfd readable again, so the next epoll_wait returns.
/// With a single granted vector the same argument holds: every cause signals vector 0.
///
/// Public for observation only (counts, granted vectors, device lost). Handlers, claiming a vector and
/// disposal are the driver's: a caller that could replace the COMPLETION or ERROR handler, take the FAULT
/// vector or stop the dispatcher would break the device it shares, so this type is deliberately not
/// <see cref="IDisposable"/> and the device disposes it.
/// </remarks>
public sealed partial class DeviceInterrupts
{
    private const ulong StopToken = ulong.MaxValue;
    private readonly IDeviceBackend _backend;
    private readonly ILogger _logger;
    private readonly EventFd[] _vectors;
    private readonly EventFd _stop;
    private readonly Epoll _epoll;
    private readonly Thread _thread;
    private readonly Action?[] _handlers = new Action?[Fa1Identity.MsixVectors];
    private readonly long[] _counts = new long[Fa1Identity.MsixVectors];
    private volatile bool _deviceLost;
    private ulong _claimed;
    private int _disposed;

    internal DeviceInterrupts(IDeviceBackend backend, ILogger logger)
    {
        _backend = backend;
        _logger = logger;
        var created = new List<IDisposable>();
        try
        {
            _vectors = new EventFd[Fa1Identity.MsixVectors];
            for (var i = 0; i < _vectors.Length; i++)
            {
                _vectors[i] = EventFd.Create();
                created.Add(_vectors[i]);
            }

            _stop = EventFd.Create();
            created.Add(_stop);
            _epoll = Epoll.Create();
            created.Add(_epoll);
            GrantedVectors = backend.ConnectInterrupts(_vectors);
            if (GrantedVectors is not (1 or Fa1Identity.MsixVectors))
            {
                throw new DeviceProtocolException($"The host granted {GrantedVectors} interrupt vectors; the FA-1 uses {Fa1Identity.MsixVectors}, or 1 shared by every cause (spec 1). Check the VFIO interrupt setup.");
            }
            for (var i = 0; i < GrantedVectors; i++)
            {
                _epoll.Add(_vectors[i].Handle, EpollEvents.In, (ulong)i);
            }

            _epoll.Add(_stop.Handle, EpollEvents.In, StopToken);
            _thread = new Thread(Run) { IsBackground = true, Name = "fpgaaccel-irq" };
            _thread.Start();
        }
        catch
        {
            backend.DisconnectInterrupts();
            foreach (var item in created)
            {
                item.Dispose();
            }

            throw;
        }
    }

    /// <summary>Vectors the host granted: 3, or 1 (all causes on vector 0).</summary>
    public int GrantedVectors { get; }

    /// <summary>True once IRQ_STATUS read all ones: the device is gone (until a recovery reconnects the vectors).</summary>
    public bool DeviceLost => _deviceLost;

    /// <summary>Told when IRQ_STATUS reads all ones (the device health confirms with ID and declares the loss).</summary>
    internal Func<string, bool>? AllOnes { get; set; }

    /// <summary>
    /// Connects the same eventfds again after a recovery (issue 12): a cold reset or FLR clears the MSI-X enable
    /// (spec 1), so VFIO_DEVICE_SET_IRQS must be issued again; the dispatcher thread and the claims are unchanged.
    /// </summary>
    internal void Reconnect()
    {
        _backend.DisconnectInterrupts();
        var granted = _backend.ConnectInterrupts(_vectors);
        if (granted != GrantedVectors)
        {
            throw new DeviceProtocolException($"After the recovery the host granted {granted} interrupt vectors, where it granted {GrantedVectors} at open. Dispose the device and open it again.");
        }

        _deviceLost = false;
    }

    /// <summary>How many times <paramref name="cause"/> was dispatched.</summary>
    public long Count(InterruptCauses cause) => Interlocked.Read(ref _counts[CauseIndex(cause)]);

    /// <summary>
    /// Runs <paramref name="handler"/> on the dispatcher thread each time <paramref name="cause"/> fires.
    /// One handler per cause; a later call replaces it. Handlers must not block for long.
    /// </summary>
    internal void Subscribe(InterruptCauses cause, Action handler) => Volatile.Write(ref _handlers[CauseIndex(cause)], handler);

    /// <summary>
    /// Hands <paramref name="cause"/>'s own vector to a dedicated consumer (the fault service), which then
    /// waits on the returned eventfd itself and acknowledges the cause in IRQ_STATUS. Returns null when
    /// the cause shares vector 0 with others (one vector granted): subscribe a handler instead.
    /// </summary>
    internal EventFd? Claim(InterruptCauses cause)
    {
        var index = CauseIndex(cause);
        if (GrantedVectors < Fa1Identity.MsixVectors)
        {
            return null;
        }

        if ((Interlocked.Or(ref _claimed, (ulong)cause) & (ulong)cause) != 0)
        {
            throw new InvalidOperationException($"The {cause} vector is claimed already: release it first.");
        }

        _epoll.Remove(_vectors[index].Handle);
        return _vectors[index];
    }

    /// <summary>
    /// Gives a claimed vector back to the dispatcher (the consumer stopped): it waits on it again and acknowledges the
    /// cause itself. Does nothing when the cause is not claimed.
    /// </summary>
    internal void Release(InterruptCauses cause)
    {
        var index = CauseIndex(cause);
        if ((Interlocked.And(ref _claimed, ~(ulong)cause) & (ulong)cause) == 0 || Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        _epoll.Add(_vectors[index].Handle, EpollEvents.In, (ulong)index);

        // A message that arrived while the consumer was stopping is still in the eventfd: epoll reports it at once.
    }

    /// <summary>Removes <paramref name="handler"/> from <paramref name="cause"/> if it is still the one subscribed.</summary>
    internal void Unsubscribe(InterruptCauses cause, Action handler) =>
        Interlocked.CompareExchange(ref _handlers[CauseIndex(cause)], null, handler);

    /// <summary>True while <paramref name="cause"/>'s vector is handed to a consumer (<see cref="Claim"/>).</summary>
    internal bool IsClaimed(InterruptCauses cause) => (Interlocked.Read(ref _claimed) & (ulong)cause) != 0 && CauseIndex(cause) >= 0;

    /// <summary>True while a handler runs for <paramref name="cause"/> (<see cref="Subscribe"/>).</summary>
    internal bool IsSubscribed(InterruptCauses cause) => Volatile.Read(ref _handlers[CauseIndex(cause)]) is not null;

    /// <summary>Stops the dispatcher, disconnects the vectors and closes every descriptor.</summary>
    internal void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stop.Signal();
        if (!_thread.Join(TimeSpan.FromSeconds(5)))
        {
            LogDispatcherStuck(_logger);
        }

        // Disconnect before closing, as a VFIO user does, so the device never signals a closed fd.
        _backend.DisconnectInterrupts();
        foreach (var v in _vectors)
        {
            v.Dispose();
        }

        _stop.Dispose();
        _epoll.Dispose();
    }

    private static int CauseIndex(InterruptCauses cause) => cause switch
    {
        InterruptCauses.Fault => 0,
        InterruptCauses.Completion => 1,
        InterruptCauses.Error => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(cause), cause, "Name exactly one cause: Fault, Completion or Error."),
    };

    private void Run()
    {
        Span<EpollReady> ready = stackalloc EpollReady[Fa1Identity.MsixVectors + 1];
        try
        {
            while (true)
            {
                var n = _epoll.Wait(ready, -1);
                var any = false;
                for (var i = 0; i < n; i++)
                {
                    if (ready[i].Token == StopToken)
                    {
                        return;
                    }

                    // Token is the vector index we registered; range-checked anyway.
                    if (ready[i].Token < (ulong)GrantedVectors)
                    {
                        _vectors[ready[i].Token].TryRead(out _);
                        any = true;
                    }
                }

                if (any && !Dispatch())
                {
                    return;
                }
            }
        }
        catch (Exception ex)
        {
            LogDispatcherFailed(_logger, ex);
        }
    }

    // Reads IRQ_STATUS, acknowledges what it read, runs handlers. A device that reads all ones is reported (issue 12:
    // loss is declared, not only logged) and the dispatcher keeps waiting: a gone device sends no message, so the wait
    // blocks, and a recovered one uses the same vectors.
    private bool Dispatch()
    {
        var status = _backend.Read64(Fa1Registers.IrqStatus);
        if (status == Fa1Identity.DeviceLost)
        {
            if (!_deviceLost)
            {
                _deviceLost = true;
                LogDeviceLost(_logger);
            }

            try
            {
                AllOnes?.Invoke("in IRQ_STATUS");
            }
            catch (Exception ex)
            {
                LogHandlerFailed(_logger, InterruptCauses.All, ex);
            }

            return true;
        }

        // A claimed cause is acknowledged by its own consumer, never here.
        status &= (ulong)InterruptCauses.All & ~Interlocked.Read(ref _claimed);
        if (status == 0)
        {
            return true;
        }

        _backend.Write64(Fa1Registers.IrqStatus, status);
        for (var bit = 0; bit < Fa1Identity.MsixVectors; bit++)
        {
            if ((status & (1UL << bit)) == 0)
            {
                continue;
            }

            Interlocked.Increment(ref _counts[bit]);
            try
            {
                Volatile.Read(ref _handlers[bit])?.Invoke();
            }
            catch (Exception ex)
            {
                LogHandlerFailed(_logger, (InterruptCauses)(1UL << bit), ex);
            }
        }

        return true;
    }

    [LoggerMessage(EventId = 10, Level = LogLevel.Error, Message = "Interrupt handler for {Cause} threw")]
    private static partial void LogHandlerFailed(ILogger logger, InterruptCauses cause, Exception ex);

    [LoggerMessage(EventId = 11, Level = LogLevel.Error, Message = "Interrupt dispatcher stopped on an error")]
    private static partial void LogDispatcherFailed(ILogger logger, Exception ex);

    [LoggerMessage(EventId = 12, Level = LogLevel.Error, Message = "IRQ_STATUS reads all ones: the device may have dropped off the bus")]
    private static partial void LogDeviceLost(ILogger logger);

    [LoggerMessage(EventId = 13, Level = LogLevel.Warning, Message = "Interrupt dispatcher did not stop within 5 s")]
    private static partial void LogDispatcherStuck(ILogger logger);
}
