using System.Globalization;

namespace FpgaAccel.Management;

/// <summary>The BMC firmware's version, from <c>OK FA1-BMC &lt;major&gt;.&lt;minor&gt;.&lt;patch&gt;</c> (spec 8).</summary>
/// <param name="Major">Major version.</param>
/// <param name="Minor">Minor version.</param>
/// <param name="Patch">Patch level.</param>
public sealed record BmcFirmwareVersion(int Major, int Minor, int Patch)
{
    /// <summary><c>major.minor.patch</c>.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Major}.{Minor}.{Patch}");
}

/// <summary>A temperature the BMC reported, in millidegrees Celsius (spec 8: <c>OK &lt;millidegrees C&gt;</c>).</summary>
/// <param name="Millidegrees">Thousandths of a degree Celsius.</param>
public readonly record struct BmcTemperature(int Millidegrees)
{
    /// <summary>The lowest value taken as a reading: absolute zero. Anything below is a malformed reply.</summary>
    public const int MinimumMillidegrees = -273_150;

    /// <summary>The highest value taken as a reading (a board far past any rating, but a number a sensor can give).</summary>
    public const int MaximumMillidegrees = 1_000_000;

    /// <summary>Degrees Celsius.</summary>
    public double Celsius => Millidegrees / 1000.0;

    /// <summary><c>45.125 C</c>.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Celsius:0.000} C");
}

/// <summary>One exchange with the BMC as it happened: the request, the reply line, the extra lines, the round trip.</summary>
/// <param name="Request">The request line sent, without its newline.</param>
/// <param name="Reply">The reply line, without its newline.</param>
/// <param name="Lines">The lines that followed the reply (LOG's log lines); empty for the others.</param>
/// <param name="RoundTrip">From the request's first byte written to the reply's last line read.</param>
public sealed record BmcExchange(string Request, string Reply, IReadOnlyList<string> Lines, TimeSpan RoundTrip);
