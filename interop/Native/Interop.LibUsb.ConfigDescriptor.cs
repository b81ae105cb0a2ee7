using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        /// <summary>Allocates the active configuration's descriptor tree; free it with libusb_free_config_descriptor.</summary>
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_get_active_config_descriptor")]
        internal static partial int libusb_get_active_config_descriptor(nint dev, out nint config);

        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_free_config_descriptor")]
        internal static partial void libusb_free_config_descriptor(nint config);
    }
}
