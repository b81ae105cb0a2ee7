using System.CommandLine;
using System.Text.Json;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Board;
using FpgaAccel.Host;

namespace FpgaAccel.Cli;

/// <summary><c>fpgaaccel doctor</c>: check what running the FA-1 through VFIO needs on this host, with a fix for each miss.</summary>
internal static class DoctorCommand
{
    public static Command Create(CliIo io)
    {
        var system = new SystemOptions();
        var management = new ManagementOptions();
        var device = new Option<string?>("--device") { Description = "Check only this PCI address (default: every board with the IDs)." }.PciAddress();
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of text." };
        var command = new Command("doctor", "Check the IOMMU, vfio-pci, the board's driver, IOMMU group and node access, RLIMIT_MEMLOCK, huge pages and the board's management port (USB bridge, access, kernel driver, BMC firmware); print a fix for each problem. Exits 1 when any check fails.");
        command.Options.Add(device);
        command.Options.Add(system.VendorId);
        command.Options.Add(system.DeviceId);
        command.Options.Add(system.PinBytes);
        management.AddTo(command, withPort: false);
        command.Options.Add(json);
        command.Options.Add(system.Sysfs);
        command.Options.Add(system.Dev);
        command.SetAction(result =>
        {
            DoctorOptions options;
            try
            {
                options = new DoctorOptions
                {
                    SysfsRoot = result.GetValue(system.Sysfs)!,
                    DevRoot = result.GetValue(system.Dev)!,
                    VendorId = SystemOptions.ParseId(result.GetValue(system.VendorId)!, "--vendor-id"),
                    DeviceId = SystemOptions.ParseId(result.GetValue(system.DeviceId)!, "--device-id"),
                    PinBytes = SystemOptions.ParseBytes(result.GetValue(system.PinBytes)!),
                    PciAddress = result.GetValue(device),
                    ManagementPort = management.ToFtdiOptions(result),
                };
            }
            catch (UsageException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Usage;
            }

            var report = Doctor.Run(options);
            if (result.GetValue(json))
            {
                WriteJson(report, io.Output);
            }
            else
            {
                WriteText(report, io.Output);
            }

            return report.Healthy ? ExitCodes.Ok : ExitCodes.Failed;
        });
        return command;
    }

    internal static void WriteJson(DoctorReport report, TextWriter output)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteBoolean("healthy", report.Healthy);
            w.WriteStartArray("checks");
            foreach (var check in report.Checks)
            {
                w.WriteStartObject();
                w.WriteString("name", check.Name);
                w.WriteString("status", check.Status.ToString().ToLowerInvariant());
                w.WriteString("detail", check.Detail);
                if (check.Fix is null)
                {
                    w.WriteNull("fix");
                }
                else
                {
                    w.WriteString("fix", check.Fix);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartArray("devices");
            foreach (var d in report.Devices)
            {
                w.WriteStartObject();
                w.WriteString("address", d.Address.ToString());
                w.WriteString("driver", d.Driver);
                if (d.IommuGroup is { } g)
                {
                    w.WriteNumber("iommu_group", g);
                }
                else
                {
                    w.WriteNull("iommu_group");
                }

                w.WriteStartArray("group_members");
                foreach (var m in d.Group)
                {
                    w.WriteStartObject();
                    w.WriteString("name", m.Name);
                    w.WriteString("driver", m.Driver);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartArray("management_ports");
            foreach (var port in report.ManagementPorts)
            {
                w.WriteStartObject();
                w.WriteString("usb_path", port.UsbPath);
                w.WriteString("usb_id", port.Id.ToString());
                w.WriteString("device_node", port.DeviceNode);
                WriteOrNull(w, "interface", port.Interface is { } i ? Management.Ftdi.FtdiProtocol.InterfaceLetter(i).ToString() : null);
                WriteOrNull(w, "kernel_driver", port.KernelDriver);
                WriteOrNull(w, "tty", port.Tty);
                WriteOrNull(w, "firmware", port.Firmware);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }

    private static void WriteOrNull(Utf8JsonWriter w, string name, string? value)
    {
        if (value is null)
        {
            w.WriteNull(name);
        }
        else
        {
            w.WriteString(name, value);
        }
    }

    private static void WriteText(DoctorReport report, TextWriter output)
    {
        foreach (var check in report.Checks)
        {
            var mark = check.Status switch
            {
                CheckStatus.Pass => "ok  ",
                CheckStatus.Fail => "FAIL",
                _ => "skip",
            };
            output.WriteLine($"[{mark}] {check.Name,-15}{check.Detail}");
            if (check.Fix is not null)
            {
                output.WriteLine($"       {"",-15}fix: {check.Fix}");
            }
        }

        output.WriteLine(report.Healthy ? "All checks passed." : $"{report.Checks.Count(c => c.Status == CheckStatus.Fail)} check(s) failed.");
    }
}
