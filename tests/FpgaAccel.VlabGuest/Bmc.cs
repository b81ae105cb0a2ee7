using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FpgaAccel.Interop.Usb;
using FpgaAccel.Management;
using FpgaAccel.Management.Ftdi;

namespace FpgaAccel.VlabGuest;

/// <summary>
/// The board-management port through a real kernel's USB stack: QEMU's usb-serial (an FT232, 0403:6001, on an xHCI
/// controller) whose UART is a socket served by the BMC model on the host. Runs the real <c>fpgaaccel bmc</c> through
/// libusb (Debian's libusb-1.0-0, copied into the initramfs), detaching ftdi_sio from the bridge and giving it back,
/// then measures round trips through the library, and checks <c>fpgaaccel doctor</c>'s management-port report.
/// </summary>
internal static class Bmc
{
    /// <summary>QEMU's usb-serial: FTDI's FT232 IDs, one channel (interface A).</summary>
    public static readonly UsbDeviceId QemuUsbSerial = new(FtdiProtocol.VendorId, FtdiProtocol.Ft232ProductId);

    private const string FoundCheck = "bmc.usb-device";
    private static readonly TimeSpan s_enumeration = TimeSpan.FromSeconds(15);

    public static void Check(CheckRunner runner, string serial)
    {
        UsbSysfsDevice? bridge = null;
        runner.Run(FoundCheck, () => bridge = WaitForBridge(runner));
        string[] usb = ["--usb-id", QemuUsbSerial.ToString()];

        runner.Run("bmc.version", () =>
        {
            var json = Ask(runner, ["bmc", "version", .. usb, "--json"]);
            Expect.Equal("OK FA1-BMC 1.2.0", Text(json, "reply"), "the reply to VERSION");
            Expect.Equal("1.2.0", Text(json, "version"), "the version");
            Expect.True(Text(json, "port").StartsWith($"usb {bridge!.Location.SysfsName} (0403:6001, interface A)", StringComparison.Ordinal),
                $"the port '{Text(json, "port")}' is not the bridge's interface A");
        }, FoundCheck);
        runner.Run("bmc.serial", () => Expect.Equal(serial, Text(Ask(runner, ["bmc", "serial", .. usb, "--json"]), "serial"), "the serial the host's BMC model was started with"), FoundCheck);
        runner.Run("bmc.temp", () =>
        {
            var celsius = Ask(runner, ["bmc", "temp", .. usb, "--json"]).RootElement.GetProperty("celsius").GetDouble();
            Expect.True(celsius is > 40 and < 50, $"{celsius} C is not the model's 45 C give or take its drift");
        }, FoundCheck);
        runner.Run("bmc.log", () =>
        {
            var json = Ask(runner, ["bmc", "log", "5", .. usb, "--json"]);
            Expect.Equal("LOG 5", Text(json, "request"), "the request");
            var lines = json.RootElement.GetProperty("lines").EnumerateArray().Select(l => l.GetString() ?? "").ToList();
            Expect.Equal(5, lines.Count, "log lines");
            Expect.True(lines[^1].EndsWith("pcie: link up, FA-1 on the bus", StringComparison.Ordinal), $"the last log line is '{lines[^1]}'");
        }, FoundCheck);
        runner.Run("bmc.reset", () =>
        {
            var json = Ask(runner, ["bmc", "reset", .. usb, "--json"]);
            Expect.Equal("OK", Text(json, "reply"), "the reply to RESET");
            // The FPGA may be back already (fpgaaccel takes about a second to start here): the reset's lines are
            // RESET, off the bus, and perhaps back on the bus.
            var log = Ask(runner, ["bmc", "log", "4", .. usb, "--json"]).RootElement.GetProperty("lines").EnumerateArray().Select(l => l.GetString() ?? "").ToList();
            var reset = log.FindIndex(l => l.EndsWith("host: RESET", StringComparison.Ordinal));
            Expect.True(reset >= 0 && reset + 1 < log.Count && log[reset + 1].EndsWith("fpga: cold reset, PCIe device off the bus", StringComparison.Ordinal),
                "the BMC's log does not show the RESET and the FPGA leaving the bus: " + string.Join(" | ", log));
        }, FoundCheck);
        runner.Run("bmc.driver-given-back", () => ExpectDriverBack(bridge!), FoundCheck);
        runner.Run("bmc.round-trip", () => RoundTrips(runner, bridge!), FoundCheck);
        runner.Run("bmc.doctor", () => Doctor(runner, bridge!), FoundCheck);
    }

    /// <summary>xHCI enumerates the bridge within about half a second of loading; wait (bounded) and report what sysfs shows.</summary>
    internal static UsbSysfsDevice WaitForBridge(CheckRunner runner)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var bridge = UsbSysfs.Devices().FirstOrDefault(d => d.Id == QemuUsbSerial);
            var iface = bridge?.Interfaces.FirstOrDefault(i => i.Number == 0);
            // ftdi_sio binds right after enumeration; give it the same bound.
            if (bridge is not null && iface?.Driver is not null && iface.TtyNames.Count > 0)
            {
                runner.Note($"{QemuUsbSerial} at USB path {bridge.Location.SysfsName} ({bridge.Location.DeviceNode}) after {clock.Elapsed.TotalSeconds:0.0} s; " +
                            $"interface A held by {iface.Driver} as /dev/{iface.TtyNames[0]}");
                Expect.True(File.Exists(bridge.Location.DeviceNode), $"{bridge.Location.DeviceNode} is missing (devtmpfs makes usbfs nodes)");
                return bridge;
            }

            Expect.True(clock.Elapsed < s_enumeration,
                bridge is null
                    ? $"no {QemuUsbSerial} in /sys/bus/usb/devices after {s_enumeration.TotalSeconds} s (QEMU needs -device qemu-xhci and -device usb-serial; /init loads xhci-pci)"
                    : $"{QemuUsbSerial} is there but ftdi_sio did not bind to interface A within {s_enumeration.TotalSeconds} s");
            Thread.Sleep(50);
        }
    }

    /// <summary>Nothing left claimed: ftdi_sio holds interface A again and its tty is back.</summary>
    private static void ExpectDriverBack(UsbSysfsDevice bridge)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var iface = UsbSysfs.Devices().FirstOrDefault(d => d.Location.SysfsName == bridge.Location.SysfsName)?.Interfaces.FirstOrDefault(i => i.Number == 0);
            if (iface?.Driver == "ftdi_sio" && iface.TtyNames.Count > 0 && File.Exists($"/dev/{iface.TtyNames[0]}"))
            {
                return;
            }

            Expect.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"interface A is held by '{iface?.Driver ?? "nothing"}', not ftdi_sio, after the bmc commands: the link did not give the driver back");
            Thread.Sleep(20);
        }
    }

    /// <summary>VERSION many times through the library (one process, one claim): what a request costs through libusb and the kernel.</summary>
    private static void RoundTrips(CheckRunner runner, UsbSysfsDevice bridge)
    {
        const int count = 50;
        var times = new List<double>(count);
        using (var client = new BmcClient(FtdiSerialLink.Open(new FtdiOptions { Id = QemuUsbSerial }), new BmcClientOptions { RequestTimeout = TimeSpan.FromSeconds(5) }))
        {
            for (var i = 0; i < count; i++)
            {
                Expect.Equal("1.2.0", client.GetVersion().ToString(), $"VERSION {i}");
                times.Add(client.LastExchange!.RoundTrip.TotalMilliseconds);
            }

            runner.Note($"bytes dropped with no request outstanding: {client.DiscardedBytes}");
        }

        times.Sort();
        runner.Note(string.Create(CultureInfo.InvariantCulture,
            $"VERSION round trip over {count} requests: min {times[0]:0.000} ms, median {times[count / 2]:0.000} ms, p90 {times[count * 9 / 10]:0.000} ms, max {times[^1]:0.000} ms"));
        ExpectDriverBack(bridge);
    }

    private static void Doctor(CheckRunner runner, UsbSysfsDevice bridge)
    {
        var (_, output) = FpgaAccelTool.Run(runner, ["doctor", "--usb-id", QemuUsbSerial.ToString(), "--json"], show: false);
        using var json = Parse(output, "doctor");
        foreach (var check in json.RootElement.GetProperty("checks").EnumerateArray().Where(c => (c.GetProperty("name").GetString() ?? "").StartsWith("bmc-", StringComparison.Ordinal)))
        {
            runner.Note($"{check.GetProperty("name").GetString()}: {check.GetProperty("status").GetString()}: {check.GetProperty("detail").GetString()}");
            Expect.Equal("pass", check.GetProperty("status").GetString() ?? "", $"the doctor's {check.GetProperty("name").GetString()} check");
        }

        var port = json.RootElement.GetProperty("management_ports")[0];
        Expect.Equal(bridge.Location.SysfsName, port.GetProperty("usb_path").GetString() ?? "", "the bridge the doctor found");
        Expect.Equal("1.2.0", port.GetProperty("firmware").GetString() ?? "", "the firmware the doctor read");
        Expect.Equal("ftdi_sio", port.GetProperty("kernel_driver").GetString() ?? "", "the driver the doctor saw on interface A");
    }

    private static JsonDocument Ask(CheckRunner runner, string[] arguments)
    {
        var (code, output) = FpgaAccelTool.Run(runner, arguments, show: false);
        Expect.Equal(0, code, $"exit code of 'fpgaaccel {string.Join(' ', arguments)}'");
        var json = Parse(output, string.Join(' ', arguments));
        runner.Note(string.Create(CultureInfo.InvariantCulture,
            $"$ fpgaaccel {string.Join(' ', arguments)}: {Text(json, "request")} -> {Text(json, "reply")} ({json.RootElement.GetProperty("round_trip_ms").GetDouble():0.000} ms)"));
        return json;
    }

    private static JsonDocument Parse(string output, string what)
    {
        try
        {
            return JsonDocument.Parse(output);
        }
        catch (JsonException ex)
        {
            throw new CheckFailedException($"'fpgaaccel {what}' printed no JSON: {ex.Message}: {output.Trim()}");
        }
    }

    private static string Text(JsonDocument json, string name) => json.RootElement.GetProperty(name).GetString() ?? "";
}
