using FpgaAccel.Interop;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FpgaAccel.HwSim.VfioUser;

/// <summary>
/// Serves an <see cref="Fa1Model"/> as a PCI device over vfio-user (QEMU's <c>vfio-user-pci</c> is the client): a
/// guest kernel sees an FA-1 on its PCI bus, binds it to vfio-pci, and its user space drives the model through
/// BAR0, MSI-X and DMA mappings as it would a board. The model's oracle keeps counting on this side.
/// </summary>
/// <remarks>
/// <para>Sessions run one at a time, each on its own thread (<c>vfio-user-session</c>); a listening server accepts the
/// next client when the current one is gone (<c>vfio-user-listen</c>). Device state (registers, config space,
/// the model) belongs to the server and outlives sessions; descriptors, mappings and vectors belong to a session.</para>
/// <para>Dispose stops the listener and the session (their sockets are shut down, so their blocking calls return)
/// and joins their threads, bounded.</para>
/// </remarks>
public sealed partial class VfioUserServer : IDisposable
{
    private static readonly TimeSpan s_joinTimeout = TimeSpan.FromSeconds(30);

    private readonly Fa1Model _model;
    private readonly VfioUserServerOptions _options;
    private readonly ILogger _logger;
    private readonly Fa1PciFunction _function;
    private readonly VfioUserCounters _counters = new();
    private readonly Lock _lock = new();
    private readonly Lock _traceLock = new();
    private UnixSocket? _listener;
    private string? _socketPath;
    private Thread? _listenThread;
    private Thread? _sessionThread;
    private VfioUserSession? _session;
    private bool _disposed;

    /// <summary>A server for <paramref name="model"/> (which the caller owns and disposes after this server).</summary>
    public VfioUserServer(Fa1Model model, VfioUserServerOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _options = options ?? new VfioUserServerOptions();
        _options.Validate();
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<VfioUserServer>();
        _function = new Fa1PciFunction(model, _options.VendorId, _options.DeviceId, _options.Revision);
    }

    /// <summary>What the server has seen so far.</summary>
    public VfioUserStatistics Statistics
    {
        get
        {
            lock (_lock)
            {
                return _counters.Snapshot(_function.FunctionResets, _function.PowerCycles, _session?.MappingsHeld ?? 0, _function.Vectors.Wired, _model.Iommu.RefusedAccesses);
            }
        }
    }

    /// <summary>True while a client is connected.</summary>
    public bool HasClient
    {
        get
        {
            lock (_lock)
            {
                return _session is not null;
            }
        }
    }

    /// <summary>The function the client sees (tests read its config space and vectors).</summary>
    internal Fa1PciFunction Function => _function;

    /// <summary>The current session, if a client is connected.</summary>
    internal VfioUserSession? Session
    {
        get
        {
            lock (_lock)
            {
                return _session;
            }
        }
    }

    /// <summary>
    /// Listens at <paramref name="socketPath"/> (which must not exist yet) and serves clients one after another on a
    /// thread of its own; with <paramref name="once"/>, stops after the first client has gone. The socket file is
    /// removed when the server stops.
    /// </summary>
    /// <exception cref="InvalidOperationException">The server already listens or serves.</exception>
    /// <exception cref="IOException">Something exists at the path, or bind/listen failed; the message says what to do.</exception>
    public void Listen(string socketPath, bool once = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(socketPath);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_listenThread is not null || _session is not null)
            {
                throw new InvalidOperationException("The server already listens or serves a client; one server serves one device to one client at a time.");
            }

            if (File.Exists(socketPath) || Directory.Exists(socketPath))
            {
                throw new IOException($"Something already exists at {socketPath}; remove it (a socket left by an earlier server that did not stop) or choose another path.");
            }

            _listener = UnixSocket.Listen(socketPath);
            _socketPath = socketPath;
            _listenThread = new Thread(() => ListenLoop(once)) { Name = "vfio-user-listen", IsBackground = true };
            _listenThread.Start();
        }

        LogListening(_logger, socketPath);
    }

    /// <summary>
    /// Serves one already-connected socket (one end of a socketpair, a connection accepted elsewhere) on a thread of
    /// its own; the server owns and closes it.
    /// </summary>
    /// <exception cref="InvalidOperationException">A client is already being served.</exception>
    public void Serve(UnixSocket connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_session is not null || _listenThread is not null)
            {
                connection.Dispose();
                throw new InvalidOperationException("The server already serves a client (or listens for one); one server serves one device to one client at a time.");
            }

            var session = StartSession(connection);
            _sessionThread = new Thread(() => RunSession(session)) { Name = "vfio-user-session", IsBackground = true };
            _sessionThread.Start();
        }
    }

    /// <summary>
    /// Waits until no client is served and (for a <c>once</c> listener) the listener has stopped. True when that
    /// happened within <paramref name="timeout"/>.
    /// </summary>
    public bool WaitForIdle(TimeSpan timeout)
    {
        Thread? listen, session;
        lock (_lock)
        {
            listen = _listenThread;
            session = _sessionThread;
        }

        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        return Join(session, deadline) && (listen is null || Join(listen, deadline));
    }

    /// <summary>Stops listening, ends the current session, and joins both threads (bounded); the model is left to its owner.</summary>
    public void Dispose()
    {
        Thread? listen, session;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _listener?.Shutdown();
            _session?.Stop();
            listen = _listenThread;
            session = _sessionThread;
        }

        var deadline = Environment.TickCount64 + (long)s_joinTimeout.TotalMilliseconds;
        if (!Join(listen, deadline) || !Join(session, deadline))
        {
            LogStopTimedOut(_logger, s_joinTimeout.TotalSeconds);
        }

        // A session whose thread did not stop in time still has its socket closed (its thread then ends on EBADF).
        lock (_lock)
        {
            _session?.Dispose();
        }

        _listener?.Dispose();
        RemoveSocketFile();
    }

    private static bool Join(Thread? thread, long deadline)
    {
        if (thread is null || thread == Thread.CurrentThread)
        {
            return true;
        }

        // Join(0) still reports a thread that has ended.
        var left = Math.Max(0, deadline - Environment.TickCount64);
        return thread.Join(TimeSpan.FromMilliseconds(left));
    }

    // With _lock held.
    private VfioUserSession StartSession(UnixSocket connection)
    {
        _session = new VfioUserSession(connection, _function, _model.Iommu, _options, _counters, _traceLock, _logger);
        return _session;
    }

    private void RunSession(VfioUserSession session)
    {
        try
        {
            session.Run();
        }
        finally
        {
            session.Dispose();
            lock (_lock)
            {
                _session = null;
            }
        }
    }

    private void ListenLoop(bool once)
    {
        try
        {
            while (true)
            {
                var connection = _listener!.Accept();
                if (connection is null)
                {
                    return;
                }

                VfioUserSession session;
                lock (_lock)
                {
                    if (_disposed)
                    {
                        connection.Dispose();
                        return;
                    }

                    session = StartSession(connection);
                }

                RunSession(session);
                if (once)
                {
                    return;
                }
            }
        }
        catch (SystemCallException ex)
        {
            LogListenFailed(_logger, ex.Message);
        }
        finally
        {
            if (once)
            {
                RemoveSocketFile();
            }
        }
    }

    private void RemoveSocketFile()
    {
        string? path;
        lock (_lock)
        {
            path = _socketPath;
            _socketPath = null;
        }

        if (path is not null)
        {
            try
            {
                File.Delete(path);
            }
            catch (IOException)
            {
                // Removed by someone else meanwhile: nothing to do.
            }
            catch (UnauthorizedAccessException)
            {
                // The directory became read-only; the file stays, and the next Listen names it.
            }
        }
    }

    [LoggerMessage(EventId = 210, Level = LogLevel.Information, Message = "vfio-user server listening at {Path}")]
    private static partial void LogListening(ILogger logger, string path);

    [LoggerMessage(EventId = 211, Level = LogLevel.Error, Message = "vfio-user server stopped listening: {Reason}")]
    private static partial void LogListenFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 212, Level = LogLevel.Warning, Message = "vfio-user server threads did not stop within {Seconds} s")]
    private static partial void LogStopTimedOut(ILogger logger, double seconds);
}
