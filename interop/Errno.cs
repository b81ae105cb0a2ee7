namespace FpgaAccel.Interop;

/// <summary>Linux errno values (asm-generic/errno-base.h and errno.h) this code base names.</summary>
public enum Errno
{
    /// <summary>Operation not permitted: the process lacks the privilege (root or a capability).</summary>
    EPERM = 1,

    /// <summary>No such file or directory: a path (a device node, a sysfs entry) does not exist.</summary>
    ENOENT = 2,

    /// <summary>No such process.</summary>
    ESRCH = 3,

    /// <summary>A signal interrupted the call before it finished; the wait loops here retry it.</summary>
    EINTR = 4,

    /// <summary>Input/output error: the device or the transfer failed.</summary>
    EIO = 5,

    /// <summary>No such device or address: the node exists but its device does not answer.</summary>
    ENXIO = 6,

    /// <summary>Argument list too long: an argument is larger than the call accepts.</summary>
    E2BIG = 7,

    /// <summary>Bad file descriptor: closed, or not open for this use.</summary>
    EBADF = 9,

    /// <summary>Try again: a non-blocking call would have had to wait.</summary>
    EAGAIN = 11,

    /// <summary>Out of memory, or (VFIO DMA mapping) over the locked-memory limit RLIMIT_MEMLOCK.</summary>
    ENOMEM = 12,

    /// <summary>Permission denied by the file's mode or owner.</summary>
    EACCES = 13,

    /// <summary>Bad address: a pointer the call was given is not mapped in this process.</summary>
    EFAULT = 14,

    /// <summary>Device or resource busy: another user holds it.</summary>
    EBUSY = 16,

    /// <summary>Already exists (VFIO: the IOVA range is already mapped).</summary>
    EEXIST = 17,

    /// <summary>Cross-device link.</summary>
    EXDEV = 18,

    /// <summary>No such device, or the device does not support the operation.</summary>
    ENODEV = 19,

    /// <summary>A path component is not a directory.</summary>
    ENOTDIR = 20,

    /// <summary>The path is a directory.</summary>
    EISDIR = 21,

    /// <summary>Invalid argument: a value, flag, size or alignment the call rejects.</summary>
    EINVAL = 22,

    /// <summary>The system's table of open files is full.</summary>
    ENFILE = 23,

    /// <summary>This process has as many descriptors open as RLIMIT_NOFILE allows.</summary>
    EMFILE = 24,

    /// <summary>Inappropriate ioctl: the descriptor does not accept this request.</summary>
    ENOTTY = 25,

    /// <summary>File too large.</summary>
    EFBIG = 27,

    /// <summary>No space left (VFIO: too many DMA mappings, the dma_entry_limit).</summary>
    ENOSPC = 28,

    /// <summary>Illegal seek: the descriptor has no file offset (pread/pwrite on a pipe).</summary>
    ESPIPE = 29,

    /// <summary>Read-only file system.</summary>
    EROFS = 30,

    /// <summary>Broken pipe: the reading end is closed.</summary>
    EPIPE = 32,

    /// <summary>Result out of range: a buffer is too small for the answer.</summary>
    ERANGE = 34,

    /// <summary>The operation would deadlock.</summary>
    EDEADLK = 35,

    /// <summary>The kernel does not implement this call.</summary>
    ENOSYS = 38,

    /// <summary>Value too large for the type the call returns it in.</summary>
    EOVERFLOW = 75,

    /// <summary>Socket operation on a descriptor that is not a socket.</summary>
    ENOTSOCK = 88,

    /// <summary>Operation not supported by this descriptor or kernel.</summary>
    EOPNOTSUPP = 95,

    /// <summary>Address already in use: something already exists at the socket path.</summary>
    EADDRINUSE = 98,

    /// <summary>A connection was aborted before it was accepted; accept waits for the next.</summary>
    ECONNABORTED = 103,

    /// <summary>The peer reset the connection.</summary>
    ECONNRESET = 104,

    /// <summary>The socket is not connected (shutdown of a connection the peer already ended).</summary>
    ENOTCONN = 107,

    /// <summary>The operation timed out.</summary>
    ETIMEDOUT = 110,

    /// <summary>Connection refused: nothing listens at the socket path.</summary>
    ECONNREFUSED = 111,
}

/// <summary>
/// A Linux system call failed. The message names the call and the errno by its C name,
/// e.g. <c>epoll_ctl: EBADF (Bad file descriptor)</c>, so a log line says what to look up.
/// </summary>
public class SystemCallException : IOException
{
    /// <summary>A failure of <paramref name="call"/> with <paramref name="errno"/>; <paramref name="detail"/>, when given, says what it means here and the fix.</summary>
    internal SystemCallException(string call, int errno, string? detail = null)
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

    /// <summary>The C name of <paramref name="errno"/>, or <c>errno N</c> for a number this code base does not name.</summary>
    internal static string NameOf(int errno) =>
        Enum.IsDefined((Errno)errno) ? ((Errno)errno).ToString() : $"errno {errno}";

    internal static SystemCallException FromErrno(string call, Errno errno, string? detail = null) => new(call, (int)errno, detail);

    private static string Format(string call, int errno, string? detail)
    {
        var text = System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(errno);
        var message = $"{call}: {NameOf(errno)} ({text})";
        return detail is null ? message : $"{message}. {detail}";
    }
}
