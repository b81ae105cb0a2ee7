using System.Net.Sockets;
using FpgaAccel.Interop;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FpgaAccel.HwSim.Bmc;

/// <summary>
/// The BMC model served on a Unix stream socket, the way QEMU's <c>-chardev socket,path=...</c> (behind
/// <c>-device usb-serial</c>) or a client on the host connects to a UART: one peer at a time, each with its own line
/// framing; the next connection is taken when the peer hangs up. Stop with <see cref="Dispose"/>.
/// </summary>
/// <remarks>
/// Threads: one, <c>fpgaaccel-bmc</c>, accepts and serves. It polls with a bounded wait and checks the stop flag,
/// so <see cref="Dispose"/> joins it within a poll period. It reads whatever the peer sends at once: a peer such as
/// QEMU stalls when the other end of its socket stops reading.
/// </remarks>
public sealed partial class BmcSocketServer : IDisposable
{
    private static readonly TimeSpan s_poll = TimeSpan.FromMilliseconds(100);

    private readonly BmcModel _model;
    private readonly Socket _listener;
    private readonly Thread _thread;
    private readonly ILogger _logger;
    private volatile bool _stopping;

    private BmcSocketServer(BmcModel model, Socket listener, string path, ILogger logger)
    {
        _model = model;
        _listener = listener;
        Path = path;
        _logger = logger;
        _thread = new Thread(Run) { IsBackground = true, Name = "fpgaaccel-bmc" };
    }

    /// <summary>The socket's path.</summary>
    public string Path { get; }

    /// <summary>Connections served so far.</summary>
    public int Connections { get; private set; }

    /// <summary>
    /// Listens at <paramref name="path"/> (which must not exist, or be a stale socket nothing listens on) and serves
    /// <paramref name="model"/> until disposed. The model stays the caller's.
    /// </summary>
    public static BmcSocketServer Start(BmcModel model, string path, ILoggerFactory? loggerFactory = null)
    {
        RemoveStaleSocket(path);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(4);
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            throw new IOException($"bind({path}): {ex.SocketErrorCode} ({ex.Message}): choose a path in a writable directory that does not exist yet.", ex);
        }

        var server = new BmcSocketServer(model, listener, path, (ILogger?)loggerFactory?.CreateLogger<BmcSocketServer>() ?? NullLogger.Instance);
        server._thread.Start();
        LogListening(server._logger, path, model.Version, model.Serial);
        return server;
    }

    /// <summary>
    /// Serves <paramref name="model"/> on one connected socket (one end of a socket pair, say) until the peer hangs up or
    /// <paramref name="stop"/> is set, polling at most <paramref name="poll"/> at a time. The socket stays the caller's.
    /// </summary>
    public static void Serve(BmcModel model, Socket socket, Func<bool> stop, TimeSpan poll)
    {
        var session = new BmcSession(model);
        var buffer = new byte[512];
        var pollMicros = (int)Math.Max(1, poll.TotalMicroseconds);
        while (!stop())
        {
            if (!socket.Poll(pollMicros, SelectMode.SelectRead))
            {
                continue;
            }

            var n = socket.Receive(buffer);
            if (n == 0)
            {
                return;
            }

            var reply = session.Receive(buffer.AsSpan(0, n));
            if (reply.Length > 0)
            {
                socket.Send(reply);
            }
        }
    }

    /// <summary>
    /// Serves <paramref name="model"/> on a terminal (a pseudo-terminal's master, whose slave a client opens) until
    /// <paramref name="stop"/> is set.
    /// </summary>
    public static void Serve(BmcModel model, TerminalDevice terminal, Func<bool> stop, TimeSpan poll)
    {
        var session = new BmcSession(model);
        var buffer = new byte[512];
        while (!stop())
        {
            var n = terminal.Read(buffer, poll);
            if (n > 0)
            {
                var reply = session.Receive(buffer.AsSpan(0, n));
                if (reply.Length > 0)
                {
                    terminal.Write(reply, TimeSpan.FromSeconds(5));
                }
            }
        }
    }

    /// <summary>Stops serving: closes the listener and the connection, joins the thread (bounded), removes the socket file.</summary>
    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        if (!_thread.Join(TimeSpan.FromSeconds(5)))
        {
            LogStuck(_logger, Path);
        }

        _listener.Dispose();
        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
            // Gone already, or the directory with it.
        }
    }

    private static void RemoveStaleSocket(string path)
    {
        if (!File.Exists(path))
        {
            return;
        }

        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
        {
            // A socket file nothing listens on: left by a server that was killed.
            File.Delete(path);
            return;
        }
        catch (SocketException ex)
        {
            throw new IOException($"{path} exists and is not a socket this server can take over ({ex.SocketErrorCode}): remove it or choose another path.", ex);
        }

        throw new IOException($"{path} is already served by another process: stop it first or choose another path.");
    }

    private void Run()
    {
        var pollMicros = (int)s_poll.TotalMicroseconds;
        while (!_stopping)
        {
            try
            {
                if (!_listener.Poll(pollMicros, SelectMode.SelectRead))
                {
                    continue;
                }

                using var peer = _listener.Accept();
                // A peer that stops reading must not hold the serving thread (and so Dispose) forever.
                peer.SendTimeout = 5000;
                Connections++;
                LogConnected(_logger, Path, Connections);
                Serve(_model, peer, () => _stopping, s_poll);
                LogDisconnected(_logger, Path);
            }
            catch (SocketException ex)
            {
                // A peer that vanished mid-exchange; keep serving the next one.
                LogPeerFailed(_logger, Path, ex.SocketErrorCode.ToString());
            }
            catch (ObjectDisposedException) when (_stopping)
            {
                return;
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "BMC model (FA1-BMC {Version}, serial {Serial}) listening on {Path}")]
    private static partial void LogListening(ILogger logger, string path, string version, string serial);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Path}: peer {Count} connected")]
    private static partial void LogConnected(ILogger logger, string path, int count);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Path}: peer hung up")]
    private static partial void LogDisconnected(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Path}: the peer's connection failed ({Error}); waiting for the next one")]
    private static partial void LogPeerFailed(ILogger logger, string path, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Path}: the serving thread did not stop within 5 s")]
    private static partial void LogStuck(ILogger logger, string path);
}
