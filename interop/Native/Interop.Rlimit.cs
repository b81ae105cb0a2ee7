using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        internal const int RLIMIT_MEMLOCK = 8;
        internal const ulong RLIM_INFINITY = ulong.MaxValue;

        /// <summary>struct rlimit: two rlim_t (unsigned long) on 64-bit Linux.</summary>
        // The C name is kept inside interop, as for every binding here.
#pragma warning disable CS8981
        [StructLayout(LayoutKind.Sequential)]
        internal struct rlimit
        {
            public ulong rlim_cur;
            public ulong rlim_max;
        }
#pragma warning restore CS8981

        [LibraryImport(Libraries.Libc, EntryPoint = "getrlimit", SetLastError = true)]
        internal static unsafe partial int getrlimit(int resource, rlimit* rlim);

        [LibraryImport(Libraries.Libc, EntryPoint = "setrlimit", SetLastError = true)]
        internal static unsafe partial int setrlimit(int resource, rlimit* rlim);
    }
}
