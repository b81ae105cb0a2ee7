using System.Globalization;

namespace FpgaAccel.Interop.Usb;

/// <summary>One interface of a USB device as sysfs shows it.</summary>
/// <param name="SysfsName">The kernel's name, <c>1-1:1.0</c>.</param>
/// <param name="Number">bInterfaceNumber.</param>
/// <param name="Driver">The kernel driver bound to it (the name of its driver link), or null.</param>
/// <param name="TtyNames">The tty devices a serial driver made for it (<c>ttyUSB0</c>), if any.</param>
public sealed record UsbSysfsInterface(string SysfsName, int Number, string? Driver, IReadOnlyList<string> TtyNames);

/// <summary>A USB device as sysfs shows it: no libusb, no permission to open it needed.</summary>
/// <param name="Location">Bus, ports and address (the /dev/bus/usb node).</param>
/// <param name="Id">idVendor and idProduct.</param>
/// <param name="DeviceRelease">bcdDevice.</param>
/// <param name="Product">The product string, when the device has one.</param>
/// <param name="Serial">The serial-number string, when the device has one.</param>
/// <param name="Interfaces">Its interfaces in the active configuration.</param>
public sealed record UsbSysfsDevice(UsbLocation Location, UsbDeviceId Id, ushort DeviceRelease, string? Product, string? Serial, IReadOnlyList<UsbSysfsInterface> Interfaces);

/// <summary>
/// Reads USB devices from sysfs (<c>/sys/bus/usb/devices</c>): IDs, bus and address, interfaces and the kernel
/// driver bound to each. What doctor needs and what errors name, without opening anything. The root is a
/// parameter so tests point it at a fixture tree.
/// </summary>
public static class UsbSysfs
{
    /// <summary>Every device (not interface, not root hub) under <paramref name="sysfsRoot"/>, sorted by sysfs name.</summary>
    public static IReadOnlyList<UsbSysfsDevice> Devices(string sysfsRoot = "/sys")
    {
        var dir = Path.Combine(sysfsRoot, "bus", "usb", "devices");
        if (!Directory.Exists(dir))
        {
            return [];
        }

        var devices = new List<UsbSysfsDevice>();
        foreach (var path in Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(path);
            // Devices are B-P[.P...]; interfaces carry a colon, root hubs are usbN.
            if (name.Contains(':', StringComparison.Ordinal) || !TryParseName(name, out var bus, out var ports))
            {
                continue;
            }

            var vendor = ReadHex(Path.Combine(path, "idVendor"));
            var product = ReadHex(Path.Combine(path, "idProduct"));
            if (vendor is null || product is null)
            {
                continue;
            }

            var address = ReadDecimal(Path.Combine(path, "devnum")) ?? 0;
            var busnum = ReadDecimal(Path.Combine(path, "busnum")) ?? bus;
            var interfaces = new List<UsbSysfsInterface>();
            foreach (var child in Directory.EnumerateDirectories(path, name + ":*").Order(StringComparer.Ordinal))
            {
                var childName = Path.GetFileName(child);
                var number = ReadHex(Path.Combine(child, "bInterfaceNumber")) ?? ParseInterfaceNumber(childName);
                var ttys = Directory.EnumerateFileSystemEntries(child, "tty*").Select(Path.GetFileName).OfType<string>()
                    .Where(t => t != "tty").Order(StringComparer.Ordinal).ToList();
                interfaces.Add(new UsbSysfsInterface(childName, number ?? -1, DriverName(child), ttys));
            }

            devices.Add(new UsbSysfsDevice(
                new UsbLocation(busnum, ports, address),
                new UsbDeviceId(vendor.Value, product.Value),
                ReadHex(Path.Combine(path, "bcdDevice")) ?? 0,
                ReadLine(Path.Combine(path, "product")),
                ReadLine(Path.Combine(path, "serial")),
                interfaces));
        }

        return devices;
    }

    /// <summary>The kernel driver bound to interface <paramref name="interfaceNumber"/> of the device at <paramref name="location"/>, or null.</summary>
    public static string? InterfaceDriver(string sysfsRoot, UsbLocation location, int interfaceNumber)
    {
        var dir = Path.Combine(sysfsRoot, "bus", "usb", "devices");
        if (!Directory.Exists(dir))
        {
            return null;
        }

        // The configuration value sits between ':' and '.'; any configuration is the active one here.
        foreach (var path in Directory.EnumerateFileSystemEntries(dir, location.SysfsName + ":*"))
        {
            if (ParseInterfaceNumber(Path.GetFileName(path)) == interfaceNumber)
            {
                return DriverName(path);
            }
        }

        return null;
    }

    private static string? DriverName(string path)
    {
        try
        {
            var target = new FileInfo(Path.Combine(path, "driver")).LinkTarget;
            return target is null ? null : Path.GetFileName(target.TrimEnd('/'));
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary><c>1-1.2</c> is bus 1, ports [1, 2].</summary>
    private static bool TryParseName(string name, out int bus, out int[] ports)
    {
        bus = 0;
        ports = [];
        var dash = name.IndexOf('-', StringComparison.Ordinal);
        if (dash <= 0 || !int.TryParse(name.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out bus))
        {
            return false;
        }

        var parts = name[(dash + 1)..].Split('.');
        ports = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ports[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary><c>1-1:1.2</c> is interface 2.</summary>
    private static int? ParseInterfaceNumber(string name)
    {
        var dot = name.LastIndexOf('.');
        return dot > name.IndexOf(':', StringComparison.Ordinal) && int.TryParse(name.AsSpan(dot + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            ? n
            : null;
    }

    private static string? ReadLine(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllText(path).Trim() : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static ushort? ReadHex(string path) =>
        ReadLine(path) is { } text && ushort.TryParse(text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var v) ? v : null;

    private static int? ReadDecimal(string path) =>
        ReadLine(path) is { } text && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : null;
}
