using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        // libusb_exit is called by SafeUsbContext.ReleaseHandle only, once every handle and list holding it is gone.
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_init")]
        internal static partial int libusb_init(out nint ctx);

        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_exit")]
        internal static partial void libusb_exit(nint ctx);
    }
}
