using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // 64-bit offset: VFIO region offsets are region index << 40 on vfio-pci.
        [LibraryImport(Libraries.Libc, EntryPoint = "pread", SetLastError = true)]
        internal static unsafe partial nint pread(SafeFileDescriptor fd, void* buf, nuint count, long offset);
    }
}
