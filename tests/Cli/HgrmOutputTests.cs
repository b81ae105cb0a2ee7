using System.Globalization;
using FpgaAccel.Cli;
using FpgaAccel.Diagnostics;
using FpgaAccel.FirmwareInterface;
using NUnit.Framework;

namespace FpgaAccel.Tests.Cli;

/// <summary>
/// The .hgrm files jitter --hgrm writes: HdrHistogram's percentile distribution text (the header line, one row per
/// percentile step with value, percentile, total count and 1/(1-p), the mean, max and count footer), in microseconds,
/// each value within HdrHistogram's 0.1% of the exact nearest-rank percentile of the samples.
/// </summary>
public class HgrmOutputTests
{
    [Test]
    public void TheFileIsHdrHistogramsPercentileDistributionOfTheSamplesInMicroseconds()
    {
        // 1000 samples from 10 us to 10 ms, skewed like a latency distribution.
        var random = new Random(7);
        var samples = Enumerable.Range(0, 1000).Select(_ => (long)(10_000 * Math.Pow(1000, random.NextDouble() * random.NextDouble()))).ToArray();
        var result = Result(samples);
        var path = Path.GetTempFileName();
        try
        {
            HgrmOutput.Write(result, path);
            var lines = File.ReadAllLines(path);
            Assert.That(lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[] { "Value", "Percentile", "TotalCount", "1/(1-Percentile)" }));
            var rows = lines.Skip(1).Where(l => l.Length > 0 && !l.StartsWith('#')).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToArray();
            Assert.That(rows, Has.Length.GreaterThan(20), "five ticks per half distance down to the last sample");
            var sorted = samples.Order().ToArray();
            var histogram = HgrmOutput.Histogram(result);
            long previousCount = 0;
            foreach (var row in rows)
            {
                var value = double.Parse(row[0], CultureInfo.InvariantCulture);
                var percentile = double.Parse(row[1], CultureInfo.InvariantCulture);
                var count = long.Parse(row[2], CultureInfo.InvariantCulture);
                Assert.That(count, Is.GreaterThanOrEqualTo(previousCount), "total count never falls");
                previousCount = count;

                // HdrHistogram reports the highest value equivalent to the sample at the count it reached (its bucket's top).
                var sample = sorted[Math.Clamp((int)count - 1, 0, sorted.Length - 1)];
                Assert.That(value, Is.EqualTo((histogram.NextNonEquivalentValue(sample) - 1) / HgrmOutput.NanosecondsPerUnit).Within(0.0006));
                var exact = sample / 1000.0;
                Assert.That(value, Is.EqualTo(exact).Within(exact * 0.001 + 0.001), $"percentile {percentile}: {value} us against the exact {exact} us");
            }

            Assert.That(previousCount, Is.EqualTo(samples.Length));
            var footer = string.Join('\n', lines.Where(l => l.StartsWith("#[", StringComparison.Ordinal)));
            var max = double.Parse(System.Text.RegularExpressions.Regex.Match(footer, @"Max\s*=\s*([0-9.]+)").Groups[1].Value, CultureInfo.InvariantCulture);
            Assert.That(max, Is.EqualTo(sorted[^1] / 1000.0).Within(sorted[^1] / 1000.0 * 0.001));
            Assert.That(footer, Does.Match(@"Total count\s*=\s*1000\b"));
            Assert.That(footer, Does.Contain("Mean").And.Contain("StdDeviation").And.Contain("Buckets").And.Contain("SubBuckets"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void FileNamesSayTheModeAndThePoint()
    {
        Assert.That(HgrmOutput.FileName(BufferMode.OnDemand), Is.EqualTo("ondemand.hgrm"));
        Assert.That(HgrmOutput.FileName(BufferMode.Pinned, JitterSweep.Parse("size=4K..4M"), 1 << 20), Is.EqualTo("size-1M-pinned.hgrm"));
        Assert.That(HgrmOutput.FileName(BufferMode.OnDemand, JitterSweep.Parse("prefetch"), 1), Is.EqualTo("prefetch-on-ondemand.hgrm"));
    }

    private static JitterModeResult Result(long[] hostNanoseconds)
    {
        var samples = hostNanoseconds.Select(ns => new JitterSample(ns, 0, 1, 0, CompletionStatus.Ok)).ToArray();
        var stats = LatencyStats.From(hostNanoseconds.Select(ns => (double)ns).ToArray());
        return new JitterModeResult(BufferMode.Pinned, samples, stats, stats, 0, 0, 0, 0, 0, 0, 0);
    }
}
