using System.CommandLine;
using FpgaAccel.Driver;
using FpgaAccel.HwSim;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Cli;

/// <summary>Options every device command takes, and how they become <see cref="FpgaDeviceOptions"/>.</summary>
internal sealed class CommonOptions
{
    public Option<string> Backend { get; } = new("--backend")
    {
        Description = "Which device: auto (the board when one is bound to VFIO, else the model), board, or model.",
        DefaultValueFactory = _ => "auto",
    };

    public Option<string?> Device { get; } = new("--device")
    {
        Description = "PCI address of the board (e.g. 0000:03:00.0); default: find it by vendor and device ID.",
    };

    public Option<string> Clock { get; } = new("--clock")
    {
        Description = "The model's clock: wall (CYCLES follows real time) or virtual (reproducible).",
        DefaultValueFactory = _ => "wall",
    };

    public Option<bool> Json { get; } = new("--json")
    {
        Description = "Print one JSON object instead of text.",
    };

    public Option<bool> Verbose { get; } = new("--verbose", "-v")
    {
        Description = "Log the driver's debug messages to standard error.",
    };

    public CommonOptions()
    {
        Backend.AcceptOnlyFromAmong("auto", "board", "model");
        Device.PciAddress();
        Clock.AcceptOnlyFromAmong("wall", "virtual");
    }

    public void AddTo(Command command, bool withJson = true)
    {
        command.Options.Add(Backend);
        command.Options.Add(Device);
        command.Options.Add(Clock);
        if (withJson)
        {
            command.Options.Add(Json);
        }

        command.Options.Add(Verbose);
    }

    public FpgaDeviceOptions ToDeviceOptions(ParseResult result, ILoggerFactory loggerFactory) => new()
    {
        Backend = FpgaDeviceOptions.ParseBackend(result.GetValue(Backend) ?? "auto"),
        PciAddress = result.GetValue(Device),
        Model = new ModelOptions { Clock = result.GetValue(Clock) == "virtual" ? ClockMode.Virtual : ClockMode.Wall },
        LoggerFactory = loggerFactory,
    };

    public ILoggerFactory CreateLoggerFactory(ParseResult result)
    {
        var level = result.GetValue(Verbose) ? LogLevel.Debug : LogLevel.Information;
        return LoggerFactory.Create(builder => builder
            .SetMinimumLevel(level)
            .AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            })
            .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));
    }
}
