using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

/// <summary>
/// Owns one Linux file descriptor. Invalid is -1, the C sentinel (0 is a valid fd).
/// </summary>
public sealed class SafeFileDescriptor : SafeHandle
{
    public SafeFileDescriptor()
        : base(-1, ownsHandle: true)
    {
    }

    public SafeFileDescriptor(int fd, bool ownsHandle = true)
        : base(-1, ownsHandle) => SetHandle(fd);

    public override bool IsInvalid => (int)handle < 0;

    /// <summary>The raw descriptor, for calls that take an int (VFIO eventfd arrays).</summary>
    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => Interop.Libc.close((int)handle) == 0;
}
