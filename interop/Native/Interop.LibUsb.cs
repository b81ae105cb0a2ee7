using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    /// <summary>
    /// libusb-1.0 (libusb-1.0/libusb.h; Debian 12 ships 1.0.26, which has no libusb_init_context). Constants and
    /// structs keep their C names and are compiled against the header by <c>tests/Interop/Usb/UsbLayoutTests.cs</c>.
    /// Opaque libusb objects (libusb_context, libusb_device, libusb_device_handle) travel as pointers: contexts,
    /// handles and device lists are owned by the SafeHandles in <c>interop/Usb</c>; a libusb_device pointer is valid
    /// while the device list that returned it is alive. libusb_set_option is variadic and is not bound: the
    /// LIBUSB_DEBUG environment variable sets libusb's own log level instead.
    /// </summary>
    internal static partial class LibUsb
    {
        // enum libusb_error
        internal const int LIBUSB_SUCCESS = 0;
        internal const int LIBUSB_ERROR_IO = -1;
        internal const int LIBUSB_ERROR_INVALID_PARAM = -2;
        internal const int LIBUSB_ERROR_ACCESS = -3;
        internal const int LIBUSB_ERROR_NO_DEVICE = -4;
        internal const int LIBUSB_ERROR_NOT_FOUND = -5;
        internal const int LIBUSB_ERROR_BUSY = -6;
        internal const int LIBUSB_ERROR_TIMEOUT = -7;
        internal const int LIBUSB_ERROR_OVERFLOW = -8;
        internal const int LIBUSB_ERROR_PIPE = -9;
        internal const int LIBUSB_ERROR_INTERRUPTED = -10;
        internal const int LIBUSB_ERROR_NO_MEM = -11;
        internal const int LIBUSB_ERROR_NOT_SUPPORTED = -12;
        internal const int LIBUSB_ERROR_OTHER = -99;

        // enum libusb_endpoint_direction and the masks of bEndpointAddress and bmAttributes
        internal const byte LIBUSB_ENDPOINT_IN = 0x80;
        internal const byte LIBUSB_ENDPOINT_OUT = 0x00;
        internal const byte LIBUSB_ENDPOINT_DIR_MASK = 0x80;
        internal const byte LIBUSB_TRANSFER_TYPE_MASK = 0x03;

        // enum libusb_endpoint_transfer_type
        internal const byte LIBUSB_ENDPOINT_TRANSFER_TYPE_BULK = 0x02;

        // enum libusb_request_type and enum libusb_request_recipient: bits of bmRequestType
        internal const byte LIBUSB_REQUEST_TYPE_STANDARD = 0x00;
        internal const byte LIBUSB_REQUEST_TYPE_CLASS = 0x20;
        internal const byte LIBUSB_REQUEST_TYPE_VENDOR = 0x40;
        internal const byte LIBUSB_RECIPIENT_DEVICE = 0x00;
        internal const byte LIBUSB_RECIPIENT_INTERFACE = 0x01;

        // enum libusb_speed
        internal const int LIBUSB_SPEED_UNKNOWN = 0;
        internal const int LIBUSB_SPEED_LOW = 1;
        internal const int LIBUSB_SPEED_FULL = 2;
        internal const int LIBUSB_SPEED_HIGH = 3;
        internal const int LIBUSB_SPEED_SUPER = 4;
        internal const int LIBUSB_SPEED_SUPER_PLUS = 5;
    }
}
