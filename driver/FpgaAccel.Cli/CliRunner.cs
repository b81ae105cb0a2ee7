using System.CommandLine;
using FpgaAccel.Driver;
using FpgaAccel.Interop;

namespace FpgaAccel.Cli;

/// <summary>Exit codes of fpgaaccel.</summary>
internal static class ExitCodes
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int Usage = 2;
}

/// <summary>Opens the device for a command, runs it, and turns driver errors into a message and an exit code.</summary>
internal static class CliRunner
{
    public static int Run(ParseResult result, CommonOptions common, CliIo io, Func<FpgaDevice, bool, TextWriter, int> body)
    {
        using var loggerFactory = common.CreateLoggerFactory(result);
        try
        {
            var options = common.ToDeviceOptions(result, loggerFactory);
            using var device = FpgaDevice.Open(options);
            return body(device, result.GetValue(common.Json), io.Output);
        }
        catch (FpgaAccelException ex)
        {
            io.Error.WriteLine($"fpgaaccel: {ex.Message}");
            return ex is UnknownBackendException or InvalidDeviceOptionException ? ExitCodes.Usage : ExitCodes.Failed;
        }
        catch (IOException ex)
        {
            io.Error.WriteLine($"fpgaaccel: {ex.Message}");
            return ExitCodes.Failed;
        }
    }
}
