using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using FpgaAccel.Driver;

namespace FpgaAccel.Cli;

/// <summary><c>fpgaaccel info</c>: open the device, check it, reset it, report it.</summary>
internal static class InfoCommand
{
    public static Command Create(CommonOptions common, CliIo io)
    {
        var command = new Command("info", "Open the FA-1 (board or model), check ID and version, reset it, and print its identity and capabilities.");
        common.AddTo(command);
        command.SetAction(result => CliRunner.Run(result, common, io, (device, json, output) =>
        {
            if (json)
            {
                WriteJson(device.Info, output);
            }
            else
            {
                WriteText(device.Info, output);
            }

            return 0;
        }));
        return command;
    }

    internal static void WriteJson(DeviceInfo info, TextWriter output)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            var caps = info.Capabilities;
            w.WriteStartObject();
            w.WriteString("backend", info.Backend.ToString().ToLowerInvariant());
            w.WriteString("backend_description", info.BackendDescription);
            w.WriteString("id", Hex(info.Id));
            w.WriteString("version", info.Version.ToString());
            w.WriteBoolean("model", caps.IsModel);
            w.WriteNumber("contexts", caps.Contexts);
            w.WriteNumber("queues", caps.Queues);
            w.WriteNumber("tlb_ways", caps.TlbWays);
            w.WriteNumber("tlb_sets", 1L << caps.TlbSetsLog2);
            w.WriteNumber("tlb_entries", caps.TlbEntries);
            w.WriteBoolean("huge_2m", caps.Huge2M);
            w.WriteBoolean("dropin", caps.Dropin);
            w.WriteNumber("va_bits", caps.VaBits);
            w.WriteNumber("iova_bits", caps.IovaBits);
            w.WriteString("caps", Hex(caps.Raw));
            w.WriteNumber("clock_hz", info.ClockHz);
            w.WriteNumber("interrupt_vectors", info.InterruptVectors);
            w.WriteEndObject();
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }

    private static void WriteText(DeviceInfo info, TextWriter output)
    {
        var caps = info.Capabilities;
        var rows = new (string, string)[]
        {
            ("backend", $"{info.Backend.ToString().ToLowerInvariant()}: {info.BackendDescription}"),
            ("id", Hex(info.Id)),
            ("version", info.Version.ToString()),
            ("model", caps.IsModel ? "yes" : "no"),
            ("contexts", caps.Contexts.ToString(CultureInfo.InvariantCulture)),
            ("queues", caps.Queues.ToString(CultureInfo.InvariantCulture)),
            ("tlb", $"{caps.TlbEntries} entries, {caps.TlbWays} ways x {1L << caps.TlbSetsLog2} sets"),
            ("huge 2 MiB pages", caps.Huge2M ? "yes" : "no"),
            ("dropin", caps.Dropin ? "yes" : "no"),
            ("address bits", $"VA {caps.VaBits}, IOVA {caps.IovaBits}"),
            ("clock", $"{info.ClockHz / 1e6:0.###} MHz"),
            ("msi-x vectors", info.InterruptVectors.ToString(CultureInfo.InvariantCulture)),
        };
        foreach (var (name, value) in rows)
        {
            output.WriteLine($"{name,-18}{value}");
        }
    }

    private static string Hex(ulong value) => "0x" + value.ToString("X16", CultureInfo.InvariantCulture);
}
