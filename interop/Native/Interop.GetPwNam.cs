// CS8981: the struct keeps its C name, as every binding in this folder does.
#pragma warning disable CS8981
using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>struct passwd (pwd.h). Only pw_uid and pw_gid are read; the strings stay native.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct passwd
        {
            public nint pw_name;
            public nint pw_passwd;
            public uint pw_uid;
            public uint pw_gid;
            public nint pw_gecos;
            public nint pw_dir;
            public nint pw_shell;
        }

        // Returns a pointer into static storage, or null (errno set only on a lookup error, 0 for "no such user").
        [LibraryImport(Libraries.Libc, EntryPoint = "getpwnam", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static unsafe partial passwd* getpwnam(string name);
    }
}
