using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

/// <summary>Readiness flags for <see cref="Epoll"/>: the EPOLL* bits themselves (header-checked), so they pass to and from the kernel unchanged.</summary>
[Flags]
public enum EpollEvents : uint
{
    /// <summary>Nothing is ready (also: watch for errors and hang-ups only, which epoll always reports).</summary>
    None = 0,

    /// <summary>EPOLLIN: data can be read (an eventfd's counter is non-zero).</summary>
    In = Interop.Libc.EPOLLIN,

    /// <summary>EPOLLOUT: data can be written without blocking.</summary>
    Out = Interop.Libc.EPOLLOUT,

    /// <summary>EPOLLERR: the descriptor has an error pending; reported whether asked for or not.</summary>
    Error = Interop.Libc.EPOLLERR,

    /// <summary>EPOLLHUP: the other end hung up; reported whether asked for or not.</summary>
    HangUp = Interop.Libc.EPOLLHUP,
}

/// <summary>One ready descriptor, as <see cref="Epoll.Wait"/> reports it.</summary>
/// <param name="Events">What is ready.</param>
/// <param name="Token">The caller's token given to <see cref="Epoll.Add"/>.</param>
public readonly record struct EpollReady(EpollEvents Events, ulong Token);

/// <summary>
/// An epoll instance. Waiting retries EINTR itself (callers never see it), and allocates nothing.
/// </summary>
public sealed class Epoll : IDisposable
{
    private readonly SafeFileDescriptor _fd;

    private Epoll(SafeFileDescriptor fd) => _fd = fd;

    /// <summary>Creates an epoll instance (close-on-exec).</summary>
    public static Epoll Create()
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            // struct epoll_event is packed only on x86-64; the layout here is that one.
            throw new PlatformNotSupportedException(
                $"epoll bindings are laid out for x86-64; this process is {RuntimeInformation.ProcessArchitecture}.");
        }

        return new Epoll(Interop.Libc.Check(Interop.Libc.epoll_create1(Interop.Libc.EPOLL_CLOEXEC), "epoll_create1"));
    }

    /// <summary>Watches <paramref name="fd"/> for <paramref name="events"/>, reporting <paramref name="token"/>.</summary>
    public void Add(SafeFileDescriptor fd, EpollEvents events, ulong token) =>
        Control(Interop.Libc.EPOLL_CTL_ADD, fd, events, token);

    /// <summary>Stops watching <paramref name="fd"/>.</summary>
    public void Remove(SafeFileDescriptor fd) => Control(Interop.Libc.EPOLL_CTL_DEL, fd, EpollEvents.None, 0);

    /// <summary>
    /// Waits up to <paramref name="timeoutMilliseconds"/> (-1: forever) and fills <paramref name="ready"/>.
    /// Returns how many entries were filled; 0 on timeout. A signal (EINTR) does not end the wait early, nor
    /// stretch it: the wait resumes for what is left of the timeout.
    /// </summary>
    public unsafe int Wait(Span<EpollReady> ready, int timeoutMilliseconds)
    {
        var max = Math.Min(ready.Length, 64);
        ArgumentOutOfRangeException.ThrowIfZero(max, nameof(ready));
        var raw = stackalloc Interop.Libc.epoll_event[max];
        var timeout = timeoutMilliseconds;
        var started = timeoutMilliseconds > 0 ? Environment.TickCount64 : 0;
        int n;
        while ((n = Interop.Libc.epoll_wait(_fd, raw, max, timeout)) < 0)
        {
            var errno = Interop.Libc.LastErrno();
            if (errno != Errno.EINTR)
            {
                throw SystemCallException.FromErrno("epoll_wait", errno);
            }

            if (timeoutMilliseconds > 0)
            {
                // Resume for what is left, so a stream of signals cannot stretch a bounded wait.
                timeout = (int)Math.Max(0, started + timeoutMilliseconds - Environment.TickCount64);
            }
        }

        for (var i = 0; i < n; i++)
        {
            ready[i] = new EpollReady((EpollEvents)raw[i].events, raw[i].data);
        }

        return n;
    }

    /// <summary>Closes the epoll instance; the descriptors it watched stay open.</summary>
    public void Dispose() => _fd.Dispose();

    private unsafe void Control(int op, SafeFileDescriptor fd, EpollEvents events, ulong token)
    {
        var ev = new Interop.Libc.epoll_event { events = (uint)events, data = token };
        Interop.Libc.Check(Interop.Libc.epoll_ctl(_fd, op, fd, &ev), "epoll_ctl");
    }
}
