namespace FpgaAccel.Interop;

/// <summary>
/// A Linux eventfd: a 64-bit counter that a writer adds to and a reader drains.
/// MSI-X vectors arrive on these, from VFIO on the board and from the model in CI.
/// </summary>
public sealed class EventFd : IDisposable
{
    private readonly SafeFileDescriptor _fd;

    private EventFd(SafeFileDescriptor fd, bool nonBlocking)
    {
        _fd = fd;
        NonBlocking = nonBlocking;
    }

    /// <summary>The owned descriptor.</summary>
    public SafeFileDescriptor Handle => _fd;

    /// <summary>True when reads return at once with no value instead of waiting.</summary>
    public bool NonBlocking { get; }

    /// <summary>Creates an eventfd (close-on-exec). Non-blocking by default: readers wait in epoll.</summary>
    public static EventFd Create(uint initialValue = 0, bool nonBlocking = true)
    {
        var flags = Interop.Libc.EFD_CLOEXEC | (nonBlocking ? Interop.Libc.EFD_NONBLOCK : 0);
        return new EventFd(Interop.Libc.Check(Interop.Libc.eventfd(initialValue, flags), "eventfd"), nonBlocking);
    }

    /// <summary>
    /// Takes ownership of <paramref name="descriptor"/>, an eventfd another process made and passed over a socket
    /// (SCM_RIGHTS): an MSI-X vector's eventfd from a vfio-user client. The descriptor is checked first, since the
    /// sender is not trusted: /proc/self/fd must show it as an eventfd. Its blocking mode is the one its creator chose.
    /// </summary>
    /// <exception cref="ArgumentException">The descriptor is not an eventfd; the message says what it is.</exception>
    public static EventFd Adopt(SafeFileDescriptor descriptor)
    {
        ArgumentNullException.ThrowIfNull(descriptor);
        var added = false;
        descriptor.DangerousAddRef(ref added);
        try
        {
            var fd = descriptor.Fd;
            var target = new FileInfo($"/proc/self/fd/{fd}").LinkTarget;
            if (target != "anon_inode:[eventfd]")
            {
                throw new ArgumentException(
                    $"Descriptor {fd} is '{target ?? "(unknown)"}', not an eventfd (anon_inode:[eventfd]); interrupts are signalled through eventfds only.",
                    nameof(descriptor));
            }

            return new EventFd(descriptor, IsNonBlocking(fd));
        }
        finally
        {
            if (added)
            {
                descriptor.DangerousRelease();
            }
        }
    }

    /// <summary>Adds <paramref name="value"/> to the counter, waking any reader. EINTR is retried here.</summary>
    public unsafe void Signal(ulong value = 1)
    {
        ArgumentOutOfRangeException.ThrowIfZero(value);
        while (Interop.Libc.write(_fd, &value, sizeof(ulong)) != sizeof(ulong))
        {
            // eventfd(2): a write moves all 8 bytes or fails; it never writes part of them.
            var errno = Interop.Libc.LastErrno();
            if (errno == Errno.EAGAIN)
            {
                // The counter would pass 2^64-2: the reader has that many wake-ups pending already,
                // so one more adds nothing.
                return;
            }

            if (errno != Errno.EINTR)
            {
                throw SystemCallException.FromErrno("write(eventfd)", errno);
            }
        }
    }

    /// <summary>
    /// Reads and resets the counter. Returns false when it was zero (non-blocking mode);
    /// in blocking mode waits for a signal. EINTR is retried here, never seen by callers.
    /// </summary>
    public unsafe bool TryRead(out ulong value)
    {
        ulong v = 0;
        while (Interop.Libc.read(_fd, &v, sizeof(ulong)) != sizeof(ulong))
        {
            // eventfd(2): a read of 8 bytes returns all 8 or fails.
            var errno = Interop.Libc.LastErrno();
            if (errno == Errno.EAGAIN)
            {
                value = 0;
                return false;
            }

            if (errno != Errno.EINTR)
            {
                throw SystemCallException.FromErrno("read(eventfd)", errno);
            }
        }

        value = v;
        return true;
    }

    // fdinfo's "flags:" line is the open file's status flags in octal; O_NONBLOCK is 04000 (EFD_NONBLOCK).
    private static bool IsNonBlocking(int fd)
    {
        foreach (var line in File.ReadLines($"/proc/self/fdinfo/{fd}"))
        {
            if (line.StartsWith("flags:", StringComparison.Ordinal))
            {
                return (Convert.ToInt32(line["flags:".Length..].Trim(), 8) & Interop.Libc.EFD_NONBLOCK) != 0;
            }
        }

        return false;
    }

    /// <summary>Closes the eventfd (once no call is still using it); writers holding the descriptor elsewhere keep it open.</summary>
    public void Dispose() => _fd.Dispose();
}
