using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // The peer's address is not asked for (addr and addrlen NULL): an AF_UNIX client is named by nothing useful.
        [LibraryImport(Libraries.Libc, EntryPoint = "accept4", SetLastError = true)]
        internal static partial SafeFileDescriptor accept4(SafeFileDescriptor sockfd, nint addr, nint addrlen, int flags);
    }
}
