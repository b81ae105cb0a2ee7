using System.Runtime.InteropServices;

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
        var fd = Interop.Libc.eventfd(initialValue, flags);
        if (fd < 0)
        {
            throw Interop.Libc.Error("eventfd");
        }

        return new EventFd(new SafeFileDescriptor(fd), nonBlocking);
    }

    /// <summary>Adds <paramref name="value"/> to the counter, waking any reader.</summary>
    public unsafe void Signal(ulong value = 1)
    {
        ArgumentOutOfRangeException.ThrowIfZero(value);
        var added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
            while (true)
            {
                var n = Interop.Libc.write(_fd.Fd, &value, sizeof(ulong));
                if (n == sizeof(ulong))
                {
                    return;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (n < 0 && errno == (int)Errno.EINTR)
                {
                    continue;
                }

                // EAGAIN: the counter would overflow 2^64-2; the reader has that many pending
                // wake-ups already, so one more adds nothing.
                if (n < 0 && errno == (int)Errno.EAGAIN)
                {
                    return;
                }

                throw SystemCallException.FromErrno("write(eventfd)", errno);
            }
        }
        finally
        {
            if (added)
            {
                _fd.DangerousRelease();
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
        var added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
            while (true)
            {
                var n = Interop.Libc.read(_fd.Fd, &v, sizeof(ulong));
                if (n == sizeof(ulong))
                {
                    value = v;
                    return true;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (n < 0 && errno == (int)Errno.EINTR)
                {
                    continue;
                }

                if (n < 0 && errno == (int)Errno.EAGAIN)
                {
                    value = 0;
                    return false;
                }

                throw SystemCallException.FromErrno("read(eventfd)", errno);
            }
        }
        finally
        {
            if (added)
            {
                _fd.DangerousRelease();
            }
        }
    }

    public void Dispose() => _fd.Dispose();
}
