using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/socket.h (bits/socket.h, bits/socket_type.h). SOCK_CLOEXEC is O_CLOEXEC, 02000000 octal.
        internal const int AF_UNIX = 1;
        internal const int SOCK_STREAM = 1;
        internal const int SOCK_CLOEXEC = 0x80000;

        [LibraryImport(Libraries.Libc, EntryPoint = "socket", SetLastError = true)]
        internal static partial SafeFileDescriptor socket(int domain, int type, int protocol);
    }
}
