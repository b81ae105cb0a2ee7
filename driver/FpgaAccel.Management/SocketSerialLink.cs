using System.Net.Sockets;

namespace FpgaAccel.Management;

/// <summary>
/// A link over a connected Unix stream socket: the BMC model served by <c>fpgaaccel bmc model --socket PATH</c>, or
/// one end of a socket pair in process. No framing: the socket carries the UART's bytes as they are.
/// </summary>
public sealed class SocketSerialLink : ISerialLink
{
    private readonly Socket _socket;

    /// <summary>Wraps a connected socket; the link owns it and closes it on dispose.</summary>
    public SocketSerialLink(Socket socket, string description)
    {
        _socket = socket;
        Description = description;
    }

    /// <inheritdoc/>
    public string Description { get; }

    /// <summary>Connects to the Unix socket at <paramref name="path"/>.</summary>
    public static SocketSerialLink Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
            return new SocketSerialLink(socket, $"socket {path}");
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            var fix = ex.SocketErrorCode switch
            {
                SocketError.ConnectionRefused => "nothing listens there: start the BMC model with 'fpgaaccel bmc model --socket " + path + "', or give the board's port",
                SocketError.AccessDenied => "this user may not connect to it: check the socket's owner and mode",
                _ => "check that the path is the BMC's socket",
            };
            throw new SerialLinkException($"connect({path}): {ex.SocketErrorCode} ({ex.Message}): {fix}.", ex);
        }
    }

    /// <inheritdoc/>
    public int Read(Span<byte> buffer, TimeSpan timeout)
    {
        try
        {
            var micros = timeout <= TimeSpan.Zero ? 0 : (int)Math.Min(int.MaxValue, Math.Ceiling(timeout.TotalMicroseconds));
            if (buffer.IsEmpty || !_socket.Poll(micros, SelectMode.SelectRead))
            {
                return 0;
            }

            var n = _socket.Receive(buffer);
            if (n == 0)
            {
                throw new SerialLinkException($"{Description}: the BMC end closed the connection; start it again (or check that QEMU still runs).");
            }

            return n;
        }
        catch (SocketException ex)
        {
            throw new SerialLinkException($"{Description}: receive failed: {ex.SocketErrorCode} ({ex.Message}).", ex);
        }
    }

    /// <inheritdoc/>
    public void Write(ReadOnlySpan<byte> data, TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)Math.Ceiling(timeout.TotalMilliseconds);
        try
        {
            while (!data.IsEmpty)
            {
                var left = deadline - Environment.TickCount64;
                if (left <= 0 || !_socket.Poll((int)Math.Min(int.MaxValue / 1000, left) * 1000, SelectMode.SelectWrite))
                {
                    throw new SerialLinkException($"{Description}: the BMC end took no bytes within {timeout.TotalMilliseconds:0} ms; it has stopped reading.");
                }

                data = data[_socket.Send(data)..];
            }
        }
        catch (SocketException ex)
        {
            throw new SerialLinkException($"{Description}: send failed: {ex.SocketErrorCode} ({ex.Message}); the BMC end has gone.", ex);
        }
    }

    /// <summary>Closes the socket.</summary>
    public void Dispose() => _socket.Dispose();
}
