using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        // The descriptor is cached by libusb: no I/O, and it works without permission to open the device.
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_get_device_descriptor")]
        internal static partial int libusb_get_device_descriptor(nint dev, out libusb_device_descriptor desc);
    }
}
