using System.Globalization;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Mmu;

namespace FpgaAccel.Diagnostics;

/// <summary>The setting a jitter sweep varies from one point to the next.</summary>
public enum SweepParameter
{
    /// <summary>Bytes per command.</summary>
    Size,

    /// <summary>The on-demand budget, in pages (<see cref="FpgaDevice.SetOnDemandBudget"/> before each point).</summary>
    Budget,

    /// <summary>The on-demand regions' fault-around window, in pages.</summary>
    FaultAround,

    /// <summary>Prefetch of each command's ranges off (0) or on (1).</summary>
    Prefetch,
}

/// <summary>
/// A sweep of one jitter setting: <c>size=4K..4M</c> (doubling from the first value to the last, the last included),
/// <c>budget=32..512</c>, <c>fault-around=1..64</c>, <c>prefetch</c> (off then on), or any of them as a list
/// (<c>size=4K,64K,1M</c>, <c>prefetch=on,off</c>). Every point runs the same options but the swept one (decision F7).
/// </summary>
/// <param name="Parameter">The swept setting.</param>
/// <param name="Values">Its values, in the order they run (sizes in bytes, budgets and windows in pages, prefetch 0 or 1).</param>
public sealed record JitterSweep(SweepParameter Parameter, IReadOnlyList<long> Values)
{
    /// <summary>Most points a sweep runs (4 bytes to 64 MiB doubling is 25).</summary>
    public const int MaxPoints = 32;

    // A COPY stalled on a fault needs its two pages at once (the driver's own minimum, OnDemandPager.MinimumBudget).
    private const int MinimumBudget = 2;

    private const string Grammar = "write NAME=FIRST..LAST (doubling from FIRST to LAST) or NAME=V1,V2,...; NAME is size (bytes, K/M/G suffixes), " +
        "budget (pages), fault-around (pages) or prefetch (off,on); e.g. --sweep size=4K..4M";

    /// <summary>The name of <see cref="Parameter"/> as the command line and the outputs spell it.</summary>
    public string Name => NameOf(Parameter);

    /// <summary>The command-line spelling of <paramref name="parameter"/>.</summary>
    public static string NameOf(SweepParameter parameter) => parameter switch
    {
        SweepParameter.Size => "size",
        SweepParameter.Budget => "budget",
        SweepParameter.FaultAround => "fault-around",
        _ => "prefetch",
    };

    /// <summary>A swept value as the tables print it: sizes with a binary suffix, prefetch as off or on.</summary>
    public string Format(long value) => Parameter switch
    {
        SweepParameter.Size => FormatBytes(value),
        SweepParameter.Prefetch => value == 0 ? "off" : "on",
        _ => value.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>The options of one point: <paramref name="options"/> with the swept setting set to <paramref name="value"/>.</summary>
    public JitterOptions Apply(JitterOptions options, long value)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Parameter switch
        {
            SweepParameter.Size => options with { Size = (ulong)value },
            SweepParameter.FaultAround => options with { FaultAroundPages = (int)value },
            SweepParameter.Prefetch => options with { Prefetch = value != 0 },
            _ => options,
        };
    }

    /// <summary>
    /// Parses a sweep. Throws <see cref="InvalidDeviceOptionException"/> (option <c>sweep</c>) naming the text, the rule it
    /// breaks and how to write it instead.
    /// </summary>
    public static JitterSweep Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var trimmed = text.Trim();
        var eq = trimmed.IndexOf('=', StringComparison.Ordinal);
        var name = (eq < 0 ? trimmed : trimmed[..eq]).Trim().ToLowerInvariant();
        var parameter = name switch
        {
            "size" => SweepParameter.Size,
            "budget" => SweepParameter.Budget,
            "fault-around" => SweepParameter.FaultAround,
            "prefetch" => SweepParameter.Prefetch,
            _ => throw Bad(text, $"'{name}' is not a sweepable setting; {Grammar}"),
        };

        if (eq < 0)
        {
            // Only prefetch has an obvious range of its own.
            return parameter == SweepParameter.Prefetch ? new JitterSweep(parameter, [0, 1]) : throw Bad(text, $"{name} needs a range or a list; {Grammar}");
        }

        var body = trimmed[(eq + 1)..].Trim();
        var values = new List<long>();
        var range = body.Split("..", StringSplitOptions.TrimEntries);
        if (range.Length == 2 && !body.Contains(',', StringComparison.Ordinal))
        {
            var (first, last) = (Value(text, parameter, range[0]), Value(text, parameter, range[1]));
            if (first > last)
            {
                throw Bad(text, $"the range runs from {range[0]} down to {range[1]}; write the smaller value first ({name}={range[1]}..{range[0]})");
            }

            for (var v = first; v <= last && values.Count <= MaxPoints; v = v > long.MaxValue / 2 ? long.MaxValue : v * 2)
            {
                values.Add(v);
                if (v == long.MaxValue)
                {
                    break;
                }
            }

            if (values[^1] != last)
            {
                values.Add(last);
            }
        }
        else if (range.Length == 1)
        {
            foreach (var item in body.Split(',', StringSplitOptions.TrimEntries))
            {
                var v = Value(text, parameter, item);
                if (values.Contains(v))
                {
                    throw Bad(text, $"{item} is listed twice; list each value once");
                }

                values.Add(v);
            }
        }
        else
        {
            throw Bad(text, $"'{body}' is neither a range nor a list; {Grammar}");
        }

        if (values.Count > MaxPoints)
        {
            throw Bad(text, $"a sweep runs at most {MaxPoints} points; narrow the range");
        }

        return new JitterSweep(parameter, values);
    }

    private static long Value(string text, SweepParameter parameter, string item)
    {
        if (item.Length == 0)
        {
            throw Bad(text, $"a value is empty; {Grammar}");
        }

        switch (parameter)
        {
            case SweepParameter.Prefetch:
                return item.ToLowerInvariant() switch
                {
                    "off" or "0" or "false" => 0,
                    "on" or "1" or "true" => 1,
                    _ => throw Bad(text, $"prefetch is off or on, not '{item}'; write prefetch=off,on (or just prefetch)"),
                };
            case SweepParameter.Size:
                if (!TryParseBytes(item, out var bytes) || bytes < 1 || bytes > (long)JitterOptions.MaxSize)
                {
                    throw Bad(text, $"a size is a number of bytes from 1 to {FormatBytes((long)JitterOptions.MaxSize)} (suffixes K, M, G are binary), not '{item}'; e.g. size=4K..4M");
                }

                return bytes;
            case SweepParameter.Budget:
                if (!long.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out var pages) || pages < MinimumBudget || pages > 1 << 24)
                {
                    throw Bad(text, $"a budget is a number of pages from {MinimumBudget} (a stalled COPY needs 2) to {1 << 24}, not '{item}'; e.g. budget=32..512");
                }

                return pages;
            default:
                if (!long.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out var window) || window < 1 || window > DeviceContext.MaxFaultAroundPages || (window & (window - 1)) != 0)
                {
                    throw Bad(text, $"a fault-around window is a power of two from 1 (off) to {DeviceContext.MaxFaultAroundPages} pages, not '{item}'; e.g. fault-around=1..{DeviceContext.MaxFaultAroundPages}");
                }

                return window;
        }
    }

    /// <summary>Parses a byte count with an optional binary suffix (K, M, G, with or without a trailing B or iB).</summary>
    public static bool TryParseBytes(string text, out long bytes)
    {
        bytes = 0;
        var s = text.Trim().ToUpperInvariant();
        if (s.EndsWith("IB", StringComparison.Ordinal))
        {
            s = s[..^2];
        }
        else if (s.EndsWith('B'))
        {
            s = s[..^1];
        }

        var shift = s.Length == 0 ? 0 : s[^1] switch { 'K' => 10, 'M' => 20, 'G' => 30, _ => 0 };
        if (shift > 0)
        {
            s = s[..^1];
        }

        if (!long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > long.MaxValue >> shift)
        {
            return false;
        }

        bytes = n << shift;
        return true;
    }

    /// <summary>Bytes with the largest binary suffix that divides them (4096 is 4K, 4194304 is 4M, 1000 is 1000).</summary>
    public static string FormatBytes(long bytes) => bytes switch
    {
        > 0 when bytes % (1L << 30) == 0 => string.Create(CultureInfo.InvariantCulture, $"{bytes >> 30}G"),
        > 0 when bytes % (1L << 20) == 0 => string.Create(CultureInfo.InvariantCulture, $"{bytes >> 20}M"),
        > 0 when bytes % (1L << 10) == 0 => string.Create(CultureInfo.InvariantCulture, $"{bytes >> 10}K"),
        _ => bytes.ToString(CultureInfo.InvariantCulture),
    };

    private static InvalidDeviceOptionException Bad(string text, string rule) => new("sweep", $"'{text}'", rule);
}

/// <summary>One point of a sweep: the swept value and what each mode measured at it.</summary>
/// <param name="Value">The swept value (see <see cref="JitterSweep.Values"/>).</param>
/// <param name="Options">The options the point ran with.</param>
/// <param name="Modes">One result per mode measured.</param>
public sealed record JitterSweepPoint(long Value, JitterOptions Options, IReadOnlyList<JitterModeResult> Modes);
