using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/socket.h. MSG_CMSG_CLOEXEC: received descriptors are close-on-exec from the start (no window in which
        // a fork could inherit them). MSG_CTRUNC in msg_flags: ancillary data did not fit and was dropped.
        internal const int MSG_CTRUNC = 0x8;
        internal const int MSG_CMSG_CLOEXEC = 0x40000000;

        [LibraryImport(Libraries.Libc, EntryPoint = "recvmsg", SetLastError = true)]
        internal static unsafe partial nint recvmsg(SafeFileDescriptor sockfd, msghdr* msg, int flags);
    }
}
