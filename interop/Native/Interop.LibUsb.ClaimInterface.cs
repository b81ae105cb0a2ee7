using System.Runtime.InteropServices;
using FpgaAccel.Interop.Usb;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_claim_interface")]
        internal static partial int libusb_claim_interface(SafeUsbDeviceHandle dev_handle, int interface_number);

        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_release_interface")]
        internal static partial int libusb_release_interface(SafeUsbDeviceHandle dev_handle, int interface_number);
    }
}
