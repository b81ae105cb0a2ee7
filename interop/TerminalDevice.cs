using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace FpgaAccel.Interop;

/// <summary>
/// A terminal opened raw (no echo, no line editing, no CR/LF translation, 8N1, no flow control): a serial port
/// such as <c>/dev/ttyUSB0</c>, the slave of a pseudo-terminal, or a pseudo-terminal's master. Reads and writes
/// wait at most their timeout (poll, EINTR resumed for what is left, decision I3).
/// </summary>
public sealed class TerminalDevice : IDisposable
{
    private readonly SafeFileDescriptor _fd;

    // A pseudo-terminal's master keeps its own descriptor to the slave: without one, a master whose slave is
    // closed reports POLLHUP at once on every poll and a serving loop would spin.
    private readonly SafeFileDescriptor? _slaveHold;

    private TerminalDevice(SafeFileDescriptor fd, string path, SafeFileDescriptor? slaveHold)
    {
        _fd = fd;
        Path = path;
        _slaveHold = slaveHold;
    }

    /// <summary>The device opened, or for a pseudo-terminal's master the slave's path (what a peer opens).</summary>
    public string Path { get; }

    /// <summary>
    /// Opens <paramref name="path"/> read-write without making it the controlling terminal, sets raw 8N1 at
    /// <paramref name="baudRate"/> (9600 or 115200) without flow control, and discards whatever was queued. The
    /// descriptor is non-blocking: a serial port whose carrier (DCD) is down would otherwise block the open itself,
    /// and reads and writes poll first anyway. A Unix socket at <paramref name="path"/> fails with ENXIO.
    /// </summary>
    public static unsafe TerminalDevice Open(string path, int baudRate)
    {
        var speed = baudRate switch
        {
            9600 => Interop.Libc.B9600,
            115_200 => Interop.Libc.B115200,
            _ => throw new ArgumentOutOfRangeException(nameof(baudRate), baudRate, "Supported terminal speeds: 9600 and 115200 baud."),
        };
        var fd = Interop.Libc.Check(
            Interop.Libc.open(path, Interop.Libc.O_RDWR | Interop.Libc.O_NOCTTY | Interop.Libc.O_NONBLOCK | Interop.Libc.O_CLOEXEC),
            $"open({path})");
        try
        {
            MakeRaw(fd, path, speed);
            Interop.Libc.Check(Interop.Libc.tcflush(fd, Interop.Libc.TCIOFLUSH), $"tcflush({path})");
            return new TerminalDevice(fd, path, slaveHold: null);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Creates a pseudo-terminal pair (posix_openpt, grantpt, unlockpt) and returns its master; <see cref="Path"/> is the
    /// slave (<c>/dev/pts/N</c>), set raw at 115200 baud, for a peer to open with <see cref="Open"/>.
    /// </summary>
    public static unsafe TerminalDevice CreatePseudoTerminal()
    {
        var master = Interop.Libc.Check(Interop.Libc.posix_openpt(Interop.Libc.O_RDWR | Interop.Libc.O_NOCTTY | Interop.Libc.O_CLOEXEC), "posix_openpt");
        SafeFileDescriptor? slave = null;
        try
        {
            Interop.Libc.Check(Interop.Libc.grantpt(master), "grantpt");
            Interop.Libc.Check(Interop.Libc.unlockpt(master), "unlockpt");
            var name = stackalloc byte[128];
            var error = Interop.Libc.ptsname_r(master, name, 128);
            if (error != 0)
            {
                throw SystemCallException.FromErrno("ptsname_r", (Errno)error);
            }

            var path = Marshal.PtrToStringUTF8((nint)name) ?? throw new InvalidOperationException("ptsname_r gave no name");
            slave = Interop.Libc.Check(Interop.Libc.open(path, Interop.Libc.O_RDWR | Interop.Libc.O_NOCTTY | Interop.Libc.O_CLOEXEC), $"open({path})");
            MakeRaw(slave, path, Interop.Libc.B115200);
            return new TerminalDevice(master, path, slave);
        }
        catch
        {
            slave?.Dispose();
            master.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads what has arrived, waiting at most <paramref name="timeout"/> for the first byte; 0 when nothing came.
    /// A hang-up of the other end (a serial adapter unplugged, a pty closed) is an EIO <see cref="SystemCallException"/>.
    /// </summary>
    public unsafe int Read(Span<byte> buffer, TimeSpan timeout)
    {
        if (buffer.IsEmpty || !Poll.Wait(_fd, Interop.Libc.POLLIN, timeout, Path))
        {
            return 0;
        }

        fixed (byte* p = buffer)
        {
            while (true)
            {
                var n = Interop.Libc.read(_fd, p, (nuint)buffer.Length);
                if (n > 0)
                {
                    return (int)n;
                }

                var errno = n == 0 ? Errno.EIO : Interop.Libc.LastErrno();
                if (errno == Errno.EINTR)
                {
                    continue;
                }

                if (errno == Errno.EAGAIN)
                {
                    return 0;
                }

                throw SystemCallException.FromErrno($"read({Path})", errno, "The other end of the terminal hung up (the adapter was unplugged or the peer closed it); open it again");
            }
        }
    }

    /// <summary>Writes all of <paramref name="data"/>, waiting at most <paramref name="timeout"/> in all; ETIMEDOUT when the terminal would not take it.</summary>
    public unsafe void Write(ReadOnlySpan<byte> data, TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)Math.Ceiling(timeout.TotalMilliseconds);
        fixed (byte* p = data)
        {
            var done = 0;
            while (done < data.Length)
            {
                var left = TimeSpan.FromMilliseconds(Math.Max(0, deadline - Environment.TickCount64));
                if (!Poll.Wait(_fd, Interop.Libc.POLLOUT, left, Path))
                {
                    throw SystemCallException.FromErrno($"write({Path})", Errno.ETIMEDOUT,
                        string.Create(CultureInfo.InvariantCulture, $"The terminal took {done} of {data.Length} bytes in {timeout.TotalMilliseconds:0} ms; check flow control and that the peer reads"));
                }

                var n = Interop.Libc.write(_fd, p + done, (nuint)(data.Length - done));
                if (n < 0)
                {
                    var errno = Interop.Libc.LastErrno();
                    if (errno is Errno.EINTR or Errno.EAGAIN)
                    {
                        continue;
                    }

                    throw SystemCallException.FromErrno($"write({Path})", errno);
                }

                done += (int)n;
            }
        }
    }

    /// <summary>Closes the terminal (and a pseudo-terminal's slave hold).</summary>
    public void Dispose()
    {
        _fd.Dispose();
        _slaveHold?.Dispose();
    }

    private static unsafe void MakeRaw(SafeFileDescriptor fd, string path, uint speed)
    {
        Interop.Libc.termios t;
        Interop.Libc.Check(Interop.Libc.tcgetattr(fd, &t), $"tcgetattr({path})");
        Interop.Libc.cfmakeraw(&t);
        // 8N1, receiver on, modem lines ignored, no hardware flow control (the BMC UART has none).
        t.c_cflag = (t.c_cflag & ~(Interop.Libc.CSIZE | Interop.Libc.PARENB | Interop.Libc.CSTOPB | Interop.Libc.CRTSCTS))
                    | Interop.Libc.CS8 | Interop.Libc.CREAD | Interop.Libc.CLOCAL;
        // read() returns as soon as one byte is there; Read polls first, so it never blocks without a bound.
        t.c_cc[Interop.Libc.VMIN] = 1;
        t.c_cc[Interop.Libc.VTIME] = 0;
        Interop.Libc.Check(Interop.Libc.cfsetspeed(&t, speed), $"cfsetspeed({path})");
        Interop.Libc.Check(Interop.Libc.tcsetattr(fd, Interop.Libc.TCSANOW, &t), $"tcsetattr({path})");
    }
}

/// <summary>poll(2) on one descriptor with a bounded wait that signals neither end early nor stretch (decision I3).</summary>
internal static class Poll
{
    /// <summary>True when <paramref name="events"/> (or an error or hang-up) is ready within <paramref name="timeout"/>.</summary>
    public static unsafe bool Wait(SafeFileDescriptor fd, short events, TimeSpan timeout, string what)
    {
        var total = timeout <= TimeSpan.Zero ? 0 : (long)Math.Ceiling(timeout.TotalMilliseconds);
        if (total > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "A poll timeout must be below 24 days.");
        }

        var started = Environment.TickCount64;
        using var held = new HeldDescriptors(1);
        var entry = new Interop.Libc.pollfd { fd = held.Hold(fd), events = events };
        while (true)
        {
            var left = (int)Math.Max(0, started + total - Environment.TickCount64);
            var n = Interop.Libc.poll(&entry, 1, left);
            if (n >= 0)
            {
                return n > 0;
            }

            var errno = Interop.Libc.LastErrno();
            if (errno != Errno.EINTR)
            {
                throw SystemCallException.FromErrno($"poll({what})", errno);
            }
        }
    }
}

/// <summary>Connected pairs of Unix stream sockets (socketpair(2)): an in-process byte pipe both ways, for a peer on a thread.</summary>
public static class UnixSocketPair
{
    /// <summary>Two connected AF_UNIX stream sockets, close-on-exec.</summary>
    public static unsafe (System.Net.Sockets.Socket First, System.Net.Sockets.Socket Second) Create()
    {
        var fds = stackalloc int[2];
        Interop.Libc.Check(
            Interop.Libc.socketpair(Interop.Libc.AF_UNIX, Interop.Libc.SOCK_STREAM | Interop.Libc.SOCK_CLOEXEC, 0, fds),
            "socketpair");
        // The Socket owns each number from here (SafeSocketHandle closes it).
        var first = new System.Net.Sockets.Socket(new System.Net.Sockets.SafeSocketHandle(fds[0], ownsHandle: true));
        try
        {
            return (first, new System.Net.Sockets.Socket(new System.Net.Sockets.SafeSocketHandle(fds[1], ownsHandle: true)));
        }
        catch
        {
            first.Dispose();
            throw;
        }
    }
}
