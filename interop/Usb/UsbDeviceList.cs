using System.Collections;
using System.Runtime.InteropServices;

namespace FpgaAccel.Interop.Usb;

/// <summary>
/// A snapshot of the devices on the buses (libusb_get_device_list). Descriptors and locations are read when the
/// list is made; opening or reading a configuration goes to libusb and needs the list undisposed.
/// </summary>
public sealed class UsbDeviceList : IReadOnlyList<UsbDevice>, IDisposable
{
    private readonly SafeUsbDeviceList _list;
    private readonly UsbDevice[] _devices;

    internal unsafe UsbDeviceList(SafeUsbContext context, SafeUsbDeviceList list, long count)
    {
        _list = list;
        var devices = new List<UsbDevice>((int)Math.Min(count, 256));
        if (!list.IsInvalid)
        {
            var raw = (nint*)list.DangerousGetHandle();
            for (long i = 0; i < count && raw[i] != 0; i++)
            {
                var device = UsbDevice.Read(context, list, raw[i]);
                if (device is not null)
                {
                    devices.Add(device);
                }
            }
        }

        _devices = [.. devices];
    }

    /// <summary>How many devices the list holds.</summary>
    public int Count => _devices.Length;

    /// <summary>The device at <paramref name="index"/>.</summary>
    public UsbDevice this[int index] => _devices[index];

    /// <summary>Enumerates the devices.</summary>
    public IEnumerator<UsbDevice> GetEnumerator() => ((IEnumerable<UsbDevice>)_devices).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Frees the list (libusb_free_device_list, dropping its device references); open devices stay open.</summary>
    public void Dispose() => _list.Dispose();
}

/// <summary>One device of a <see cref="UsbDeviceList"/>: its descriptor and location, and the way to open it.</summary>
public sealed class UsbDevice
{
    // libusb_get_port_numbers: USB 3 allows at most 7 tiers below the root hub.
    private const int MaxPortNumbers = 7;

    private readonly SafeUsbContext _context;
    private readonly SafeUsbDeviceList _list;
    private readonly nint _device;

    private UsbDevice(SafeUsbContext context, SafeUsbDeviceList list, nint device, UsbDeviceDescriptor descriptor, UsbLocation location, UsbSpeed speed)
    {
        _context = context;
        _list = list;
        _device = device;
        Descriptor = descriptor;
        Location = location;
        Speed = speed;
    }

    /// <summary>The device descriptor (IDs, release, class).</summary>
    public UsbDeviceDescriptor Descriptor { get; }

    /// <summary>Bus, ports and address: the sysfs name and /dev node.</summary>
    public UsbLocation Location { get; }

    /// <summary>The speed it runs at.</summary>
    public UsbSpeed Speed { get; }

    /// <summary>Reads the active configuration's interfaces and endpoints (libusb_get_active_config_descriptor).</summary>
    public unsafe UsbConfiguration GetActiveConfiguration()
    {
        using var hold = new ListHold(_list);
        var subject = new UsbErrorSubject(Descriptor.Id, Location);
        UsbErrors.Check(Interop.LibUsb.libusb_get_active_config_descriptor(_device, out var raw), "libusb_get_active_config_descriptor", subject);
        try
        {
            var config = (Interop.LibUsb.libusb_config_descriptor*)raw;
            var interfaces = new List<UsbInterface>();
            for (var i = 0; i < config->bNumInterfaces; i++)
            {
                var group = (Interop.LibUsb.libusb_interface*)config->@interface + i;
                for (var a = 0; a < group->num_altsetting; a++)
                {
                    var alt = (Interop.LibUsb.libusb_interface_descriptor*)group->altsetting + a;
                    var endpoints = new UsbEndpoint[alt->bNumEndpoints];
                    for (var e = 0; e < endpoints.Length; e++)
                    {
                        var ep = (Interop.LibUsb.libusb_endpoint_descriptor*)alt->endpoint + e;
                        endpoints[e] = new UsbEndpoint(
                            ep->bEndpointAddress,
                            (UsbTransferType)(ep->bmAttributes & Interop.LibUsb.LIBUSB_TRANSFER_TYPE_MASK),
                            ep->wMaxPacketSize & 0x7ff); // bits 12:11 are extra transactions per microframe (high speed isochronous)
                    }

                    interfaces.Add(new UsbInterface(alt->bInterfaceNumber, alt->bAlternateSetting, alt->bInterfaceClass, endpoints));
                }
            }

            return new UsbConfiguration(config->bConfigurationValue, interfaces);
        }
        finally
        {
            Interop.LibUsb.libusb_free_config_descriptor(raw);
        }
    }

    /// <summary>
    /// Opens the device node (libusb_open). Needs read-write access to <see cref="UsbLocation.DeviceNode"/>:
    /// LIBUSB_ERROR_ACCESS comes as a <see cref="UsbException"/> naming the udev rule that grants it.
    /// </summary>
    public UsbDeviceHandle Open()
    {
        using var hold = new ListHold(_list);
        var handle = SafeUsbDeviceHandle.Open(_context, _device, out var result);
        if (result != Interop.LibUsb.LIBUSB_SUCCESS)
        {
            handle.Dispose();
            throw UsbErrors.From("libusb_open", result, new UsbErrorSubject(Descriptor.Id, Location));
        }

        return new UsbDeviceHandle(handle, Descriptor, Location);
    }

    /// <summary>The descriptor fields and location of a list entry; null when libusb cannot read its descriptor.</summary>
    internal static unsafe UsbDevice? Read(SafeUsbContext context, SafeUsbDeviceList list, nint device)
    {
        if (Interop.LibUsb.libusb_get_device_descriptor(device, out var d) != Interop.LibUsb.LIBUSB_SUCCESS)
        {
            return null;
        }

        var ports = stackalloc byte[MaxPortNumbers];
        var depth = Interop.LibUsb.libusb_get_port_numbers(device, ports, MaxPortNumbers);
        var portList = new int[Math.Max(depth, 0)];
        for (var i = 0; i < portList.Length; i++)
        {
            portList[i] = ports[i];
        }

        var location = new UsbLocation(Interop.LibUsb.libusb_get_bus_number(device), portList, Interop.LibUsb.libusb_get_device_address(device));
        var speed = Interop.LibUsb.libusb_get_device_speed(device);
        var descriptor = new UsbDeviceDescriptor(new UsbDeviceId(d.idVendor, d.idProduct), d.bcdDevice, d.bcdUSB, d.bDeviceClass, d.bNumConfigurations);
        return new UsbDevice(context, list, device, descriptor, location, Enum.IsDefined((UsbSpeed)speed) ? (UsbSpeed)speed : UsbSpeed.Unknown);
    }

    /// <summary>Keeps the list (and so the libusb_device pointer) alive for one call; throws ObjectDisposedException once it is freed.</summary>
    private readonly ref struct ListHold
    {
        private readonly SafeHandle _list;

        public ListHold(SafeHandle list)
        {
            _list = list;
            var added = false;
            list.DangerousAddRef(ref added);
        }

        public void Dispose() => _list.DangerousRelease();
    }
}
