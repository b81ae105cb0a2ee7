using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // AF_UNIX, SOCK_STREAM and SOCK_CLOEXEC are beside socketpair (Interop.SocketPair.cs).
        [LibraryImport(Libraries.Libc, EntryPoint = "socket", SetLastError = true)]
        internal static partial SafeFileDescriptor socket(int domain, int type, int protocol);
    }
}
