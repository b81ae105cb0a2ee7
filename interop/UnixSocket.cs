using System.Runtime.InteropServices;
using System.Text;

namespace FpgaAccel.Interop;

/// <summary>What one <see cref="UnixSocket.Receive"/> call got.</summary>
/// <param name="Bytes">Data bytes received; 0 when the peer closed its end (or the socket was shut down).</param>
/// <param name="DescriptorsTruncated">
/// The peer sent more descriptors than the call had room for (MSG_CTRUNC): the kernel closed the ones that did not
/// fit, so the message they came with is incomplete.
/// </param>
public readonly record struct SocketReceiveResult(int Bytes, bool DescriptorsTruncated);

/// <summary>
/// A connected or listening AF_UNIX stream socket, with descriptor passing (SCM_RIGHTS), which .NET's own
/// <see cref="System.Net.Sockets.Socket"/> cannot receive. Every descriptor it creates or receives is close-on-exec.
/// EINTR is retried inside every call. <see cref="Send"/> must not be called by two threads at once (a caller that
/// sends from several threads serializes them, so messages do not interleave); one thread may receive while
/// another sends, and <see cref="Shutdown"/> may be called from any thread to end a blocked receive or accept.
/// </summary>
public sealed class UnixSocket : IDisposable
{
    /// <summary>The longest path an AF_UNIX address holds: sun_path is 108 bytes including the terminating NUL.</summary>
    public const int MaxPathBytes = 107;

    /// <summary>The most descriptors Linux passes in one message (SCM_MAX_FD).</summary>
    public const int MaxDescriptorsPerMessage = 253;

    private readonly SafeFileDescriptor _fd;

    private UnixSocket(SafeFileDescriptor fd) => _fd = fd;

    /// <summary>The owned descriptor.</summary>
    public SafeFileDescriptor Handle => _fd;

    /// <summary>
    /// Creates a socket listening at <paramref name="path"/> (which must not exist: bind fails with EADDRINUSE),
    /// with room for <paramref name="backlog"/> pending connections.
    /// </summary>
    /// <exception cref="ArgumentException">The path is empty, holds a NUL, or is longer than <see cref="MaxPathBytes"/> bytes.</exception>
    /// <exception cref="SystemCallException">socket, bind or listen failed (EADDRINUSE, EACCES, ENOENT...).</exception>
    public static unsafe UnixSocket Listen(string path, int backlog = 1)
    {
        var address = Address(path);
        var socket = Create();
        try
        {
            Interop.Libc.Check(Interop.Libc.bind(socket._fd, &address, (uint)sizeof(Interop.Libc.sockaddr_un)), $"bind({path})");
            Interop.Libc.Check(Interop.Libc.listen(socket._fd, backlog), "listen");
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Connects to the socket listening at <paramref name="path"/>.</summary>
    /// <exception cref="SystemCallException">connect failed: ENOENT (nothing at the path), ECONNREFUSED (nobody listening)...</exception>
    public static unsafe UnixSocket Connect(string path)
    {
        var address = Address(path);
        var socket = Create();
        try
        {
            while (Interop.Libc.connect(socket._fd, &address, (uint)sizeof(Interop.Libc.sockaddr_un)) < 0)
            {
                var errno = Interop.Libc.LastErrno();
                if (errno != Errno.EINTR)
                {
                    throw SystemCallException.FromErrno($"connect({path})", errno);
                }
            }

            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Two sockets connected to each other (socketpair): a server end and a client end for tests and in-process peers.</summary>
    public static unsafe (UnixSocket First, UnixSocket Second) CreatePair()
    {
        var pair = stackalloc int[2];
        Interop.Libc.Check(
            Interop.Libc.socketpair(Interop.Libc.AF_UNIX, Interop.Libc.SOCK_STREAM | Interop.Libc.SOCK_CLOEXEC, 0, pair), "socketpair");
        return (new UnixSocket(new SafeFileDescriptor(pair[0])), new UnixSocket(new SafeFileDescriptor(pair[1])));
    }

    /// <summary>
    /// Waits for a client of this listening socket and returns its connection; returns null once the socket has been
    /// shut down (<see cref="Shutdown"/>, which is how another thread ends this wait).
    /// </summary>
    public UnixSocket? Accept()
    {
        while (true)
        {
            var fd = Interop.Libc.accept4(_fd, 0, 0, Interop.Libc.SOCK_CLOEXEC);
            if (!fd.IsInvalid)
            {
                return new UnixSocket(fd);
            }

            var errno = Interop.Libc.LastErrno();
            fd.Dispose();
            switch (errno)
            {
                case Errno.EINTR:
                // accept(2): a connection that was reset before it was accepted; wait for the next one.
                case Errno.ECONNABORTED:
                    continue;
                // Linux: accept on a listening socket that was shut down fails with EINVAL.
                case Errno.EINVAL:
                    return null;
                default:
                    throw SystemCallException.FromErrno("accept4", errno);
            }
        }
    }

    /// <summary>
    /// Sends all of <paramref name="data"/>, with <paramref name="descriptors"/> attached to its first byte (SCM_RIGHTS):
    /// the receiver gets its own copies; the caller keeps (and closes) its own.
    /// </summary>
    /// <exception cref="ArgumentException">More than <see cref="MaxDescriptorsPerMessage"/> descriptors, or descriptors with no data.</exception>
    /// <exception cref="SystemCallException">The peer is gone (EPIPE, ECONNRESET) or sendmsg failed otherwise.</exception>
    public unsafe void Send(ReadOnlySpan<byte> data, ReadOnlySpan<SafeFileDescriptor> descriptors = default)
    {
        if (descriptors.Length > MaxDescriptorsPerMessage)
        {
            throw new ArgumentException(
                $"{descriptors.Length} descriptors in one message: Linux passes at most {MaxDescriptorsPerMessage} (SCM_MAX_FD); send them in several messages.",
                nameof(descriptors));
        }

        if (data.IsEmpty && !descriptors.IsEmpty)
        {
            throw new ArgumentException("Descriptors need at least one data byte to travel with on a stream socket.", nameof(data));
        }

        var controlLength = descriptors.IsEmpty ? 0 : (int)Interop.Libc.CMSG_SPACE((nuint)(descriptors.Length * sizeof(int)));
        var control = stackalloc byte[Math.Max(controlLength, 1)];
        using var held = new HeldDescriptors(descriptors.Length);
        if (controlLength > 0)
        {
            new Span<byte>(control, controlLength).Clear();
            var header = (Interop.Libc.cmsghdr*)control;
            header->cmsg_len = Interop.Libc.CMSG_LEN((nuint)(descriptors.Length * sizeof(int)));
            header->cmsg_level = Interop.Libc.SOL_SOCKET;
            header->cmsg_type = Interop.Libc.SCM_RIGHTS;
            var numbers = (int*)(control + Interop.Libc.CMSG_LEN(0));
            for (var i = 0; i < descriptors.Length; i++)
            {
                // Held until sendmsg returned: the kernel takes its own references to the files during the call.
                numbers[i] = held.Hold(descriptors[i]);
            }
        }

        fixed (byte* bytes = data)
        {
            var sent = 0;
            while (sent < data.Length)
            {
                var vector = new Interop.Libc.iovec { iov_base = (nint)(bytes + sent), iov_len = (nuint)(data.Length - sent) };
                var message = new Interop.Libc.msghdr { msg_iov = (nint)(&vector), msg_iovlen = 1 };
                if (sent == 0 && controlLength > 0)
                {
                    // The descriptors ride with the first chunk only.
                    message.msg_control = (nint)control;
                    message.msg_controllen = (nuint)controlLength;
                }

                var n = Interop.Libc.sendmsg(_fd, &message, Interop.Libc.MSG_NOSIGNAL);
                if (n < 0)
                {
                    var errno = Interop.Libc.LastErrno();
                    if (errno == Errno.EINTR)
                    {
                        continue;
                    }

                    throw SystemCallException.FromErrno("sendmsg", errno);
                }

                sent += (int)n;
            }
        }
    }

    /// <summary>
    /// Receives up to <paramref name="buffer"/>'s length of bytes (at least one unless the peer closed), and any
    /// descriptors that came with them, up to <paramref name="maxDescriptors"/>. Received descriptors are appended
    /// to <paramref name="descriptors"/>, which then owns them; with no list they are closed at once.
    /// </summary>
    /// <exception cref="SystemCallException">recvmsg failed (ECONNRESET, EBADF...).</exception>
    public unsafe SocketReceiveResult Receive(Span<byte> buffer, List<SafeFileDescriptor>? descriptors = null, int maxDescriptors = 16)
    {
        ArgumentOutOfRangeException.ThrowIfZero(buffer.Length, nameof(buffer));
        ArgumentOutOfRangeException.ThrowIfNegative(maxDescriptors);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxDescriptors, MaxDescriptorsPerMessage);
        var controlLength = (int)Interop.Libc.CMSG_SPACE((nuint)(Math.Max(maxDescriptors, 1) * sizeof(int)));
        var control = stackalloc byte[controlLength];
        fixed (byte* bytes = buffer)
        {
            var vector = new Interop.Libc.iovec { iov_base = (nint)bytes, iov_len = (nuint)buffer.Length };
            var message = new Interop.Libc.msghdr
            {
                msg_iov = (nint)(&vector),
                msg_iovlen = 1,
                msg_control = (nint)control,
                msg_controllen = (nuint)controlLength,
            };
            nint n;
            while ((n = Interop.Libc.recvmsg(_fd, &message, Interop.Libc.MSG_CMSG_CLOEXEC)) < 0)
            {
                var errno = Interop.Libc.LastErrno();
                if (errno != Errno.EINTR)
                {
                    throw SystemCallException.FromErrno("recvmsg", errno);
                }

                message.msg_controllen = (nuint)controlLength;
            }

            // CMSG_SPACE rounds the room up to 8 bytes, so one more descriptor than asked may fit: it is closed too.
            var over = TakeDescriptors(control, (int)message.msg_controllen, descriptors, maxDescriptors);
            return new SocketReceiveResult((int)n, over || (message.msg_flags & Interop.Libc.MSG_CTRUNC) != 0);
        }
    }

    /// <summary>
    /// Shuts the socket down in both directions (shutdown(SHUT_RDWR)): a receive blocked on another thread returns 0,
    /// an accept returns null, and the peer sees the connection end. The descriptor stays open until <see cref="Dispose"/>.
    /// </summary>
    public void Shutdown()
    {
        if (_fd.IsClosed)
        {
            return;
        }

        try
        {
            if (Interop.Libc.shutdown(_fd, Interop.Libc.SHUT_RDWR) < 0)
            {
                // ENOTCONN: the peer is already gone, which is what shutting down wants.
                var errno = Interop.Libc.LastErrno();
                if (errno != Errno.ENOTCONN)
                {
                    throw SystemCallException.FromErrno("shutdown", errno);
                }
            }
        }
        catch (ObjectDisposedException)
        {
            // Disposed on another thread meanwhile: nothing left to shut down.
        }
    }

    /// <summary>Closes the descriptor once no call is using it (a call in progress holds it open until it returns).</summary>
    public void Dispose() => _fd.Dispose();

    // Walks the ancillary messages (CMSG_FIRSTHDR/CMSG_NXTHDR) and takes every SCM_RIGHTS descriptor, up to
    // max of them; the rest are closed. True when some were closed.
    private static unsafe bool TakeDescriptors(byte* control, int length, List<SafeFileDescriptor>? into, int max)
    {
        var taken = 0;
        var over = false;
        var offset = 0;
        var headerSize = (int)Interop.Libc.CMSG_LEN(0);
        while (offset + sizeof(Interop.Libc.cmsghdr) <= length)
        {
            var header = (Interop.Libc.cmsghdr*)(control + offset);
            var messageLength = (int)header->cmsg_len;
            if (messageLength < headerSize || offset + messageLength > length)
            {
                break;
            }

            if (header->cmsg_level == Interop.Libc.SOL_SOCKET && header->cmsg_type == Interop.Libc.SCM_RIGHTS)
            {
                var numbers = (int*)(control + offset + headerSize);
                var count = (messageLength - headerSize) / sizeof(int);
                for (var i = 0; i < count; i++)
                {
                    var fd = new SafeFileDescriptor(numbers[i]);
                    if (into is null || taken == max)
                    {
                        over |= into is not null;
                        fd.Dispose();
                    }
                    else
                    {
                        into.Add(fd);
                        taken++;
                    }
                }
            }

            offset += (int)Interop.Libc.CMSG_ALIGN((nuint)messageLength);
        }

        return over;
    }

    private static UnixSocket Create() =>
        new(Interop.Libc.Check(Interop.Libc.socket(Interop.Libc.AF_UNIX, Interop.Libc.SOCK_STREAM | Interop.Libc.SOCK_CLOEXEC, 0), "socket(AF_UNIX)"));

    private static unsafe Interop.Libc.sockaddr_un Address(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var bytes = Encoding.UTF8.GetBytes(path);
        if (bytes.Length > MaxPathBytes || Array.IndexOf(bytes, (byte)0) >= 0)
        {
            throw new ArgumentException(
                $"Socket path '{path}' is {bytes.Length} bytes{(Array.IndexOf(bytes, (byte)0) >= 0 ? " and holds a NUL" : string.Empty)}: " +
                $"an AF_UNIX address holds at most {MaxPathBytes} bytes and no NUL. Use a shorter path (a relative one, or one under /tmp or /run).",
                nameof(path));
        }

        var address = new Interop.Libc.sockaddr_un { sun_family = Interop.Libc.AF_UNIX };
        bytes.CopyTo(new Span<byte>(address.sun_path, MaxPathBytes + 1));
        return address;
    }
}
