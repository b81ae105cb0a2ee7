using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/socket.h. MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE (which would end the process).
        internal const int SOL_SOCKET = 1;
        internal const int SCM_RIGHTS = 1;
        internal const int MSG_NOSIGNAL = 0x4000;

        [LibraryImport(Libraries.Libc, EntryPoint = "sendmsg", SetLastError = true)]
        internal static unsafe partial nint sendmsg(SafeFileDescriptor sockfd, msghdr* msg, int flags);
    }
}
