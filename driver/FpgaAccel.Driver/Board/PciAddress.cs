using System.Globalization;
using System.Text.RegularExpressions;

namespace FpgaAccel.Driver.Board;

/// <summary>A PCI function address, domain:bus:device.function, as sysfs names it (0000:03:00.0).</summary>
/// <param name="Domain">PCI segment (domain), 0 on most hosts.</param>
/// <param name="Bus">Bus number.</param>
/// <param name="Device">Device (slot) number, 0..31.</param>
/// <param name="Function">Function number, 0..7.</param>
public readonly partial record struct PciAddress(ushort Domain, byte Bus, byte Device, byte Function)
{
    /// <summary>The address as sysfs and lspci -D write it, lower-case hex with the domain: <c>0000:03:00.0</c>.</summary>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Domain:x4}:{Bus:x2}:{Device:x2}.{Function:x1}");

    /// <summary>Parses <c>0000:03:00.0</c> or the short <c>03:00.0</c> (domain 0).</summary>
    public static PciAddress Parse(string text)
    {
        if (TryParse(text, out var address))
        {
            return address;
        }

        throw new InvalidPciAddressException(text);
    }

    /// <summary>As <see cref="Parse"/>, but returns false instead of throwing for text that is not an address.</summary>
    public static bool TryParse(string? text, out PciAddress address)
    {
        address = default;
        if (text is null)
        {
            return false;
        }

        var match = Pattern().Match(text.Trim());
        if (!match.Success)
        {
            return false;
        }

        var domain = match.Groups["domain"].Success ? ushort.Parse(match.Groups["domain"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture) : (ushort)0;
        var bus = byte.Parse(match.Groups["bus"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var device = byte.Parse(match.Groups["dev"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var function = byte.Parse(match.Groups["fn"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        if (device > 0x1F || function > 7)
        {
            return false;
        }

        address = new PciAddress(domain, bus, device, function);
        return true;
    }

    [GeneratedRegex("^(?:(?<domain>[0-9a-fA-F]{4}):)?(?<bus>[0-9a-fA-F]{2}):(?<dev>[0-9a-fA-F]{2})\\.(?<fn>[0-7])$")]
    private static partial Regex Pattern();
}

/// <summary>A PCI address that does not parse.</summary>
public sealed class InvalidPciAddressException : FpgaAccelException
{
    /// <summary>The <paramref name="text"/> given as a PCI address does not parse.</summary>
    public InvalidPciAddressException(string? text)
        : base($"'{text}' is not a PCI address: write it as domain:bus:device.function in hex, e.g. 0000:03:00.0 " +
               "(lspci -D lists them).")
    {
        Text = text;
    }

    /// <summary>The text that was given.</summary>
    public string? Text { get; }
}
