using System.Runtime.InteropServices;
using FpgaAccel.Interop.Usb;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        /// <summary>Returns the number of devices (ssize_t) or a negative libusb_error; the list ends with NULL.</summary>
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_get_device_list")]
        internal static partial nint libusb_get_device_list(SafeUsbContext ctx, out nint list);

        // unref_devices = 1: the list's own reference to each device goes with it (SafeUsbDeviceList.ReleaseHandle).
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_free_device_list")]
        internal static partial void libusb_free_device_list(nint list, int unref_devices);
    }
}
