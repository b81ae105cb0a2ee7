using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/socket.h: SHUT_RD 0, SHUT_WR 1, SHUT_RDWR 2.
        internal const int SHUT_RDWR = 2;

        [LibraryImport(Libraries.Libc, EntryPoint = "shutdown", SetLastError = true)]
        internal static partial int shutdown(SafeFileDescriptor sockfd, int how);
    }
}
