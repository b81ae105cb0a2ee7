using System.Runtime.InteropServices;
using FpgaAccel.Interop.Usb;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        /// <summary>
        /// A synchronous bulk transfer on <paramref name="endpoint"/> (bit 7 set: IN). Returns 0 or a libusb_error;
        /// <paramref name="transferred"/> is valid in both cases: LIBUSB_ERROR_TIMEOUT can come with bytes moved.
        /// <paramref name="timeout"/> is in milliseconds and 0 means no timeout: callers never pass 0.
        /// </summary>
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_bulk_transfer")]
        internal static unsafe partial int libusb_bulk_transfer(
            SafeUsbDeviceHandle dev_handle, byte endpoint, byte* data, int length, out int transferred, uint timeout);
    }
}
