using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        internal const int EPOLL_CLOEXEC = 0x80000; // O_CLOEXEC, 02000000 octal
        internal const int EPOLL_CTL_ADD = 1;
        internal const int EPOLL_CTL_DEL = 2;
        internal const int EPOLL_CTL_MOD = 3;

        internal const uint EPOLLIN = 0x001;
        internal const uint EPOLLOUT = 0x004;
        internal const uint EPOLLERR = 0x008;
        internal const uint EPOLLHUP = 0x010;

        /// <summary>
        /// struct epoll_event. On x86-64 the kernel declares it packed (12 bytes, data at 4);
        /// other architectures align data to 8. Only x86-64 is supported (see Epoll).
        /// </summary>
        [StructLayout(LayoutKind.Sequential, Pack = 4)]
        internal struct epoll_event
        {
            public uint events;
            public ulong data;
        }

        [LibraryImport(Libraries.Libc, EntryPoint = "epoll_create1", SetLastError = true)]
        internal static partial SafeFileDescriptor epoll_create1(int flags);

        [LibraryImport(Libraries.Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
        internal static unsafe partial int epoll_ctl(SafeFileDescriptor epfd, int op, SafeFileDescriptor fd, epoll_event* ev);

        [LibraryImport(Libraries.Libc, EntryPoint = "epoll_wait", SetLastError = true)]
        internal static unsafe partial int epoll_wait(SafeFileDescriptor epfd, epoll_event* events, int maxevents, int timeout);
    }
}
