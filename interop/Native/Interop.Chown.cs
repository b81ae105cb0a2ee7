using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int chown(string path, uint owner, uint group);
    }
}
