using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim.Bmc;

/// <summary>Settings of the BMC model (spec 8). Every field has the value a lab board would plausibly show.</summary>
public sealed record BmcModelOptions
{
    /// <summary>What SERIAL answers.</summary>
    public string Serial { get; init; } = "FA1-SIM-000001";

    /// <summary>What VERSION answers after <c>FA1-BMC</c>: major.</summary>
    public int FirmwareMajor { get; init; } = 1;

    /// <summary>Minor.</summary>
    public int FirmwareMinor { get; init; } = 2;

    /// <summary>Patch.</summary>
    public int FirmwarePatch { get; init; } = 0;

    /// <summary>How long the FPGA stays off the bus after RESET (spec 8: about a second).</summary>
    public TimeSpan ResetOffBus { get; init; } = BoardManagement.ResetOffBus;

    /// <summary>The FPGA RESET acts on; null: RESET is only logged (a BMC model with no FA-1 model behind it).</summary>
    public IFpgaPower? Fpga { get; init; }

    /// <summary>The temperature the board settles around, in millidegrees Celsius.</summary>
    public int BaseTemperatureMillidegrees { get; init; } = 45_000;

    /// <summary>Seed of the temperature's noise, for reproducible readings.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Lines the firmware log keeps (the oldest go first).</summary>
    public int LogCapacity { get; init; } = 256;

    /// <summary>Where time comes from (the temperature's drift, the log's timestamps, the reset delay); tests may replace it.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> or <see cref="ArgumentException"/> naming the setting out of range.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Serial) || Serial.Length > 64 || Serial.Any(c => c is < ' ' or > '~'))
        {
            throw new ArgumentException($"Serial '{Serial}' must be 1 to 64 printable ASCII characters (decision P5).", nameof(Serial));
        }

        if (FirmwareMajor < 0 || FirmwareMinor < 0 || FirmwarePatch < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(FirmwareMajor), "Firmware version numbers are not negative.");
        }

        if (ResetOffBus < TimeSpan.Zero || ResetOffBus > TimeSpan.FromMinutes(10))
        {
            throw new ArgumentOutOfRangeException(nameof(ResetOffBus), ResetOffBus, "The reset's time off the bus must be 0 to 10 minutes.");
        }

        if (LogCapacity is < 1 or > 100_000)
        {
            throw new ArgumentOutOfRangeException(nameof(LogCapacity), LogCapacity, "The firmware log keeps 1 to 100000 lines.");
        }
    }
}
