using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop.Usb;
using FpgaAccel.Management;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Cli;

/// <summary>
/// <c>fpgaaccel bmc version|serial|temp|reset|log [N]</c>: one request to the board-management controller (spec 8)
/// through the board's USB bridge (or a socket or terminal), and <c>fpgaaccel bmc model</c> to serve the BMC model.
/// </summary>
internal static class BmcCommand
{
    public static Command Create(CliIo io)
    {
        var command = new Command("bmc", "Talk to the board-management controller over the board's USB bridge (spec 8): firmware version, serial, temperature, cold reset, firmware log.");
        command.Subcommands.Add(Request(io, "version", "Print the BMC firmware's version (VERSION).", client => Version(client)));
        command.Subcommands.Add(Request(io, "serial", "Print the board's serial number (SERIAL).", client => Serial(client)));
        command.Subcommands.Add(Request(io, "temp", "Print the board's temperature (TEMP).", client => Temperature(client)));
        command.Subcommands.Add(Request(io, "reset", "Cold-reset the FPGA (RESET): its PCIe device drops off the bus for about a second.", client => Reset(client)));
        var lines = new Argument<int>("N") { Description = $"Lines of the firmware log, 0 to {BoardManagement.MaxLogLines} (default 10).", DefaultValueFactory = _ => 10 };
        command.Subcommands.Add(Request(io, "log", "Print the last N lines of the BMC's firmware log (LOG N), oldest first.", lines));
        command.Subcommands.Add(BmcModelCommand.Create(io));
        return command;
    }

    /// <summary>A reply, as printed: text lines, and the JSON fields beside request, reply, port and round trip.</summary>
    private sealed record Printed(IReadOnlyList<string> Text, Action<Utf8JsonWriter> Json);

    private static Command Request(CliIo io, string name, string description, Func<BmcClient, Printed> ask) =>
        Request(io, name, description, lines: null, (client, _) => ask(client));

    private static Command Request(CliIo io, string name, string description, Argument<int> lines) =>
        Request(io, name, description, lines, (client, n) =>
        {
            var log = client.GetLog(n);
            return new Printed(log, w =>
            {
                w.WriteNumber("count", log.Count);
                w.WriteStartArray("lines");
                foreach (var line in log)
                {
                    w.WriteStringValue(line);
                }

                w.WriteEndArray();
            });
        });

    private static Command Request(CliIo io, string name, string description, Argument<int>? lines, Func<BmcClient, int, Printed> ask)
    {
        var port = new ManagementOptions();
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of text." };
        var timeout = new Option<int>("--timeout") { Description = "Milliseconds to wait for the reply (LOG adds the lines' time on the wire).", DefaultValueFactory = _ => 1000 };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Log each exchange and what the link does to standard error." };
        var command = new Command(name, description);
        if (lines is not null)
        {
            command.Arguments.Add(lines);
        }

        port.AddTo(command);
        command.Options.Add(timeout);
        command.Options.Add(json);
        command.Options.Add(verbose);
        command.SetAction(result =>
        {
            ManagementPortOptions options;
            var n = lines is null ? 0 : result.GetValue(lines);
            var ms = result.GetValue(timeout);
            try
            {
                options = port.ToPortOptions(result);
                if (n is < 0 or > BoardManagement.MaxLogLines)
                {
                    throw new UsageException($"N is {n}: LOG takes 0 to {BoardManagement.MaxLogLines} lines.");
                }

                if (ms is < 1 or > 600_000)
                {
                    throw new UsageException($"--timeout {ms} is out of range: give 1 to 600000 milliseconds.");
                }
            }
            catch (UsageException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Usage;
            }

            using var loggerFactory = CreateLoggerFactory(result.GetValue(verbose));
            try
            {
                using var client = BmcClient.Open(options, new BmcClientOptions { RequestTimeout = TimeSpan.FromMilliseconds(ms) }, loggerFactory);
                var printed = ask(client, n);
                Print(io.Output, client, printed, result.GetValue(json));
                return ExitCodes.Ok;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // BmcException, SerialLinkException, UsbException, UsbLibraryNotFoundException: the message says what and how to fix.
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Failed;
            }
            catch (ArgumentOutOfRangeException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Usage;
            }
        });
        return command;
    }

    private static Printed Version(BmcClient client)
    {
        var version = client.GetVersion();
        return new Printed([$"{BoardManagement.VersionProduct} {version}"], w =>
        {
            w.WriteString("product", BoardManagement.VersionProduct);
            w.WriteString("version", version.ToString());
            w.WriteNumber("major", version.Major);
            w.WriteNumber("minor", version.Minor);
            w.WriteNumber("patch", version.Patch);
        });
    }

    private static Printed Serial(BmcClient client)
    {
        var serial = client.GetSerial();
        return new Printed([serial], w => w.WriteString("serial", serial));
    }

    private static Printed Temperature(BmcClient client)
    {
        var t = client.GetTemperature();
        return new Printed([t.ToString()], w =>
        {
            w.WriteNumber("millidegrees", t.Millidegrees);
            w.WriteNumber("celsius", t.Celsius);
        });
    }

    private static Printed Reset(BmcClient client)
    {
        client.Reset();
        var seconds = BoardManagement.ResetOffBus.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture);
        return new Printed([$"The BMC is cold-resetting the FPGA: its PCIe device is off the bus for about {seconds} s."], w => w.WriteBoolean("reset", true));
    }

    private static void Print(TextWriter output, BmcClient client, Printed printed, bool json)
    {
        var exchange = client.LastExchange!;
        if (!json)
        {
            foreach (var line in printed.Text)
            {
                output.WriteLine(line);
            }

            return;
        }

        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("request", exchange.Request);
            w.WriteString("reply", exchange.Reply);
            w.WriteString("port", client.Port);
            w.WriteNumber("round_trip_ms", Math.Round(exchange.RoundTrip.TotalMilliseconds, 3));
            printed.Json(w);
            w.WriteEndObject();
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }

    internal static ILoggerFactory CreateLoggerFactory(bool verbose) => LoggerFactory.Create(builder => builder
        .SetMinimumLevel(verbose ? LogLevel.Debug : LogLevel.Warning)
        .AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        })
        .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));
}
