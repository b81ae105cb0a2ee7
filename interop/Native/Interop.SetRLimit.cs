using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "setrlimit", SetLastError = true)]
        internal static unsafe partial int setrlimit(int resource, rlimit* rlim);
    }
}
