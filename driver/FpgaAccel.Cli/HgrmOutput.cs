using System.Globalization;
using FpgaAccel.Diagnostics;
using HdrHistogram;

namespace FpgaAccel.Cli;

/// <summary>
/// HdrHistogram percentile distributions (<c>.hgrm</c>, the text HdrHistogram's plotters read) of each mode's host
/// latency, in microseconds, written by HdrHistogram itself (decision F8): three significant digits, so a value is
/// within 0.1% of the sample it stands for. The exact percentiles stay in the table and the JSON; these are for
/// plotting and comparing runs with the HdrHistogram tools.
/// </summary>
internal static class HgrmOutput
{
    /// <summary>Significant decimal digits kept: values within 0.1%.</summary>
    public const int SignificantDigits = 3;

    /// <summary>Output unit: HdrHistogram divides the recorded nanoseconds by this, so the file is in microseconds.</summary>
    public const double NanosecondsPerUnit = 1000.0;

    /// <summary>A histogram of <paramref name="result"/>'s host latencies in ns (a sample below 1 ns counts as 1 ns).</summary>
    public static LongHistogram Histogram(JitterModeResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var max = result.Samples.Length == 0 ? 2 : Math.Max(2, result.Samples.Max(s => s.HostNanoseconds));
        var histogram = new LongHistogram(1, max, SignificantDigits);
        foreach (var s in result.Samples)
        {
            histogram.RecordValue(Math.Max(1, s.HostNanoseconds));
        }

        return histogram;
    }

    /// <summary>Writes <paramref name="result"/>'s distribution to <paramref name="path"/> as .hgrm (values in us).</summary>
    public static void Write(JitterModeResult result, string path)
    {
        using var writer = new StreamWriter(path, append: false, new System.Text.UTF8Encoding(false));
        Histogram(result).OutputPercentileDistribution(writer, percentileTicksPerHalfDistance: 5, outputValueUnitScalingRatio: NanosecondsPerUnit);
    }

    /// <summary>The file name of a mode's distribution, with the sweep point when there is one: <c>ondemand.hgrm</c>, <c>size-4K-pinned.hgrm</c>.</summary>
    public static string FileName(BufferMode mode, JitterSweep? sweep = null, long value = 0) =>
        sweep is null ? $"{JitterOutputs.ModeName(mode)}.hgrm" : string.Create(CultureInfo.InvariantCulture, $"{sweep.Name}-{sweep.Format(value)}-{JitterOutputs.ModeName(mode)}.hgrm");

    /// <summary>Checks that <paramref name="directory"/> can hold the files (creating it), or throws an IOException saying how to fix it.</summary>
    public static void Prepare(DirectoryInfo directory)
    {
        try
        {
            Directory.CreateDirectory(directory.FullName);
            var probe = Path.Combine(directory.FullName, $".fpgaaccel-{Environment.ProcessId}.probe");
            File.WriteAllText(probe, string.Empty);
            File.Delete(probe);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException or NotSupportedException)
        {
            throw new IOException($"Cannot write .hgrm files in '{directory.FullName}': {ex.Message} Give --hgrm a directory you can write to (it is created when missing).", ex);
        }
    }
}
