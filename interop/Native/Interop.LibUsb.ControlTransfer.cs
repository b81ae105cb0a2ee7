using System.Runtime.InteropServices;
using FpgaAccel.Interop.Usb;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        /// <summary>
        /// A synchronous control transfer; returns the bytes transferred or a libusb_error. <paramref name="timeout"/>
        /// is in milliseconds and 0 means no timeout: callers never pass 0.
        /// </summary>
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_control_transfer")]
        internal static unsafe partial int libusb_control_transfer(
            SafeUsbDeviceHandle dev_handle, byte request_type, byte bRequest, ushort wValue, ushort wIndex, byte* data, ushort wLength, uint timeout);
    }
}
