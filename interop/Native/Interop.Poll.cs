// CS8981: the struct keeps its C name, as every binding in this folder does.
#pragma warning disable CS8981
using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // poll.h (asm-generic/poll.h)
        internal const short POLLIN = 0x001;
        internal const short POLLOUT = 0x004;
        internal const short POLLERR = 0x008;
        internal const short POLLHUP = 0x010;

        [StructLayout(LayoutKind.Sequential)]
        internal struct pollfd
        {
            public int fd;
            public short events;
            public short revents;
        }

        // The descriptor travels inside pollfd: callers hold it with HeldDescriptors for the call (decision I2).
        [LibraryImport(Libraries.Libc, EntryPoint = "poll", SetLastError = true)]
        internal static unsafe partial int poll(pollfd* fds, ulong nfds, int timeout);
    }
}
