using System.Globalization;
using FpgaAccel.Interop.Usb;
using FpgaAccel.Management;
using FpgaAccel.Management.Ftdi;

namespace FpgaAccel.Host;

/// <summary>What the BMC said to the doctor's VERSION.</summary>
/// <param name="Version">The firmware version.</param>
/// <param name="RoundTrip">Request to reply.</param>
public sealed record BmcVersionAnswer(BmcFirmwareVersion Version, TimeSpan RoundTrip);

/// <summary>A management port the doctor found.</summary>
/// <param name="UsbPath">The bridge's sysfs name (<c>1-4.2</c>).</param>
/// <param name="Id">Its USB IDs.</param>
/// <param name="DeviceNode">Its usbfs node, which libusb opens.</param>
/// <param name="Interface">The interface that carries the BMC (0 is A, 1 is B), when known.</param>
/// <param name="KernelDriver">The kernel driver bound to that interface, if any (ftdi_sio).</param>
/// <param name="Tty">The terminal that driver made for it (<c>ttyUSB1</c>), if any.</param>
/// <param name="Firmware">The BMC's firmware version, when it answered.</param>
public sealed record ManagementPortInfo(string UsbPath, UsbDeviceId Id, string DeviceNode, int? Interface, string? KernelDriver, string? Tty, string? Firmware);

/// <summary>
/// The doctor's management-port checks: <c>bmc-port</c> (the bridge is on a USB bus, and has the BMC's interface),
/// <c>bmc-access</c> (this user may open its usbfs node), <c>bmc-driver</c> (which kernel driver holds the interface;
/// information), <c>bmc-firmware</c> (the BMC answers VERSION). Read-only, except that asking VERSION briefly detaches
/// and gives back the kernel driver, as <c>fpgaaccel bmc</c> does.
/// </summary>
internal static class ManagementPortChecks
{
    private static readonly string[] s_names = ["bmc-port", "bmc-access", "bmc-driver", "bmc-firmware"];

    public static IReadOnlyList<ManagementPortInfo> Run(DoctorOptions options, FtdiOptions port, List<DoctorCheck> checks)
    {
        var wanted = port.UsbPath is null ? port.Id.ToString() : $"{port.Id} at USB path {port.UsbPath}";
        var found = UsbSysfs.Devices(options.SysfsRoot).Where(d => d.Id == port.Id && (port.UsbPath is null || d.Location.SysfsName == port.UsbPath)).ToList();
        if (found.Count == 0)
        {
            var dir = Path.Combine(options.SysfsRoot, "bus", "usb", "devices");
            checks.Add(new DoctorCheck("bmc-port", CheckStatus.Skipped,
                $"no USB bridge {wanted} in {dir}: no management port (optional: the driver does not need it; 'fpgaaccel bmc' does, through the board's USB cable)", null));
            SkipRest(checks, 1, "no management port found");
            return [];
        }

        if (found.Count > 1)
        {
            checks.Add(Doctor.Fail("bmc-port", $"{found.Count} USB bridges match {wanted}: {string.Join(", ", found.Select(d => d.Location.SysfsName))}",
                "Name the board's bridge with --usb-path (its sysfs name, as /sys/bus/usb/devices or 'lsusb -t' shows it)."));
            SkipRest(checks, 1, "several bridges; none chosen");
            return [];
        }

        var device = found[0];
        var node = Path.Combine(options.DevRoot, "bus", "usb",
            device.Location.Bus.ToString("D3", CultureInfo.InvariantCulture), device.Location.Address.ToString("D3", CultureInfo.InvariantCulture));
        var number = port.Interface ?? FtdiProtocol.DefaultInterface(device.Id.ProductId);
        var iface = number is { } n ? device.Interfaces.FirstOrDefault(i => i.Number == n) : null;
        if (iface is null)
        {
            checks.Add(Doctor.Fail("bmc-port",
                number is null
                    ? $"found {device.Id} at {device.Location.SysfsName}, a bridge whose BMC interface is not known"
                    : $"found {device.Id} at {device.Location.SysfsName}, but it has no interface {FtdiProtocol.InterfaceLetter(number.Value)} " +
                      $"(it has {string.Join(", ", device.Interfaces.Select(i => FtdiProtocol.InterfaceLetter(i.Number)))})",
                "Give the interface wired to the BMC with --usb-interface (spec 8's board: B on its FT2232)."));
            SkipRest(checks, 1, "the BMC's interface is not known");
            return [new ManagementPortInfo(device.Location.SysfsName, device.Id, node, number, null, null, null)];
        }

        var letter = FtdiProtocol.InterfaceLetter(iface.Number);
        checks.Add(Doctor.Pass("bmc-port", $"found {device.Id} ({device.Product ?? "no product string"}) at USB path {device.Location.SysfsName}, {node}; the BMC is on interface {letter}"));

        var accessible = File.Exists(node) && options.CanAccess(node);
        checks.Add(accessible
            ? Doctor.Pass("bmc-access", $"{node} is readable and writable by {Doctor.CurrentUser}")
            : Doctor.Fail("bmc-access", File.Exists(node) ? $"{node} is not readable and writable by {Doctor.CurrentUser}" : $"{node} does not exist",
                $"As root, add a udev rule such as /etc/udev/rules.d/70-fpgaaccel-bmc.rules holding '{device.Id.UdevRule()}', run " +
                "'udevadm control --reload-rules && udevadm trigger', and add the user to group plugdev (log in again); or run as root."));

        var tty = iface.TtyNames.FirstOrDefault();
        checks.Add(Doctor.Pass("bmc-driver", iface.Driver is null
            ? $"no kernel driver holds interface {letter}"
            : $"interface {letter} is held by the kernel driver {iface.Driver}{(tty is null ? "" : $" (/dev/{tty})")}: 'fpgaaccel bmc' detaches it while it runs and gives it back"));

        string? firmware = null;
        if (!accessible)
        {
            checks.Add(new DoctorCheck("bmc-firmware", CheckStatus.Skipped, $"{node} cannot be opened by this user", null));
        }
        else
        {
            try
            {
                var answer = options.QueryBmcVersion(port with { UsbPath = device.Location.SysfsName, Interface = iface.Number, SysfsRoot = options.SysfsRoot });
                firmware = answer.Version.ToString();
                checks.Add(Doctor.Pass("bmc-firmware", string.Create(CultureInfo.InvariantCulture,
                    $"the BMC answers: FA1-BMC {firmware} (VERSION in {answer.RoundTrip.TotalMilliseconds:0.000} ms)")));
            }
            catch (IOException ex)
            {
                checks.Add(Doctor.Fail("bmc-firmware", $"the BMC did not answer VERSION: {ex.Message}",
                    "Check that the board is powered and that the bridge's interface is the BMC's ('fpgaaccel bmc version -v' shows the exchange)."));
            }
        }

        return [new ManagementPortInfo(device.Location.SysfsName, device.Id, node, iface.Number, iface.Driver, tty, firmware)];
    }

    /// <summary>VERSION through libusb with a 1-second timeout.</summary>
    public static BmcVersionAnswer QueryVersion(FtdiOptions port)
    {
        using var client = new BmcClient(FtdiSerialLink.Open(port), new BmcClientOptions { RequestTimeout = TimeSpan.FromSeconds(1) });
        var version = client.GetVersion();
        return new BmcVersionAnswer(version, client.LastExchange!.RoundTrip);
    }

    private static void SkipRest(List<DoctorCheck> checks, int from, string why)
    {
        foreach (var name in s_names.Skip(from))
        {
            checks.Add(new DoctorCheck(name, CheckStatus.Skipped, why, null));
        }
    }
}
