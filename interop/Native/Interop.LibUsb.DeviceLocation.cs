using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        // Where a device sits: its bus, the hub ports from the root to it (the sysfs name "bus-port.port"), its
        // address on the bus (the N of /dev/bus/usb/BBB/NNN) and its speed. All cached by libusb; no I/O.
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_get_bus_number")]
        internal static partial byte libusb_get_bus_number(nint dev);

        /// <summary>Fills up to <paramref name="port_numbers_len"/> ports; returns how many, or LIBUSB_ERROR_OVERFLOW.</summary>
        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_get_port_numbers")]
        internal static unsafe partial int libusb_get_port_numbers(nint dev, byte* port_numbers, int port_numbers_len);

        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_get_device_address")]
        internal static partial byte libusb_get_device_address(nint dev);

        [LibraryImport(Libraries.LibUsb, EntryPoint = "libusb_get_device_speed")]
        internal static partial int libusb_get_device_speed(nint dev);
    }
}
