using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/ioctl.h: int ioctl(int fd, unsigned long request, ...). The request is 64-bit on LP64;
        // the one optional argument is bound once, as a pointer-sized integer: a pointer (VfioNative casts it),
        // or an int for requests such as VFIO_CHECK_EXTENSION that take a value. Binding the variadic call with a fixed
        // prototype is sound on x86-64 and arm64 Linux: an integer or pointer third argument travels in the same
        // register either way (glibc's ioctl is a plain syscall wrapper that ignores the vector-count in %al).
        [LibraryImport(Libraries.Libc, EntryPoint = "ioctl", SetLastError = true)]
        internal static partial int ioctl(SafeFileDescriptor fd, ulong request, nint arg);
    }
}
