using System.CommandLine;
using System.Globalization;

namespace FpgaAccel.Cli;

/// <summary>Options of the host-level commands (doctor, setup): where sysfs and /dev are, IDs, pin budget.</summary>
internal sealed class SystemOptions
{
    public Option<string> Sysfs { get; } = new("--sysfs")
    {
        Description = "Root of sysfs (for tests and chroots).",
        DefaultValueFactory = _ => "/sys",
        Hidden = true,
    };

    public Option<string> Dev { get; } = new("--dev")
    {
        Description = "Root of the device nodes (for tests and chroots).",
        DefaultValueFactory = _ => "/dev",
        Hidden = true,
    };

    public Option<string> VendorId { get; } = new("--vendor-id")
    {
        Description = "PCI vendor ID of the board, hex (spec 1 default 10ee).",
        DefaultValueFactory = _ => "10ee",
    };

    public Option<string> DeviceId { get; } = new("--device-id")
    {
        Description = "PCI device ID of the board, hex (spec 1 default fa01).",
        DefaultValueFactory = _ => "fa01",
    };

    public Option<string> PinBytes { get; } = new("--pin-bytes")
    {
        Description = "Bytes the workload pins for DMA, checked against RLIMIT_MEMLOCK (suffixes K, M, G; default 64M).",
        DefaultValueFactory = _ => "64M",
    };

    public static ushort ParseId(string text, string option)
    {
        var t = text.Trim();
        if (t.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            t = t[2..];
        }

        if (t.Length is < 1 or > 4 || !ushort.TryParse(t, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var id))
        {
            throw new UsageException($"{option} '{text}' is not a 16-bit hex PCI ID: write it like 10ee or 0x10ee.");
        }

        return id;
    }

    public static ulong ParseBytes(string text)
    {
        var t = text.Trim();
        var shift = t.Length > 0 ? char.ToUpperInvariant(t[^1]) switch { 'K' => 10, 'M' => 20, 'G' => 30, _ => 0 } : 0;
        if (shift != 0)
        {
            t = t[..^1];
        }

        if (!ulong.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value == 0 || value > (ulong.MaxValue >> shift))
        {
            throw new UsageException($"--pin-bytes '{text}' is not a positive byte count: write it like 67108864, 65536K, 64M or 1G.");
        }

        return value << shift;
    }
}

/// <summary>A command-line value that breaks a rule; exit code 2.</summary>
internal sealed class UsageException : Exception
{
    public UsageException(string message)
        : base(message)
    {
    }
}
