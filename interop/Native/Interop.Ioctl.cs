using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/ioctl.h: int ioctl(int fd, unsigned long request, ...). The request is 64-bit on LP64;
        // the one optional argument is passed as a pointer-sized integer (a pointer, or an int for
        // requests such as VFIO_CHECK_EXTENSION that take a value).
        [LibraryImport(Libraries.Libc, EntryPoint = "ioctl", SetLastError = true)]
        internal static unsafe partial int ioctl(int fd, ulong request, void* arg);

        [LibraryImport(Libraries.Libc, EntryPoint = "ioctl", SetLastError = true)]
        internal static partial int ioctl(int fd, ulong request, nint arg);
    }
}
