using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

/// <summary>
/// Owns one Linux file descriptor. Invalid is -1, the C sentinel (0 is a valid fd). Bindings take this
/// type, not an int: the generated marshaller holds a reference for the length of the call, so a Dispose
/// on another thread cannot close the number (and let the kernel hand it to someone else) mid-call.
/// </summary>
public sealed class SafeFileDescriptor : SafeHandle
{
    /// <summary>An invalid descriptor (-1); the marshaller creates these for bindings that return a descriptor.</summary>
    public SafeFileDescriptor()
        : base(-1, ownsHandle: true)
    {
    }

    /// <summary>Wraps <paramref name="fd"/> (a descriptor an ioctl returned); when <paramref name="ownsHandle"/>, disposing closes it.</summary>
    internal SafeFileDescriptor(int fd, bool ownsHandle = true)
        : base(-1, ownsHandle) => SetHandle(fd);

    /// <summary>True for a negative descriptor: -1 is what a failed open, eventfd or epoll_create1 returns.</summary>
    public override bool IsInvalid => (int)handle < 0;

    /// <summary>
    /// The raw number. Only valid while a reference is held: pass the handle itself to bindings, and use
    /// <see cref="HeldDescriptors"/> where the number must travel inside a struct.
    /// </summary>
    internal int Fd => (int)handle;

    /// <summary>Closes the descriptor (close(2)); runs once, when the last reference is released.</summary>
    protected override bool ReleaseHandle() => Interop.Libc.close((int)handle) == 0;
}

/// <summary>
/// Keeps descriptors open while their raw numbers travel inside a struct the kernel reads (the eventfd array
/// of VFIO_DEVICE_SET_IRQS, the container fd VFIO_GROUP_SET_CONTAINER points to), where the marshaller cannot
/// hold them. The one place outside the marshaller that adds and releases references: take the numbers from
/// <see cref="Hold"/>, make the call, then dispose.
/// </summary>
internal sealed class HeldDescriptors : IDisposable
{
    private readonly SafeFileDescriptor[] _held;
    private int _count;

    /// <summary>Room for <paramref name="capacity"/> descriptors, allocated up front so holding one cannot fail after its reference is taken.</summary>
    public HeldDescriptors(int capacity) => _held = new SafeFileDescriptor[capacity];

    /// <summary>
    /// Adds a reference to <paramref name="fd"/> and returns its number, valid until <see cref="Dispose"/>;
    /// null gives -1 (the kernel's "no descriptor"). Throws <see cref="ObjectDisposedException"/> for a closed one.
    /// </summary>
    public int Hold(SafeFileDescriptor? fd)
    {
        if (fd is null)
        {
            return -1;
        }

        if (_count == _held.Length)
        {
            throw new InvalidOperationException($"Holding more than the {_held.Length} descriptors this was made for; size it for every descriptor of the call.");
        }

        var added = false;
        fd.DangerousAddRef(ref added);
        if (added)
        {
            _held[_count++] = fd;
        }

        return fd.Fd;
    }

    /// <summary>Releases every reference taken, once; a descriptor disposed meanwhile is closed now.</summary>
    public void Dispose()
    {
        while (_count > 0)
        {
            _held[--_count].DangerousRelease();
        }
    }
}
