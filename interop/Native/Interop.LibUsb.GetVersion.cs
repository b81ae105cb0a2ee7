using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        /// <summary>A pointer to libusb's static version struct (never freed).</summary>
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_get_version")]
        internal static unsafe partial libusb_version* libusb_get_version();
    }
}
