using FpgaAccel.Interop;

namespace FpgaAccel.HwSim.VfioUser;

/// <summary>
/// One received message. <see cref="Body"/> is a view of the transport's buffer, valid until the next receive;
/// <see cref="Descriptors"/> came with the message (SCM_RIGHTS) and belong to whoever handles it, who takes the ones
/// it keeps out of the list and closes the rest before the next receive (the list is reused). A message the transport could not frame has <see cref="Problem"/> set and no body.
/// </summary>
internal readonly record struct IncomingMessage(VfioUserHeader Header, ArraySegment<byte> Body, List<SafeFileDescriptor> Descriptors, VfioUserException? Problem);

/// <summary>
/// Message framing over a connected AF_UNIX stream socket (the transport concern, as libvfio-user's tran_sock):
/// reads one whole message at a time with the descriptors that came with it, and checks the header's size against
/// the protocol before any byte of the body is trusted. Sends are serialized, so a reply from the receiving thread
/// and a request from a worker never interleave on the stream.
/// </summary>
/// <remarks>
/// Threads: one thread receives (the session's); any thread may send. A declared size larger than the largest
/// message this server takes is answered E2BIG and its body read and dropped in bounded chunks, so the stream
/// stays in step; a size smaller than the header is EINVAL with nothing to drop (the header was all there was).
/// </remarks>
internal sealed class VfioUserTransport : IDisposable
{
    private readonly UnixSocket _socket;
    private readonly Lock _sendLock = new();
    private readonly int _maxDescriptors;
    private readonly byte[] _header = new byte[VfioUserHeader.Length];

    // One list for every message: its handler takes the descriptors it keeps out of it and closes the rest,
    // and the list is empty again before the next receive.
    private readonly List<SafeFileDescriptor> _descriptors = [];
    private byte[] _body = new byte[4096];

    public VfioUserTransport(UnixSocket socket, int maxMessageBytes, int maxDescriptors)
    {
        _socket = socket;
        MaxMessageBytes = maxMessageBytes;
        _maxDescriptors = maxDescriptors;
    }

    /// <summary>The largest message (header included) this side takes.</summary>
    public int MaxMessageBytes { get; }

    /// <summary>
    /// Receives the next message; false when the peer closed the connection (or it was shut down), including in the
    /// middle of a message. Descriptors of a message that is dropped half-read are closed.
    /// </summary>
    public bool TryReceive(out IncomingMessage message)
    {
        var descriptors = _descriptors;

        // A handler that threw before its cleanup leaves none behind.
        Close(descriptors);
        message = default;
        var truncated = false;
        if (!ReadExactly(_header, descriptors, ref truncated))
        {
            Close(descriptors);
            return false;
        }

        var header = VfioUserHeader.Read(_header);
        if (header.Size < VfioUserHeader.Length)
        {
            message = new IncomingMessage(header with { Size = VfioUserHeader.Length }, default, descriptors,
                new VfioUserException(Errno.EINVAL, $"message size {header.Size} is smaller than the {VfioUserHeader.Length}-byte header"));
            return true;
        }

        if (header.Size > MaxMessageBytes)
        {
            var dropped = header.Size - (ulong)VfioUserHeader.Length;
            if (!Discard(dropped, descriptors, ref truncated))
            {
                Close(descriptors);
                return false;
            }

            message = new IncomingMessage(header, default, descriptors,
                new VfioUserException(Errno.E2BIG, $"message size {header.Size} is over this server's limit of {MaxMessageBytes} bytes (max_data_xfer_size plus headers)"));
            return true;
        }

        var length = header.BodyLength;
        if (_body.Length < length)
        {
            _body = new byte[Math.Max(length, _body.Length * 2)];
        }

        if (!ReadExactly(_body.AsSpan(0, length), descriptors, ref truncated))
        {
            Close(descriptors);
            return false;
        }

        var problem = truncated
            ? new VfioUserException(Errno.EINVAL, $"more than {_maxDescriptors} descriptors came with the message (max_msg_fds); the kernel dropped the rest")
            : null;
        message = new IncomingMessage(header, new ArraySegment<byte>(_body, 0, length), descriptors, problem);
        return true;
    }

    /// <summary>Sends one whole message (header and body in <paramref name="message"/>), with descriptors if any.</summary>
    /// <exception cref="SystemCallException">The peer is gone (EPIPE, ECONNRESET).</exception>
    public void Send(ReadOnlySpan<byte> message, ReadOnlySpan<SafeFileDescriptor> descriptors = default)
    {
        lock (_sendLock)
        {
            _socket.Send(message, descriptors);
        }
    }

    /// <summary>Ends a receive blocked on another thread (it returns false) and tells the peer the session is over.</summary>
    public void Shutdown() => _socket.Shutdown();

    public void Dispose() => _socket.Dispose();

    private static void Close(List<SafeFileDescriptor> descriptors)
    {
        foreach (var fd in descriptors)
        {
            fd.Dispose();
        }

        descriptors.Clear();
    }

    private bool ReadExactly(Span<byte> into, List<SafeFileDescriptor> descriptors, ref bool truncated)
    {
        var done = 0;
        while (done < into.Length)
        {
            SocketReceiveResult result;
            try
            {
                result = _socket.Receive(into[done..], descriptors, _maxDescriptors);
            }
            catch (SystemCallException ex) when (ex.Errno is Errno.ECONNRESET or Errno.EBADF)
            {
                return false;
            }

            if (result.Bytes == 0)
            {
                return false;
            }

            truncated |= result.DescriptorsTruncated;
            done += result.Bytes;
        }

        return true;
    }

    private bool Discard(ulong count, List<SafeFileDescriptor> descriptors, ref bool truncated)
    {
        while (count > 0)
        {
            var chunk = (int)Math.Min(count, (ulong)_body.Length);
            if (!ReadExactly(_body.AsSpan(0, chunk), descriptors, ref truncated))
            {
                return false;
            }

            count -= (ulong)chunk;
        }

        return true;
    }
}
