using System.Globalization;

namespace FpgaAccel.Interop.Usb;

/// <summary>libusb's error codes (enum libusb_error): the values are the header-checked LIBUSB_ERROR_* constants.</summary>
public enum UsbError
{
    /// <summary>LIBUSB_ERROR_IO: input/output error.</summary>
    Io = Interop.LibUsb.LIBUSB_ERROR_IO,

    /// <summary>LIBUSB_ERROR_INVALID_PARAM: an argument libusb rejects.</summary>
    InvalidParam = Interop.LibUsb.LIBUSB_ERROR_INVALID_PARAM,

    /// <summary>LIBUSB_ERROR_ACCESS: this user may not open the device node (a udev rule fixes it).</summary>
    Access = Interop.LibUsb.LIBUSB_ERROR_ACCESS,

    /// <summary>LIBUSB_ERROR_NO_DEVICE: the device is gone (unplugged or reset).</summary>
    NoDevice = Interop.LibUsb.LIBUSB_ERROR_NO_DEVICE,

    /// <summary>LIBUSB_ERROR_NOT_FOUND: no such interface, or no kernel driver to detach.</summary>
    NotFound = Interop.LibUsb.LIBUSB_ERROR_NOT_FOUND,

    /// <summary>LIBUSB_ERROR_BUSY: the interface is claimed by a kernel driver or another process.</summary>
    Busy = Interop.LibUsb.LIBUSB_ERROR_BUSY,

    /// <summary>LIBUSB_ERROR_TIMEOUT: the transfer did not finish in time (bytes may still have moved).</summary>
    Timeout = Interop.LibUsb.LIBUSB_ERROR_TIMEOUT,

    /// <summary>LIBUSB_ERROR_OVERFLOW: the device sent more than the buffer holds.</summary>
    Overflow = Interop.LibUsb.LIBUSB_ERROR_OVERFLOW,

    /// <summary>LIBUSB_ERROR_PIPE: the endpoint stalled (for a control request: the device does not support it).</summary>
    Pipe = Interop.LibUsb.LIBUSB_ERROR_PIPE,

    /// <summary>LIBUSB_ERROR_INTERRUPTED: a system call was interrupted.</summary>
    Interrupted = Interop.LibUsb.LIBUSB_ERROR_INTERRUPTED,

    /// <summary>LIBUSB_ERROR_NO_MEM: out of memory.</summary>
    NoMemory = Interop.LibUsb.LIBUSB_ERROR_NO_MEM,

    /// <summary>LIBUSB_ERROR_NOT_SUPPORTED: not supported on this platform or by this driver.</summary>
    NotSupported = Interop.LibUsb.LIBUSB_ERROR_NOT_SUPPORTED,

    /// <summary>LIBUSB_ERROR_OTHER: anything else.</summary>
    Other = Interop.LibUsb.LIBUSB_ERROR_OTHER,
}

/// <summary>The speed a device runs at (enum libusb_speed).</summary>
public enum UsbSpeed
{
    /// <summary>The OS does not say.</summary>
    Unknown = Interop.LibUsb.LIBUSB_SPEED_UNKNOWN,

    /// <summary>1.5 Mbit/s.</summary>
    Low = Interop.LibUsb.LIBUSB_SPEED_LOW,

    /// <summary>12 Mbit/s (an FT232R, an FT2232C/D, QEMU's usb-serial): 64-byte bulk packets.</summary>
    Full = Interop.LibUsb.LIBUSB_SPEED_FULL,

    /// <summary>480 Mbit/s (an FT2232H): 512-byte bulk packets.</summary>
    High = Interop.LibUsb.LIBUSB_SPEED_HIGH,

    /// <summary>5 Gbit/s.</summary>
    Super = Interop.LibUsb.LIBUSB_SPEED_SUPER,

    /// <summary>10 Gbit/s.</summary>
    SuperPlus = Interop.LibUsb.LIBUSB_SPEED_SUPER_PLUS,
}

/// <summary>A USB vendor and product ID pair, written <c>0403:6010</c> as lsusb writes it.</summary>
/// <param name="VendorId">idVendor.</param>
/// <param name="ProductId">idProduct.</param>
public readonly record struct UsbDeviceId(ushort VendorId, ushort ProductId)
{
    /// <summary>Parses <c>VVVV:PPPP</c> (hex, an optional 0x on each part); false for anything else.</summary>
    public static bool TryParse(string? text, out UsbDeviceId id)
    {
        id = default;
        var parts = text?.Trim().Split(':');
        if (parts is not { Length: 2 } || !TryParseHex(parts[0], out var vendor) || !TryParseHex(parts[1], out var product))
        {
            return false;
        }

        id = new UsbDeviceId(vendor, product);
        return true;
    }

    /// <summary><c>vvvv:pppp</c> in lower-case hex.</summary>
    public override string ToString() => $"{VendorId:x4}:{ProductId:x4}";

    /// <summary>
    /// A udev rule that lets group plugdev open devices with these IDs (for a file under /etc/udev/rules.d/): what a
    /// permission error's fix names.
    /// </summary>
    public string UdevRule() =>
        $"SUBSYSTEM==\"usb\", ATTRS{{idVendor}}==\"{VendorId:x4}\", ATTRS{{idProduct}}==\"{ProductId:x4}\", MODE=\"0660\", GROUP=\"plugdev\"";

    private static bool TryParseHex(string text, out ushort value)
    {
        var t = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? text[2..] : text;
        value = 0;
        return t.Length is >= 1 and <= 4 && ushort.TryParse(t, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}

/// <summary>Where a device sits: bus, hub ports from the root, address. Names it as sysfs and /dev do.</summary>
/// <param name="Bus">The bus number (the BBB of /dev/bus/usb/BBB/NNN).</param>
/// <param name="Ports">The hub port at each tier from the root hub to the device; empty for a root hub.</param>
/// <param name="Address">The device address on the bus (the NNN of /dev/bus/usb/BBB/NNN).</param>
public sealed record UsbLocation(int Bus, IReadOnlyList<int> Ports, int Address)
{
    /// <summary>The kernel's name for the device, as under /sys/bus/usb/devices: <c>1-1.2</c> (bus 1, port 1, then port 2), <c>usb1</c> for a root hub.</summary>
    public string SysfsName => Ports.Count == 0
        ? string.Create(CultureInfo.InvariantCulture, $"usb{Bus}")
        : string.Create(CultureInfo.InvariantCulture, $"{Bus}-{string.Join('.', Ports)}");

    /// <summary>The usbfs node libusb opens: <c>/dev/bus/usb/001/002</c>.</summary>
    public string DeviceNode => string.Create(CultureInfo.InvariantCulture, $"/dev/bus/usb/{Bus:D3}/{Address:D3}");

    /// <summary>The kernel's name for interface <paramref name="interfaceNumber"/> of configuration <paramref name="configuration"/>: <c>1-1:1.0</c>.</summary>
    public string InterfaceSysfsName(int configuration, int interfaceNumber) =>
        string.Create(CultureInfo.InvariantCulture, $"{SysfsName}:{configuration}.{interfaceNumber}");

    /// <summary>The sysfs name, e.g. <c>1-1.2</c>.</summary>
    public override string ToString() => SysfsName;
}

/// <summary>The fields of a device descriptor a caller uses to choose and describe a device.</summary>
/// <param name="Id">idVendor and idProduct.</param>
/// <param name="DeviceRelease">bcdDevice, the device's release (FTDI parts encode the chip type in it).</param>
/// <param name="UsbRelease">bcdUSB.</param>
/// <param name="DeviceClass">bDeviceClass (0: per interface).</param>
/// <param name="ConfigurationCount">bNumConfigurations.</param>
public sealed record UsbDeviceDescriptor(UsbDeviceId Id, ushort DeviceRelease, ushort UsbRelease, byte DeviceClass, byte ConfigurationCount);

/// <summary>How an endpoint moves data (bits 1:0 of bmAttributes).</summary>
public enum UsbTransferType
{
    /// <summary>Control.</summary>
    Control = 0,

    /// <summary>Isochronous.</summary>
    Isochronous = 1,

    /// <summary>Bulk: what a serial bridge uses.</summary>
    Bulk = Interop.LibUsb.LIBUSB_ENDPOINT_TRANSFER_TYPE_BULK,

    /// <summary>Interrupt.</summary>
    Interrupt = 3,
}

/// <summary>One endpoint of an interface.</summary>
/// <param name="Address">bEndpointAddress; bit 7 set for IN (device to host).</param>
/// <param name="Type">The transfer type.</param>
/// <param name="MaxPacketSize">wMaxPacketSize: the bytes of one packet (64 at full speed, 512 at high speed for bulk).</param>
public sealed record UsbEndpoint(byte Address, UsbTransferType Type, int MaxPacketSize)
{
    /// <summary>True for an IN endpoint (device to host).</summary>
    public bool IsIn => (Address & Interop.LibUsb.LIBUSB_ENDPOINT_DIR_MASK) == Interop.LibUsb.LIBUSB_ENDPOINT_IN;
}

/// <summary>One alternate setting of an interface.</summary>
/// <param name="Number">bInterfaceNumber: what claim, detach and attach take.</param>
/// <param name="AlternateSetting">bAlternateSetting.</param>
/// <param name="Class">bInterfaceClass (0xff: vendor specific, as FTDI's).</param>
/// <param name="Endpoints">Its endpoints.</param>
public sealed record UsbInterface(int Number, int AlternateSetting, byte Class, IReadOnlyList<UsbEndpoint> Endpoints);

/// <summary>A configuration and its interfaces (every alternate setting).</summary>
/// <param name="Value">bConfigurationValue (the C in the sysfs interface name B-P:C.I).</param>
/// <param name="Interfaces">Every interface and alternate setting, in descriptor order.</param>
public sealed record UsbConfiguration(int Value, IReadOnlyList<UsbInterface> Interfaces);

/// <summary>What a bulk transfer moved.</summary>
/// <param name="Transferred">Bytes moved, also when the transfer timed out.</param>
/// <param name="TimedOut">True when the timeout ended it (LIBUSB_ERROR_TIMEOUT); <paramref name="Transferred"/> bytes still count.</param>
public readonly record struct UsbBulkResult(int Transferred, bool TimedOut);

/// <summary>The setup packet of a control transfer, without wLength (the data span's length).</summary>
/// <param name="RequestType">bmRequestType: direction, type and recipient bits.</param>
/// <param name="Request">bRequest.</param>
/// <param name="Value">wValue.</param>
/// <param name="Index">wIndex.</param>
public readonly record struct UsbControlSetup(byte RequestType, byte Request, ushort Value, ushort Index)
{
    /// <summary>bmRequestType of a vendor request to the device, host to device.</summary>
    public const byte VendorOut = Interop.LibUsb.LIBUSB_REQUEST_TYPE_VENDOR | Interop.LibUsb.LIBUSB_RECIPIENT_DEVICE | Interop.LibUsb.LIBUSB_ENDPOINT_OUT;

    /// <summary>bmRequestType of a vendor request to the device, device to host.</summary>
    public const byte VendorIn = Interop.LibUsb.LIBUSB_REQUEST_TYPE_VENDOR | Interop.LibUsb.LIBUSB_RECIPIENT_DEVICE | Interop.LibUsb.LIBUSB_ENDPOINT_IN;

    /// <summary>True when data flows device to host.</summary>
    public bool IsIn => (RequestType & Interop.LibUsb.LIBUSB_ENDPOINT_DIR_MASK) == Interop.LibUsb.LIBUSB_ENDPOINT_IN;
}
