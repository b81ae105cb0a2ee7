using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim.Bmc;
using FpgaAccel.Interop;

namespace FpgaAccel.Cli;

/// <summary>
/// <c>fpgaaccel bmc model --socket PATH | --pty</c>: the BMC model (hw-sim/Bmc) served where a UART peer reaches it: a Unix
/// socket (QEMU's <c>-chardev socket,path=PATH</c> behind <c>-device usb-serial</c>, or <c>fpgaaccel bmc ... --port PATH</c>)
/// or a new pseudo-terminal. Runs until SIGINT or SIGTERM. No FA-1 model sits behind it: RESET is logged only.
/// </summary>
internal static class BmcModelCommand
{
    public static Command Create(CliIo io)
    {
        var socket = new Option<string?>("--socket") { Description = "Serve on a Unix socket at this path (it must not exist, or be a stale socket)." };
        var pty = new Option<bool>("--pty") { Description = "Serve on a new pseudo-terminal instead; its path (/dev/pts/N) is printed." };
        var serial = new Option<string>("--serial") { Description = "The board serial SERIAL answers.", DefaultValueFactory = _ => new BmcModelOptions().Serial };
        var firmware = new Option<string>("--firmware") { Description = "The firmware version VERSION answers (major.minor.patch).", DefaultValueFactory = _ => "1.2.0" };
        var resetDelay = new Option<int>("--reset-delay") { Description = "Milliseconds the FPGA stays off the bus after RESET (spec 8: about a second).", DefaultValueFactory = _ => (int)BoardManagement.ResetOffBus.TotalMilliseconds };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Log connections to standard error." };
        var command = new Command("model", "Serve the BMC model (spec 8) on a Unix socket or a pseudo-terminal, for QEMU's usb-serial or for 'fpgaaccel bmc --port PATH'. Runs until SIGINT or SIGTERM.");
        command.Options.Add(socket);
        command.Options.Add(pty);
        command.Options.Add(serial);
        command.Options.Add(firmware);
        command.Options.Add(resetDelay);
        command.Options.Add(verbose);
        command.SetAction(result =>
        {
            BmcModelOptions options;
            var path = result.GetValue(socket);
            var onPty = result.GetValue(pty);
            try
            {
                if ((path is null) == !onPty)
                {
                    throw new UsageException("Give exactly one of --socket PATH and --pty.");
                }

                var version = ParseVersion(result.GetValue(firmware)!);
                options = new BmcModelOptions
                {
                    Serial = result.GetValue(serial)!,
                    FirmwareMajor = version[0],
                    FirmwareMinor = version[1],
                    FirmwarePatch = version[2],
                    ResetOffBus = TimeSpan.FromMilliseconds(result.GetValue(resetDelay)),
                };
                options.Validate();
            }
            catch (Exception ex) when (ex is UsageException or ArgumentException)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Usage;
            }

            try
            {
                return Serve(io, options, path, result.GetValue(verbose));
            }
            catch (IOException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Failed;
            }
        });
        return command;
    }

    private static int Serve(CliIo io, BmcModelOptions options, string? path, bool verbose)
    {
        using var stop = new ManualResetEventSlim();
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Set();
        }

        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using var loggerFactory = BmcCommand.CreateLoggerFactory(verbose);
        using var model = new BmcModel(options);
        if (path is not null)
        {
            using var server = BmcSocketServer.Start(model, path, loggerFactory);
            io.Output.WriteLine($"BMC model ({BoardManagement.VersionProduct} {model.Version}, serial {model.Serial}) serving on {path}; SIGINT or SIGTERM stops it.");
            io.Output.Flush();
            stop.Wait();
        }
        else
        {
            using var terminal = TerminalDevice.CreatePseudoTerminal();
            io.Output.WriteLine($"BMC model ({BoardManagement.VersionProduct} {model.Version}, serial {model.Serial}) serving on {terminal.Path}; SIGINT or SIGTERM stops it.");
            io.Output.Flush();
            BmcSocketServer.Serve(model, terminal, () => stop.IsSet, TimeSpan.FromMilliseconds(100));
        }

        io.Output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Served {model.Requests} requests ({model.Resets} resets)."));
        return ExitCodes.Ok;
    }

    private static int[] ParseVersion(string text)
    {
        var parts = text.Split('.');
        var numbers = new int[3];
        if (parts.Length != 3 || !parts.Select((p, i) => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out numbers[i])).All(ok => ok))
        {
            throw new UsageException($"--firmware '{text}' is not major.minor.patch (e.g. 1.2.0).");
        }

        return numbers;
    }
}
