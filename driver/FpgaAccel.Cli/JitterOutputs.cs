using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;

namespace FpgaAccel.Cli;

/// <summary>What one jitter run measured, with its parameters, for the writers.</summary>
internal sealed record JitterRunReport(FpgaDevice Device, JitterOptions Options, int Budget, string Service, IReadOnlyList<JitterModeResult> Modes)
{
    /// <summary>Where the fault service time went, step by step (with --fault-stages).</summary>
    public IReadOnlyList<FpgaAccel.Driver.Faults.FaultStageTime> StageTimes { get; init; } = [];

    /// <summary>The eventfd wake-up floor measured in the same run (ns), when faults were serviced.</summary>
    public LatencyStats? WakeupFloor { get; init; }

    /// <summary>Fault service time p50 over the wake-up floor's p50, when both were measured.</summary>
    public double? ServiceToFloor =>
        WakeupFloor is { P50: > 0 } floor && Modes.FirstOrDefault(m => m.FaultService is not null)?.FaultService is { } fs ? fs.P50 / floor.P50 : null;

    /// <summary>On-demand p99.9 over pinned p99.9 of host latency, when both ran.</summary>
    public double? TailRatio
    {
        get
        {
            var pinned = Modes.FirstOrDefault(m => m.Mode == BufferMode.Pinned);
            var onDemand = Modes.FirstOrDefault(m => m.Mode == BufferMode.OnDemand);
            return pinned is null || onDemand is null || pinned.Host.P999 <= 0 ? null : onDemand.Host.P999 / pinned.Host.P999;
        }
    }
}

/// <summary>
/// Writes a jitter run as JSON (schema <c>fpgaaccel-jitter/1</c>, documented in perf/README.md), CSV of
/// raw samples, and an SVG plot of both modes' latency distributions (tail plot, log axes).
/// </summary>
internal static class JitterOutputs
{
    public const string Schema = "fpgaaccel-jitter/1";

    public static void WriteJson(JitterRunReport report, Stream stream)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("schema", Schema);
        w.WriteString("percentiles", LatencyStats.Method);
        w.WriteStartObject("parameters");
        w.WriteString("backend", report.Device.Info.Backend.ToString().ToLowerInvariant());
        w.WriteString("backend_description", report.Device.Info.BackendDescription);
        w.WriteString("op", report.Options.Operation.ToString().ToLowerInvariant());
        w.WriteNumber("size", report.Options.Size);
        w.WriteNumber("count", report.Options.Count);
        w.WriteNumber("warmup", report.Options.Warmup);
        w.WriteNumber("budget_pages", report.Budget);
        w.WriteString("service", report.Service);
        w.WriteString("completion", report.Options.Completion.ToString().ToLowerInvariant());
        w.WriteString("continuations", ContinuationsName(report.Options.Continuations));
        var paging = report.Modes.Select(m => m.Paging).FirstOrDefault(p => p is not null);
        if (paging is not null || report.Options.FaultAroundPages is not null)
        {
            w.WriteNumber("fault_around_pages", paging?.FaultAroundPages ?? report.Options.FaultAroundPages!.Value);
        }
        else
        {
            w.WriteNull("fault_around_pages");
        }

        w.WriteBoolean("prefetch", report.Options.Prefetch);
        w.WriteNumber("clock_hz", report.Device.Info.ClockHz);
        w.WriteEndObject();
        w.WriteStartObject("machine");
        w.WriteString("host", Environment.MachineName);
        w.WriteNumber("cpus", Environment.ProcessorCount);
        w.WriteString("os", RuntimeInformation.OSDescription);
        w.WriteString("runtime", RuntimeInformation.FrameworkDescription);
        w.WriteString("architecture", RuntimeInformation.ProcessArchitecture.ToString());
        w.WriteString("timestamp", DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture));
        w.WriteEndObject();
        w.WriteStartObject("modes");
        foreach (var m in report.Modes)
        {
            w.WriteStartObject(ModeName(m.Mode));
            WriteStats(w, m.Host);
            w.WriteNumber("faults", m.Faults);
            w.WriteNumber("faults_per_command", Math.Round(m.FaultsPerCommand, 4));
            w.WriteNumber("evictions", m.Evictions);
            w.WriteNumber("not_ok", m.NonOk);
            w.WriteStartObject("device");
            WriteStats(w, m.Device);
            w.WriteEndObject();
            if (m.Paging is { } p)
            {
                w.WriteStartObject("paging");
                w.WriteNumber("fault_around_pages", p.FaultAroundPages);
                w.WriteBoolean("prefetch", p.Prefetch);
                w.WriteNumber("fault_around_mapped", p.FaultAroundMapped);
                w.WriteNumber("prefetched_pages", p.PrefetchedPages);
                w.WriteNumber("eviction_batches", p.EvictionBatches);
                w.WriteNumber("eviction_fences", p.EvictionFences);
                w.WriteNumber("evictions_per_fence", p.EvictionFences == 0 ? 0 : Math.Round((double)m.Evictions / p.EvictionFences, 3));
                w.WriteNumber("direct_reclaims", p.DirectReclaims);
                w.WriteEndObject();
            }

            if (m.FaultService is { } fs)
            {
                w.WriteStartObject("fault_service");
                WriteStats(w, fs);
                w.WriteNumber("allocated_bytes_per_fault", Math.Round(m.ServiceBytesPerFault ?? 0, 3));
                w.WriteEndObject();
            }

            w.WriteStartObject("gc");
            w.WriteNumber("gen0", m.Gen0);
            w.WriteNumber("gen1", m.Gen1);
            w.WriteNumber("gen2", m.Gen2);
            w.WriteNumber("allocated_bytes", m.AllocatedBytes);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        w.WriteEndObject();
        if (report.StageTimes.Count > 0)
        {
            w.WriteStartObject("fault_stages_us");
            foreach (var s in report.StageTimes)
            {
                w.WriteStartObject(s.Stage.ToString().ToLowerInvariant());
                w.WriteNumber("count", s.Count);
                w.WriteNumber("p50", Math.Round(s.P50Microseconds, 3));
                w.WriteNumber("p99", Math.Round(s.P99Microseconds, 3));
                w.WriteNumber("mean", Math.Round(s.MeanMicroseconds, 3));
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        if (report.WakeupFloor is { } floor)
        {
            w.WriteStartObject("wakeup_floor");
            WriteStats(w, floor);
            w.WriteEndObject();
            w.WriteNumber("fault_service_to_floor_p50", Math.Round(report.ServiceToFloor ?? 0, 3));
        }

        var pinnedMode = report.Modes.FirstOrDefault(m => m.Mode == BufferMode.Pinned);
        var onDemandMode = report.Modes.FirstOrDefault(m => m.Mode == BufferMode.OnDemand);
        if (pinnedMode is { Host.P50: > 0 } && onDemandMode is not null)
        {
            w.WriteNumber("p50_ratio", Math.Round(onDemandMode.Host.P50 / pinnedMode.Host.P50, 3));
        }

        if (report.TailRatio is { } ratio)
        {
            w.WriteNumber("tail_ratio_p999", Math.Round(ratio, 3));
        }
        else
        {
            w.WriteNull("tail_ratio_p999");
        }

        w.WriteEndObject();
    }

    public static void WriteCsv(JitterRunReport report, Stream stream)
    {
        using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
        var nsPerCycle = 1e9 / report.Device.Info.ClockHz;
        w.WriteLine("mode,index,host_ns,device_start_cycle,device_end_cycle,device_ns,faults,status");
        foreach (var m in report.Modes)
        {
            WriteSampleRows(w, string.Empty, m, nsPerCycle);
        }
    }

    /// <summary>One CSV row per sample of <paramref name="mode"/>: <paramref name="prefix"/> (empty, or a sweep value and a comma), then mode,index,host_ns,device_start_cycle,device_end_cycle,device_ns,faults,status.</summary>
    internal static void WriteSampleRows(TextWriter w, string prefix, JitterModeResult mode, double nsPerCycle)
    {
        var name = ModeName(mode.Mode);
        for (var i = 0; i < mode.Samples.Length; i++)
        {
            var s = mode.Samples[i];
            w.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{prefix}{name},{i},{s.HostNanoseconds},{s.DeviceStartCycle},{s.DeviceEndCycle},{s.DeviceNanoseconds(nsPerCycle):0},{s.Faults},{s.Status}"));
        }
    }

    /// <summary>
    /// A tail plot: for each mode, the fraction of commands slower than x (y, log) against latency x
    /// (log). Flat and far left is good; a long tail to the right is jitter.
    /// </summary>
    public static void WriteSvg(JitterRunReport report, Stream stream)
    {
        var plot = new SvgPlot(width: 860, height: 520, left: 80, right: 30, top: 50, bottom: 60);
        var all = report.Modes.SelectMany(m => m.Samples.Select(s => Math.Max(1.0, s.HostNanoseconds / 1000.0))).ToArray();
        var minX = Math.Floor(Math.Log10(all.Length == 0 ? 1 : all.Min()));
        var maxX = Math.Ceiling(Math.Log10(all.Length == 0 ? 10 : all.Max()));
        if (maxX <= minX)
        {
            maxX = minX + 1;
        }

        var maxN = Math.Max(10, report.Modes.Max(m => m.Samples.Length));
        var minY = -Math.Ceiling(Math.Log10(maxN));
        double X(double us) => plot.Left + ((Math.Log10(us) - minX) / (maxX - minX) * (plot.Width - plot.Left - plot.Right));
        double Y(double fraction) => plot.Top + ((0 - Math.Log10(fraction)) / (0 - minY) * (plot.Height - plot.Top - plot.Bottom));
        var c = CultureInfo.InvariantCulture;
        plot.Begin(plot.Width / 2, string.Create(c, $"FA-1 {report.Options.Operation.ToString().ToLowerInvariant()} {report.Options.Size} B: host latency tail, pinned vs on-demand ({report.Device.Info.Backend.ToString().ToLowerInvariant()})"));
        for (var d = minX; d <= maxX; d++)
        {
            plot.VerticalGridLine(X(Math.Pow(10, d)), FormatMicroseconds(Math.Pow(10, d)));
        }

        for (var d = 0; d >= minY; d--)
        {
            plot.HorizontalGridLine(Y(Math.Pow(10, d)), d == 0 ? "1" : string.Create(c, $"1e{d}"));
        }

        plot.Frame("host latency, submit to completion seen (log)", "fraction of commands slower (log)");
        var svg = plot.Text;
        // Lower left is empty in a tail plot (fast and rare), so the legend goes there.
        var legendY = plot.Height - plot.Bottom - 12 - (18 * (report.Modes.Count - 1));
        for (var k = 0; k < report.Modes.Count; k++)
        {
            var m = report.Modes[k];
            var sorted = m.Samples.Select(s => Math.Max(1.0, s.HostNanoseconds / 1000.0)).Order().ToArray();
            var points = new StringBuilder();
            for (var i = 0; i < sorted.Length; i++)
            {
                // Fraction strictly slower than this sample; the last point sits at 1/n so it stays on the log axis.
                var fraction = Math.Max(1.0 / sorted.Length, (sorted.Length - i - 1.0) / sorted.Length);
                points.Append(c, $"{X(sorted[i]):0.#},{Y(fraction):0.#} ");
            }

            var colour = SvgPlot.Colours[k % SvgPlot.Colours.Length];
            svg.Append(c, $"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{points.ToString().TrimEnd()}\"/>\n");
            svg.Append(c, $"<line x1=\"{plot.Left + 12}\" y1=\"{legendY - 4}\" x2=\"{plot.Left + 37}\" y2=\"{legendY - 4}\" stroke=\"{colour}\" stroke-width=\"3\"/>\n");
            svg.Append(c, $"<text x=\"{plot.Left + 44}\" y=\"{legendY}\">{ModeName(m.Mode)}: p50 {FormatMicroseconds(m.Host.P50 / 1000)}, p99.9 {FormatMicroseconds(m.Host.P999 / 1000)}, {m.Faults} faults</text>\n");
            legendY += 18;
        }

        plot.End(stream);
    }

    /// <summary>The name a continuation mode has on the command line and in the JSON: inline or pool (decision F25).</summary>
    internal static string ContinuationsName(FpgaAccel.Driver.Queues.ContinuationMode mode) =>
        mode == FpgaAccel.Driver.Queues.ContinuationMode.Inline ? "inline" : "pool";

    public static string ModeName(BufferMode mode) => mode == BufferMode.Pinned ? "pinned" : "ondemand";

    public static string FormatMicroseconds(double us) => us switch
    {
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{us / 1_000_000:0.##} s"),
        >= 1000 => string.Create(CultureInfo.InvariantCulture, $"{us / 1000:0.##} ms"),
        >= 1 => string.Create(CultureInfo.InvariantCulture, $"{us:0.##} us"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{us * 1000:0} ns"),
    };

    public static void WriteStats(Utf8JsonWriter w, LatencyStats s)
    {
        w.WriteNumber("count", s.Count);
        w.WriteNumber("min_ns", Math.Round(s.Min));
        w.WriteNumber("p50_ns", Math.Round(s.P50));
        w.WriteNumber("p90_ns", Math.Round(s.P90));
        w.WriteNumber("p99_ns", Math.Round(s.P99));
        w.WriteNumber("p999_ns", Math.Round(s.P999));
        w.WriteNumber("max_ns", Math.Round(s.Max));
        w.WriteNumber("mean_ns", Math.Round(s.Mean));
        w.WriteNumber("stddev_ns", Math.Round(s.StdDev));
    }
}
