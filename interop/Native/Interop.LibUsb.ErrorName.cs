using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        // Both return pointers to static strings owned by libusb: they are bound as byte*, never as string, because
        // the string marshaller would free the returned pointer.
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_error_name")]
        internal static unsafe partial byte* libusb_error_name(int errcode);

        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_strerror")]
        internal static unsafe partial byte* libusb_strerror(int errcode);
    }
}
