using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.HwSim.Bmc;
using FpgaAccel.HwSim.VfioUser;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Cli;

/// <summary>
/// <c>fpgaaccel model serve</c>: the FA-1 model served as a PCI device over vfio-user, for QEMU's vfio-user-pci (a
/// guest then runs the real driver against it through its own kernel's VFIO and IOMMU), or any vfio-user client.
/// </summary>
internal static class ModelCommand
{
    // Linux's SIGUSR1; .NET takes raw signal numbers where PosixSignal names none.
    private const int SigUsr1 = 10;

    public static Command Create(CliIo io)
    {
        var system = new SystemOptions();
        var socket = new Option<string>("--socket") { Description = "Path of the UNIX socket to listen at (must not exist).", Required = true };
        var clock = new Option<string>("--clock") { Description = "The model's clock: wall (CYCLES follows real time) or virtual.", DefaultValueFactory = _ => "wall" };
        clock.AcceptOnlyFromAmong("wall", "virtual");
        var seed = new Option<int>("--seed") { Description = "Seed for the model's random choices.", DefaultValueFactory = _ => 1 };
        var once = new Option<bool>("--once") { Description = "Stop when the first client disconnects (a lab run), instead of waiting for the next." };
        var trace = new Option<string?>("--trace") { Description = "Write one line per vfio-user message to this file (what the client asked, and every refusal)." };
        var json = new Option<bool>("--json") { Description = "Print events (listening, oracle snapshots, the final report) as one JSON object per line." };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Log the server's debug messages to standard error." };
        var bmcSocket = new Option<string?>("--bmc-socket")
        {
            Description = "Also serve the board's BMC (spec 8) on a Unix socket at this path (QEMU: -chardev socket,path=PATH behind -device usb-serial); its RESET power-cycles this served model.",
        };
        var bmcResetDelay = new Option<int>("--bmc-reset-delay")
        {
            Description = "Milliseconds the FA-1 stays off the bus after the BMC's RESET (spec 8: about a second).",
            DefaultValueFactory = _ => (int)BoardManagement.ResetOffBus.TotalMilliseconds,
        };
        var bmcSerial = new Option<string>("--bmc-serial") { Description = "The board serial the BMC's SERIAL answers.", DefaultValueFactory = _ => new BmcModelOptions().Serial };
        var serve = new Command("serve",
            "Serve the FA-1 model as a PCI device over vfio-user at --socket (QEMU: -device '{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"PATH\",\"type\":\"unix\"}}'). " +
            "Runs until SIGINT or SIGTERM (or, with --once, until the client disconnects), then prints what it served and the model's oracle. SIGUSR1 prints an oracle snapshot.");
        serve.Options.Add(socket);
        serve.Options.Add(system.VendorId);
        serve.Options.Add(system.DeviceId);
        serve.Options.Add(clock);
        serve.Options.Add(seed);
        serve.Options.Add(once);
        serve.Options.Add(trace);
        serve.Options.Add(json);
        serve.Options.Add(verbose);
        serve.Options.Add(bmcSocket);
        serve.Options.Add(bmcResetDelay);
        serve.Options.Add(bmcSerial);
        serve.SetAction(result =>
        {
            try
            {
                var options = new VfioUserServerOptions
                {
                    VendorId = SystemOptions.ParseId(result.GetValue(system.VendorId)!, "--vendor-id"),
                    DeviceId = SystemOptions.ParseId(result.GetValue(system.DeviceId)!, "--device-id"),
                };
                var modelOptions = new ModelOptions { Clock = result.GetValue(clock) == "virtual" ? ClockMode.Virtual : ClockMode.Wall, Seed = result.GetValue(seed) };
                BmcEndpoint? bmc = null;
                if (result.GetValue(bmcSocket) is { } bmcPath)
                {
                    // Fpga is filled in by Serve, with the model it builds (RESET acts on the served device).
                    var delay = result.GetValue(bmcResetDelay);
                    if (delay is < 0 or > 600_000)
                    {
                        throw new UsageException($"--bmc-reset-delay {delay} is out of range: the FA-1 stays off the bus 0 to 600000 ms after RESET (spec 8: about 1000).");
                    }

                    var bmcOptions = new BmcModelOptions { Serial = result.GetValue(bmcSerial)!, ResetOffBus = TimeSpan.FromMilliseconds(delay) };
                    bmcOptions.Validate();
                    bmc = new BmcEndpoint(bmcPath, bmcOptions);
                }

                return Serve(io, result.GetValue(socket)!, modelOptions, options, bmc, result.GetValue(once), result.GetValue(trace), result.GetValue(json), result.GetValue(verbose));
            }
            catch (Exception ex) when (ex is UsageException or ArgumentException)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Usage;
            }
        });
        var command = new Command("model", "The software model on its own, outside the driver.");
        command.Subcommands.Add(serve);
        return command;
    }

    private static int Serve(CliIo io, string socketPath, ModelOptions modelOptions, VfioUserServerOptions options, BmcEndpoint? bmcEndpoint, bool once, string? tracePath, bool json, bool verbose)
    {
        using var loggerFactory = LoggerFactory.Create(builder => builder
            .SetMinimumLevel(verbose ? LogLevel.Debug : LogLevel.Information)
            .AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            })
            .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));
        StreamWriter? trace = null;
        try
        {
            trace = tracePath is null ? null : new StreamWriter(tracePath, append: false);
            using var model = new Fa1Model(modelOptions);
            using var server = new VfioUserServer(model, options with { MessageTrace = trace }, loggerFactory);
            // Issue 14: the board's BMC beside the device, its RESET wired to this very model (spec 8: the FA-1 drops off
            // the bus and comes back cold-reset; the server's config space follows, decision V11). Disposed before the
            // server and the model (using order), and disposing the BMC model brings a device still off the bus back.
            using var bmc = bmcEndpoint is null ? null : new BmcModel(bmcEndpoint.Options with { Fpga = FpgaPower.Of(model) });
            using var bmcServer = bmc is null ? null : BmcSocketServer.Start(bmc, bmcEndpoint!.Path, loggerFactory);
            using var stop = new ManualResetEventSlim();
            var output = TextWriter.Synchronized(io.Output);
            void OnStop(PosixSignalContext context)
            {
                context.Cancel = true;
                stop.Set();
            }

            using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnStop);
            using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnStop);
            using var snapshot = PosixSignalRegistration.Create((PosixSignal)SigUsr1, context =>
            {
                context.Cancel = true;
                WriteOracle(output, json, "oracle", model.Oracle);
            });
            server.Listen(socketPath, once);
            if (json)
            {
                output.WriteLine(JsonLine(w =>
                {
                    w.WriteString("event", "listening");
                    w.WriteString("socket", socketPath);
                    if (bmcServer is not null)
                    {
                        w.WriteString("bmc_socket", bmcServer.Path);
                    }
                }));
            }
            else
            {
                output.WriteLine($"serving the FA-1 model (PCI {options.VendorId:x4}:{options.DeviceId:x4}) over vfio-user at {socketPath}");
                if (bmcServer is not null)
                {
                    output.WriteLine($"serving its BMC (serial {bmc!.Serial}, RESET drops the FA-1 for {bmcEndpoint!.Options.ResetOffBus.TotalMilliseconds:0} ms) at {bmcServer.Path}");
                }
            }

            output.Flush();
            while (!stop.Wait(200))
            {
                if (once && server.WaitForIdle(TimeSpan.Zero))
                {
                    break;
                }
            }

            bmcServer?.Dispose();
            server.Dispose();
            WriteReport(output, json, server.Statistics, model.Oracle, bmc);
            return ExitCodes.Ok;
        }
        catch (ArgumentException ex)
        {
            io.Error.WriteLine($"fpgaaccel: {ex.Message}");
            return ExitCodes.Usage;
        }
        catch (IOException ex)
        {
            io.Error.WriteLine($"fpgaaccel: {ex.Message}");
            return ExitCodes.Failed;
        }
        finally
        {
            trace?.Dispose();
        }
    }

    private static void WriteOracle(TextWriter output, bool json, string name, ModelOracle oracle)
    {
        if (json)
        {
            output.WriteLine(JsonLine(w =>
            {
                w.WriteString("event", name);
                WriteOracleFields(w, oracle);
            }));
        }
        else
        {
            output.WriteLine($"{name}: {oracle.DataAccesses} data accesses, {oracle.StaleAccesses} stale accesses, {oracle.FaultsRaised} faults raised, {oracle.LostFaults} lost, {oracle.IgnoredFaultResponses} ignored responses");
        }

        output.Flush();
    }

    private static void WriteOracleFields(Utf8JsonWriter w, ModelOracle oracle)
    {
        w.WriteNumber("data_accesses", oracle.DataAccesses);
        w.WriteNumber("stale_accesses", oracle.StaleAccesses);
        w.WriteNumber("faults_raised", oracle.FaultsRaised);
        w.WriteNumber("lost_faults", oracle.LostFaults);
        w.WriteNumber("ignored_fault_responses", oracle.IgnoredFaultResponses);
    }

    // One JSON object on one line (Utf8JsonWriter: no reflection, so the trimmed single-file build keeps working).
    private static string JsonLine(Action<Utf8JsonWriter> body)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteReport(TextWriter output, bool json, VfioUserStatistics s, ModelOracle oracle, BmcModel? bmc)
    {
        if (json)
        {
            output.WriteLine(JsonLine(w =>
            {
                w.WriteString("event", "report");
                w.WriteNumber("sessions", s.Sessions);
                w.WriteNumber("messages", s.Messages);
                w.WriteStartObject("commands");
                foreach (var (command, count) in s.Commands)
                {
                    w.WriteNumber(command.ToString(), count);
                }

                w.WriteEndObject();
                w.WriteNumber("refused", s.Refused);
                w.WriteNumber("refused_posted", s.RefusedPosted);
                w.WriteNumber("stray_replies", s.StrayReplies);
                w.WriteNumber("dma_maps", s.DmaMaps);
                w.WriteNumber("dma_mapped_bytes", s.DmaMappedBytes);
                w.WriteNumber("dma_unmaps", s.DmaUnmaps);
                w.WriteNumber("dma_unmapped_bytes", s.DmaUnmappedBytes);
                w.WriteNumber("client_requests", s.ClientRequests);
                w.WriteNumber("function_resets", s.FunctionResets);
                w.WriteNumber("device_accesses_refused", s.DeviceAccessesRefused);
                w.WriteNumber("mappings_held", s.MappingsHeld);
                w.WriteNumber("vectors_wired", s.VectorsWired);
                w.WriteNumber("power_cycles", s.PowerCycles);
                if (bmc is not null)
                {
                    w.WriteNumber("bmc_requests", bmc.Requests);
                    w.WriteNumber("bmc_resets", bmc.Resets);
                }

                WriteOracleFields(w, oracle);
            }));
            output.Flush();
            return;
        }

        output.WriteLine($"sessions          {s.Sessions}");
        output.WriteLine($"messages          {s.Messages} ({string.Join(", ", s.Commands.Select(c => $"{c.Key} {c.Value}"))})");
        output.WriteLine($"refused           {s.Refused} ({s.RefusedPosted} posted), {s.StrayReplies} stray replies");
        output.WriteLine($"DMA maps          {s.DmaMaps} ({s.DmaMappedBytes} bytes), unmaps {s.DmaUnmaps} ({s.DmaUnmappedBytes} bytes), {s.MappingsHeld} held");
        output.WriteLine($"function resets   {s.FunctionResets}; power cycles {s.PowerCycles}");
        if (bmc is not null)
        {
            output.WriteLine($"BMC               {bmc.Requests} requests, {bmc.Resets} resets");
        }

        output.WriteLine($"IOMMU refusals    {s.DeviceAccessesRefused} device accesses to IOVAs the client had not mapped");
        WriteOracle(output, json: false, "oracle", oracle);
    }

    /// <summary>Where <c>--bmc-socket</c> serves the BMC, and its settings (without the FPGA, which Serve wires).</summary>
    private sealed record BmcEndpoint(string Path, BmcModelOptions Options);
}
