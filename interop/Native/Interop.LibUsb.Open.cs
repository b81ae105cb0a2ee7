using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        /// <summary>Opens the device node (/dev/bus/usb/BBB/NNN); the handle holds its own reference to the device.</summary>
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_open")]
        internal static partial int libusb_open(nint dev, out nint dev_handle);

        // Called by SafeUsbDeviceHandle.ReleaseHandle only.
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_close")]
        internal static partial void libusb_close(nint dev_handle);
    }
}
