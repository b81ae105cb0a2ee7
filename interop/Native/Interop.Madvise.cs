using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        internal const int MADV_DONTFORK = 10;
        internal const int MADV_HUGEPAGE = 14;
        internal const int MADV_NOHUGEPAGE = 15;

        [LibraryImport(Libraries.Libc, EntryPoint = "madvise", SetLastError = true)]
        internal static partial int madvise(nint addr, nuint length, int advice);
    }
}
