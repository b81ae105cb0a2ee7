// CS8981: the struct keeps its C name, as every binding in this folder does.
#pragma warning disable CS8981
using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/resource.h: the resource index of the locked-memory limit (bytes).
        internal const int RLIMIT_MEMLOCK = 8;

        // sys/resource.h: RLIM_INFINITY is (rlim_t)-1 on Linux.
        internal const ulong RLIM_INFINITY = ulong.MaxValue;

        /// <summary>struct rlimit (sys/resource.h): two rlim_t (unsigned long) values.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct rlimit
        {
            public ulong rlim_cur;
            public ulong rlim_max;
        }

        [LibraryImport(Libraries.Libc, EntryPoint = "getrlimit", SetLastError = true)]
        internal static unsafe partial int getrlimit(int resource, rlimit* rlim);
    }
}
