// CS8981: the structs keep their C names, as every binding in this folder does.
#pragma warning disable CS8981
using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/socket.h, sys/un.h and bits/uio.h structs, field for field in C order with the C names (x86-64
        // layout: pointers and size_t are 8 bytes). Pointers are nint: the structs point into buffers the caller
        // pins for the call. Sizes and offsets are checked against the headers by VfioLayoutTests.

        /// <summary>struct iovec: one buffer of a scatter/gather list.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct iovec
        {
            public nint iov_base;
            public nuint iov_len;
        }

        /// <summary>struct msghdr: what sendmsg and recvmsg move (data buffers and ancillary data).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct msghdr
        {
            public nint msg_name;
            public uint msg_namelen;
            public nint msg_iov;
            public nuint msg_iovlen;
            public nint msg_control;
            public nuint msg_controllen;
            public int msg_flags;
        }

        /// <summary>struct cmsghdr: the header of one ancillary message; its data follows at CMSG_ALIGN(sizeof(cmsghdr)).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct cmsghdr
        {
            public nuint cmsg_len;
            public int cmsg_level;
            public int cmsg_type;
        }

        /// <summary>struct sockaddr_un: an AF_UNIX address, a path of at most 107 bytes plus its NUL.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct sockaddr_un
        {
            public ushort sun_family;
            public fixed byte sun_path[108];
        }
    }
}
