using System.CommandLine;
using System.Globalization;

namespace FpgaAccel.Cli;

/// <summary>
/// Range and format rules checked while the command line is parsed, so a bad value is a parse error (exit code 2, a
/// message naming the option, the value and the rule) before any device is opened or any work starts.
/// </summary>
internal static class OptionRules
{
    /// <summary>The value, when given, is a PCI address (domain:bus:device.function).</summary>
    public static Option<T> PciAddress<T>(this Option<T> option) => PciAddressCore(option);

    /// <summary>The value lies in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<T> InRange<T>(this Option<T> option, T min, T max, string what)
        where T : struct, IComparable<T>
    {
        option.Validators.Add(result =>
        {
            if (TryGet<T>(result, out var value) && (value.CompareTo(min) < 0 || value.CompareTo(max) > 0))
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"{option.Name} {value} is out of range: {what} is {min} to {max}."));
            }
        });
        return option;
    }

    /// <summary>A finite number of seconds above 0 and at most <paramref name="max"/>.</summary>
    public static Option<double> Seconds(this Option<double> option, double max)
    {
        option.Validators.Add(result =>
        {
            if (TryGet<double>(result, out var value) && (!double.IsFinite(value) || value <= 0 || value > max))
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"{option.Name} {value} is out of range: give a number of seconds above 0 and at most {max}."));
            }
        });
        return option;
    }

    /// <summary>The value, when given, is not empty.</summary>
    public static Option<string?> NotEmpty(this Option<string?> option, string what)
    {
        option.Validators.Add(result =>
        {
            if (TryGet<string?>(result, out var value) && value is not null && string.IsNullOrWhiteSpace(value))
            {
                result.AddError($"{option.Name} is empty: give {what}.");
            }
        });
        return option;
    }

    /// <summary>The value, when given, names a file (not empty, not a directory).</summary>
    public static Option<FileInfo?> FilePath(this Option<FileInfo?> option)
    {
        option.Validators.Add(result =>
        {
            var token = result.Tokens.Count > 0 ? result.Tokens[^1].Value : null;
            if (token is not null && (string.IsNullOrWhiteSpace(token) || Directory.Exists(token)))
            {
                result.AddError($"{option.Name} '{token}' is not a file path: give the path of a file to write (its directory must exist).");
            }
        });
        return option;
    }

    // A value that did not convert (not a number, say) is reported by the parser itself; its rule is not checked.
    private static bool TryGet<T>(System.CommandLine.Parsing.OptionResult result, out T value)
    {
        try
        {
            value = result.GetValueOrDefault<T>();
            return true;
        }
        catch (InvalidOperationException)
        {
            value = default!;
            return false;
        }
    }

    private static Option<T> PciAddressCore<T>(Option<T> option)
    {
        option.Validators.Add(result =>
        {
            if (TryGet<T>(result, out var value) && value is string text && !Driver.Board.PciAddress.TryParse(text, out _))
            {
                result.AddError($"{option.Name} '{text}' is not a PCI address: write it like 0000:03:00.0 (domain:bus:device.function, hex).");
            }
        });
        return option;
    }
}
