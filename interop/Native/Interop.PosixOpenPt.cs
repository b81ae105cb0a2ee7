using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // stdlib.h: a pseudo-terminal pair, the master opened here and the slave named by ptsname_r.
        [LibraryImport(Libraries.Libc, EntryPoint = "posix_openpt", SetLastError = true)]
        internal static partial SafeFileDescriptor posix_openpt(int flags);

        [LibraryImport(Libraries.Libc, EntryPoint = "grantpt", SetLastError = true)]
        internal static partial int grantpt(SafeFileDescriptor fd);

        [LibraryImport(Libraries.Libc, EntryPoint = "unlockpt", SetLastError = true)]
        internal static partial int unlockpt(SafeFileDescriptor fd);

        /// <summary>Returns 0, or an errno value (not -1: ptsname_r reports its error as the result).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "ptsname_r", SetLastError = true)]
        internal static unsafe partial int ptsname_r(SafeFileDescriptor fd, byte* buf, nuint buflen);
    }
}
