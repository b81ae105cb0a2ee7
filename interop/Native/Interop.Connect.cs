using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "connect", SetLastError = true)]
        internal static unsafe partial int connect(SafeFileDescriptor sockfd, sockaddr_un* addr, uint addrlen);
    }
}
