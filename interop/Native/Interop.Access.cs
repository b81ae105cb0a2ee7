using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // unistd.h
        internal const int R_OK = 4;
        internal const int W_OK = 2;

        [LibraryImport(Libraries.Libc, EntryPoint = "access", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int access(string path, int mode);
    }
}
