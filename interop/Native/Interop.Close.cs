using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // The one binding that takes the raw number: SafeFileDescriptor.ReleaseHandle calls it, when no reference is left.
        [LibraryImport(Libraries.Libc, EntryPoint = "close", SetLastError = true)]
        internal static partial int close(int fd);
    }
}
