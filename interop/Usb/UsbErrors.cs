using System.Globalization;

namespace FpgaAccel.Interop.Usb;

/// <summary>What a failed libusb call acted on, for the message and the fix.</summary>
/// <param name="Id">The device's vendor and product ID, when known.</param>
/// <param name="Location">Where it sits (sysfs name, /dev node), when known.</param>
/// <param name="Interface">The interface number, for claim, release, detach and attach.</param>
/// <param name="KernelDriver">The kernel driver bound to that interface (from sysfs), when one is.</param>
internal sealed record UsbErrorSubject(UsbDeviceId? Id = null, UsbLocation? Location = null, int? Interface = null, string? KernelDriver = null)
{
    /// <summary>The subject as the call's argument list: <c>/dev/bus/usb/001/002, 0403:6010, interface 1</c>.</summary>
    public string Describe()
    {
        var parts = new List<string>(3);
        if (Location is not null)
        {
            parts.Add($"{Location.DeviceNode} at {Location.SysfsName}");
        }

        if (Id is { } id)
        {
            parts.Add(id.ToString());
        }

        if (Interface is { } n)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"interface {n}"));
        }

        return string.Join(", ", parts);
    }
}

/// <summary>Turns a negative libusb return into a <see cref="UsbException"/> whose fix fits the call and the error: the one place that does.</summary>
internal static class UsbErrors
{
    /// <summary>Returns <paramref name="result"/> when it is not negative; otherwise throws for <paramref name="call"/> on <paramref name="subject"/>.</summary>
    public static int Check(int result, string call, UsbErrorSubject subject) =>
        result >= 0 ? result : throw From(call, result, subject);

    /// <summary>The exception for <paramref name="call"/> failing with libusb error <paramref name="code"/>.</summary>
    public static UsbException From(string call, int code, UsbErrorSubject subject)
    {
        var error = Enum.IsDefined((UsbError)code) ? (UsbError)code : UsbError.Other;
        var described = subject.Describe();
        return new UsbException(described.Length == 0 ? call : $"{call}({described})", error, Fix(call, error, subject));
    }

    /// <summary>The udev rule that gives a group read-write access to a device, for the permission fixes.</summary>
    public static string UdevRule(UsbDeviceId id) => id.UdevRule();

    private static string Fix(string call, UsbError error, UsbErrorSubject s)
    {
        var node = s.Location?.DeviceNode ?? "the device node under /dev/bus/usb";
        var id = s.Id?.ToString() ?? "the device";
        var iface = s.Interface is { } n ? string.Create(CultureInfo.InvariantCulture, $"interface {n}") : "the interface";
        if (call == "libusb_init")
        {
            return "libusb could not start: usbfs (/dev/bus/usb) is missing or unreadable here (a container without the USB bus " +
                   "passed through, or a kernel without USB support); run with LIBUSB_DEBUG=4 in the environment for libusb's reason";
        }

        return error switch
        {
            UsbError.Access => s.Id is { } known
                ? $"This user may not open {node}. Add a udev rule such as /etc/udev/rules.d/70-fpgaaccel-bmc.rules holding " +
                  $"'{UdevRule(known)}', reload it ('udevadm control --reload-rules && udevadm trigger'), add the user to group plugdev " +
                  "and log in again; or run as root"
                : $"This user may not open {node}: add a udev rule for the device (MODE=\"0660\", GROUP=\"plugdev\") or run as root",
            UsbError.Busy when s.KernelDriver is not null =>
                $"{iface} of {id} is held by the kernel driver {s.KernelDriver}: detach it first (libusb_detach_kernel_driver; " +
                $"fpgaaccel does this itself) or unbind it through /sys/bus/usb/drivers/{s.KernelDriver}/unbind",
            UsbError.Busy =>
                $"{iface} of {id} is claimed by another process (another 'fpgaaccel bmc', or any libusb program using {node}); " +
                $"close it there first ('fuser {node}' names it)",
            UsbError.NoDevice => $"{id} is gone from the bus (unplugged, powered off or reset); reconnect it and retry",
            UsbError.NotFound when call.Contains("detach", StringComparison.Ordinal) => $"No kernel driver is bound to {iface} of {id}; nothing to detach",
            UsbError.NotFound when call.Contains("attach", StringComparison.Ordinal) => $"The kernel has no driver for {iface} of {id} to re-attach (is ftdi_sio loaded?)",
            UsbError.NotFound => $"{id} has no {iface} in its active configuration; check which interface carries the function",
            UsbError.Timeout => $"{id} did not complete the transfer in time: check that it is powered and its cable seated",
            UsbError.Pipe => $"{id} stalled the request: it does not support it (an unknown vendor request) or the endpoint is halted",
            UsbError.Overflow => $"{id} sent more than the buffer holds; read whole packets (a multiple of wMaxPacketSize)",
            UsbError.NotSupported => "This operation is not supported on this platform or by the device's kernel driver",
            UsbError.InvalidParam => "An argument is out of range for libusb (an interface or endpoint the device does not have)",
            UsbError.NoMemory => "libusb ran out of memory",
            UsbError.Interrupted => "A signal interrupted the transfer; retry",
            UsbError.Io => $"The transfer to {id} failed on the bus; see the kernel log (dmesg) and retry",
            _ => "See the kernel log (dmesg), and run with LIBUSB_DEBUG=4 in the environment for libusb's own log",
        };
    }
}
