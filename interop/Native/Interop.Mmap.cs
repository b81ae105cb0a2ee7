using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        internal const int PROT_NONE = 0x0;
        internal const int PROT_READ = 0x1;
        internal const int PROT_WRITE = 0x2;
        internal const int MAP_SHARED = 0x01;
        internal const int MAP_PRIVATE = 0x02;
        internal const int MAP_ANONYMOUS = 0x20;
        internal const int MAP_POPULATE = 0x08000;
        internal const int MAP_HUGETLB = 0x40000;
        internal static readonly nint MAP_FAILED = -1;

        // 64-bit length and offset: VFIO region offsets are 40-bit numbers (region index << 40).
        [LibraryImport(Libraries.Libc, EntryPoint = "mmap", SetLastError = true)]
        internal static partial nint mmap(nint addr, nuint length, int prot, int flags, SafeFileDescriptor fd, long offset);

        [LibraryImport(Libraries.Libc, EntryPoint = "munmap", SetLastError = true)]
        internal static partial int munmap(nint addr, nuint length);
    }
}
