namespace FpgaAccel.Interop;

/// <summary>Linux errno values (asm-generic/errno-base.h and errno.h) this code base names.</summary>
public enum Errno
{
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
    ENXIO = 6,
    E2BIG = 7,
    EBADF = 9,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    EXDEV = 18,
    ENODEV = 19,
    ENOTDIR = 20,
    EISDIR = 21,
    EINVAL = 22,
    ENFILE = 23,
    EMFILE = 24,
    ENOTTY = 25,
    EFBIG = 27,
    ENOSPC = 28,
    ESPIPE = 29,
    EROFS = 30,
    EPIPE = 32,
    ERANGE = 34,
    EDEADLK = 35,
    ENOSYS = 38,
    EOVERFLOW = 75,
    EOPNOTSUPP = 95,
    ETIMEDOUT = 110,
}

/// <summary>
/// A Linux system call failed. The message names the call and the errno by its C name,
/// e.g. <c>epoll_ctl: EBADF (Bad file descriptor)</c>, so a log line says what to look up.
/// </summary>
public class SystemCallException : IOException
{
    public SystemCallException(string call, int errno, string? detail = null)
        : base(Format(call, errno, detail))
    {
        Call = call;
        ErrorNumber = errno;
        HResult = errno;
    }

    /// <summary>The C name of the call that failed (or the ioctl, for ioctls).</summary>
    public string Call { get; }

    /// <summary>The raw errno value.</summary>
    public int ErrorNumber { get; }

    /// <summary>The errno as a named value (may be a number with no name).</summary>
    public Errno Errno => (Errno)ErrorNumber;

    /// <summary>The C name of the errno, e.g. <c>EBADF</c>, or <c>errno 123</c>.</summary>
    public string ErrnoName => NameOf(ErrorNumber);

    public static string NameOf(int errno) =>
        Enum.IsDefined((Errno)errno) ? ((Errno)errno).ToString() : $"errno {errno}";

    internal static SystemCallException FromErrno(string call, Errno errno, string? detail = null) => new(call, (int)errno, detail);

    private static string Format(string call, int errno, string? detail)
    {
        var text = System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(errno);
        var message = $"{call}: {NameOf(errno)} ({text})";
        return detail is null ? message : $"{message}. {detail}";
    }
}
