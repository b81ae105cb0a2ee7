using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/eventfd.h: the flags are the O_ flags' values, which are octal in the headers.
        // EFD_SEMAPHORE = 00000001, EFD_CLOEXEC = 02000000 (O_CLOEXEC), EFD_NONBLOCK = 00004000 (O_NONBLOCK).
        internal const int EFD_SEMAPHORE = 0x1;
        internal const int EFD_CLOEXEC = 0x80000;
        internal const int EFD_NONBLOCK = 0x800;

        [LibraryImport(Libraries.Libc, EntryPoint = "eventfd", SetLastError = true)]
        internal static partial SafeFileDescriptor eventfd(uint initval, int flags);
    }
}
