using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/socket.h (bits/socket.h): AF_UNIX, SOCK_STREAM, SOCK_CLOEXEC (= O_CLOEXEC).
        internal const int AF_UNIX = 1;
        internal const int SOCK_STREAM = 1;
        internal const int SOCK_CLOEXEC = 0x80000;

        // Two connected descriptors come back in sv[0] and sv[1]; the caller wraps each at once.
        [LibraryImport(Libraries.Libc, EntryPoint = "socketpair", SetLastError = true)]
        internal static unsafe partial int socketpair(int domain, int type, int protocol, int* sv);
    }
}
