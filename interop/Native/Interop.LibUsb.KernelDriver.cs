using System.Runtime.InteropServices;
using FpgaAccel.Interop.Usb;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        /// <summary>1 when a kernel driver (ftdi_sio, say) is bound to the interface, 0 when none, else a libusb_error.</summary>
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_kernel_driver_active")]
        internal static partial int libusb_kernel_driver_active(SafeUsbDeviceHandle dev_handle, int interface_number);

        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_detach_kernel_driver")]
        internal static partial int libusb_detach_kernel_driver(SafeUsbDeviceHandle dev_handle, int interface_number);

        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_attach_kernel_driver")]
        internal static partial int libusb_attach_kernel_driver(SafeUsbDeviceHandle dev_handle, int interface_number);
    }
}
