// CS8981: the struct keeps its C name, as every binding in this folder does.
#pragma warning disable CS8981
using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // termios.h (asm-generic/termbits.h, octal there): B115200 = 0010002, O_NOCTTY = 0400.
        internal const int NCCS = 32;
        internal const int TCSANOW = 0;
        internal const int TCIOFLUSH = 2;
        internal const uint B9600 = 0xD;
        internal const uint B115200 = 0x1002;
        internal const uint CLOCAL = 0x800;
        internal const uint CREAD = 0x80;
        internal const uint CRTSCTS = 0x80000000;
        internal const uint CSTOPB = 0x40;
        internal const uint PARENB = 0x100;
        internal const uint CSIZE = 0x30;
        internal const uint CS8 = 0x30;
        internal const int VMIN = 6;
        internal const int VTIME = 5;
        internal const int O_NOCTTY = 0x100;
        internal const int O_NONBLOCK = 0x800;

        /// <summary>glibc's struct termios (not the kernel's: glibc adds c_ispeed and c_ospeed).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct termios
        {
            public uint c_iflag;
            public uint c_oflag;
            public uint c_cflag;
            public uint c_lflag;
            public byte c_line;
            public fixed byte c_cc[NCCS];
            public uint c_ispeed;
            public uint c_ospeed;
        }

        [LibraryImport(Libraries.Libc, EntryPoint = "tcgetattr", SetLastError = true)]
        internal static unsafe partial int tcgetattr(SafeFileDescriptor fd, termios* termios_p);

        [LibraryImport(Libraries.Libc, EntryPoint = "tcsetattr", SetLastError = true)]
        internal static unsafe partial int tcsetattr(SafeFileDescriptor fd, int optional_actions, termios* termios_p);

        [LibraryImport(Libraries.Libc, EntryPoint = "tcflush", SetLastError = true)]
        internal static partial int tcflush(SafeFileDescriptor fd, int queue_selector);

        // cfmakeraw: no input or output processing, no echo, no signals, 8-bit characters.
        [LibraryImport(Libraries.Libc, EntryPoint = "cfmakeraw")]
        internal static unsafe partial void cfmakeraw(termios* termios_p);

        [LibraryImport(Libraries.Libc, EntryPoint = "cfsetspeed", SetLastError = true)]
        internal static unsafe partial int cfsetspeed(termios* termios_p, uint speed);
    }
}
