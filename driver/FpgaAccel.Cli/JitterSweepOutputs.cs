using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using Spectre.Console;

namespace FpgaAccel.Cli;

/// <summary>What one jitter sweep measured, for the writers.</summary>
internal sealed record JitterSweepReport(FpgaDevice Device, JitterSweep Sweep, JitterOptions Options, int Budget, string Service, IReadOnlyList<JitterSweepPoint> Points)
{
    /// <summary>The modes measured, in the order they ran.</summary>
    public IReadOnlyList<BufferMode> Modes => Points.Count == 0 ? [] : Points[0].Modes.Select(m => m.Mode).ToArray();
}

/// <summary>
/// A sweep's outputs: one table and one plot of p50, p99 and p99.9 against the swept value for every mode
/// (decision F7); JSON (schema <c>fpgaaccel-jitter-sweep/1</c>, perf/README.md) and raw CSV with the swept value per row.
/// </summary>
internal static class JitterSweepOutputs
{
    public const string Schema = "fpgaaccel-jitter-sweep/1";

    private static readonly (string Name, Func<LatencyStats, double> Pick, string Dash)[] s_percentiles =
    [
        ("p50", s => s.P50, string.Empty),
        ("p99", s => s.P99, "8 4"),
        ("p99.9", s => s.P999, "2 3"),
    ];

    public static void Render(IAnsiConsole console, JitterSweepReport report)
    {
        var o = report.Options;
        console.MarkupLine(Markup.Escape($"sweep of {report.Sweep.Name} over {report.Points.Count} points: {o.Operation.ToString().ToLowerInvariant()}" +
            (report.Sweep.Parameter == SweepParameter.Size ? string.Empty : $" of {o.Size} bytes") + $", {o.Count} commands per mode and point after {o.Warmup} warm-up" +
            (report.Sweep.Parameter == SweepParameter.Budget ? string.Empty : $", budget {report.Budget} pages") + $", {report.Service} fault service, on {report.Device.Info.BackendDescription}"));
        console.MarkupLine(Markup.Escape($"host latency (submit to completion seen); percentiles: {LatencyStats.Method}"));
        // Eight to eleven columns: wider than the single-run tables, so headers are not wrapped in a log or a file.
        console.Profile.Width = Math.Max(console.Profile.Width, 180);
        var table = new Table().Title($"p50, p99, p99.9 against {report.Sweep.Name}").AddColumn(report.Sweep.Name);
        foreach (var mode in report.Modes)
        {
            var name = JitterOutputs.ModeName(mode);
            table.AddColumns($"{name} p50", $"{name} p99", $"{name} p99.9");
            if (mode == BufferMode.OnDemand)
            {
                table.AddColumns("faults/cmd", "evictions/fence");
            }
        }

        var both = report.Modes.Count == 2;
        if (both)
        {
            table.AddColumn("p50 ratio");
        }

        foreach (var point in report.Points)
        {
            var row = new List<string> { report.Sweep.Format(point.Value) };
            foreach (var m in point.Modes)
            {
                row.AddRange(s_percentiles.Select(p => Us(p.Pick(m.Host))));
                if (m.Mode == BufferMode.OnDemand)
                {
                    row.Add(m.FaultsPerCommand.ToString("0.##", CultureInfo.InvariantCulture));
                    row.Add(m.Paging is { EvictionFences: > 0 } p ? ((double)m.Evictions / p.EvictionFences).ToString("0.#", CultureInfo.InvariantCulture) : "-");
                }
            }

            if (both)
            {
                row.Add((point.Modes[1].Host.P50 / Math.Max(1, point.Modes[0].Host.P50)).ToString("0.00", CultureInfo.InvariantCulture));
            }

            table.AddRow(row.ToArray());
        }

        console.Write(table);
    }

    public static void WriteJson(JitterSweepReport report, Stream stream)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("schema", Schema);
        w.WriteString("percentiles", LatencyStats.Method);
        w.WriteString("swept", report.Sweep.Name);
        w.WriteStartObject("parameters");
        w.WriteString("backend", report.Device.Info.Backend.ToString().ToLowerInvariant());
        w.WriteString("backend_description", report.Device.Info.BackendDescription);
        w.WriteString("op", report.Options.Operation.ToString().ToLowerInvariant());
        w.WriteNumber("count", report.Options.Count);
        w.WriteNumber("warmup", report.Options.Warmup);
        w.WriteString("service", report.Service);
        w.WriteString("completion", report.Options.Completion.ToString().ToLowerInvariant());
        w.WriteString("continuations", JitterOutputs.ContinuationsName(report.Options.Continuations));
        w.WriteNumber("clock_hz", report.Device.Info.ClockHz);
        w.WriteEndObject();
        w.WriteStartObject("machine");
        w.WriteString("host", Environment.MachineName);
        w.WriteNumber("cpus", Environment.ProcessorCount);
        w.WriteString("os", RuntimeInformation.OSDescription);
        w.WriteString("runtime", RuntimeInformation.FrameworkDescription);
        w.WriteString("timestamp", DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture));
        w.WriteEndObject();
        w.WriteStartArray("points");
        foreach (var point in report.Points)
        {
            w.WriteStartObject();
            w.WriteNumber("value", point.Value);
            w.WriteString("label", report.Sweep.Format(point.Value));
            w.WriteNumber("size", point.Options.Size);
            w.WriteNumber("budget_pages", report.Sweep.Parameter == SweepParameter.Budget ? point.Value : report.Budget);
            var around = point.Modes.Select(m => m.Paging?.FaultAroundPages).FirstOrDefault(a => a is not null) ?? point.Options.FaultAroundPages;
            if (around is { } a)
            {
                w.WriteNumber("fault_around_pages", a);
            }
            else
            {
                w.WriteNull("fault_around_pages");
            }

            w.WriteBoolean("prefetch", point.Options.Prefetch);
            w.WriteStartObject("modes");
            foreach (var m in point.Modes)
            {
                w.WriteStartObject(JitterOutputs.ModeName(m.Mode));
                JitterOutputs.WriteStats(w, m.Host);
                w.WriteNumber("faults_per_command", Math.Round(m.FaultsPerCommand, 4));
                w.WriteNumber("evictions", m.Evictions);
                w.WriteNumber("not_ok", m.NonOk);
                if (m.Paging is { } p)
                {
                    w.WriteNumber("eviction_fences", p.EvictionFences);
                }

                w.WriteEndObject();
            }

            w.WriteEndObject();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    public static void WriteCsv(JitterSweepReport report, Stream stream)
    {
        using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
        var nsPerCycle = 1e9 / report.Device.Info.ClockHz;
        w.WriteLine($"{report.Sweep.Name},mode,index,host_ns,device_start_cycle,device_end_cycle,device_ns,faults,status");
        foreach (var point in report.Points)
        {
            var prefix = string.Create(CultureInfo.InvariantCulture, $"{point.Value},");
            foreach (var m in point.Modes)
            {
                JitterOutputs.WriteSampleRows(w, prefix, m, nsPerCycle);
            }
        }
    }

    /// <summary>
    /// p50, p99 and p99.9 of host latency (y, log) against the swept value (x: log for sizes, budgets and windows, two
    /// evenly spaced points for prefetch off and on); a colour per mode, a dash pattern per percentile.
    /// </summary>
    public static void WriteSvg(JitterSweepReport report, Stream stream)
    {
        var plot = new SvgPlot(width: 860, height: 520, left: 80, right: 190, top: 50, bottom: 60);
        var points = report.Points;
        var categorical = report.Sweep.Parameter == SweepParameter.Prefetch || points.Count == 1;
        var xs = points.Select((p, i) => categorical ? i : Math.Log2(p.Value)).ToArray();
        var (minX, maxX) = (xs.Min() - (categorical ? 0.5 : 0), xs.Max() + (categorical ? 0.5 : 0));
        if (maxX <= minX)
        {
            maxX = minX + 1;
        }

        var all = points.SelectMany(p => p.Modes).SelectMany(m => s_percentiles.Select(q => Math.Max(1.0, q.Pick(m.Host) / 1000.0))).ToArray();
        var minY = Math.Floor(Math.Log10(all.Length == 0 ? 1 : all.Min()));
        var maxY = Math.Ceiling(Math.Log10(all.Length == 0 ? 10 : all.Max()));
        if (maxY <= minY)
        {
            maxY = minY + 1;
        }

        double X(double v) => plot.Left + ((v - minX) / (maxX - minX) * (plot.Width - plot.Left - plot.Right));
        double Y(double us) => plot.Height - plot.Bottom - ((Math.Log10(us) - minY) / (maxY - minY) * (plot.Height - plot.Top - plot.Bottom));
        var c = CultureInfo.InvariantCulture;
        var right = plot.Width - plot.Right;
        plot.Begin((plot.Left + right) / 2, string.Create(c, $"FA-1 {report.Options.Operation.ToString().ToLowerInvariant()}: host latency against {report.Sweep.Name} ({report.Device.Info.Backend.ToString().ToLowerInvariant()})"));
        for (var d = minY; d <= maxY; d++)
        {
            plot.HorizontalGridLine(Y(Math.Pow(10, d)), JitterOutputs.FormatMicroseconds(Math.Pow(10, d)));
        }

        for (var i = 0; i < points.Count; i++)
        {
            plot.VerticalGridLine(X(xs[i]), report.Sweep.Format(points[i].Value), stroke: "#eee");
        }

        plot.Frame(report.Sweep.Name + (categorical ? string.Empty : " (log)"), "host latency, submit to completion seen (log)");
        var svg = plot.Text;
        var legendY = plot.Top + 10;
        var modes = report.Modes;
        for (var k = 0; k < modes.Count; k++)
        {
            var colour = SvgPlot.Colours[k % SvgPlot.Colours.Length];
            foreach (var (name, pick, dash) in s_percentiles)
            {
                var line = new StringBuilder();
                for (var i = 0; i < points.Count; i++)
                {
                    var v = Math.Max(1.0, pick(points[i].Modes[k].Host) / 1000.0);
                    line.Append(c, $"{X(xs[i]):0.#},{Y(v):0.#} ");
                    svg.Append(c, $"<circle cx=\"{X(xs[i]):0.#}\" cy=\"{Y(v):0.#}\" r=\"3\" fill=\"{colour}\"/>\n");
                }

                var dashAttribute = dash.Length == 0 ? string.Empty : $" stroke-dasharray=\"{dash}\"";
                svg.Append(c, $"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dashAttribute} points=\"{line.ToString().TrimEnd()}\"/>\n");
                svg.Append(c, $"<line x1=\"{right + 12}\" y1=\"{legendY - 4}\" x2=\"{right + 42}\" y2=\"{legendY - 4}\" stroke=\"{colour}\" stroke-width=\"2\"{dashAttribute}/>\n");
                svg.Append(c, $"<text x=\"{right + 48}\" y=\"{legendY}\">{JitterOutputs.ModeName(modes[k])} {name}</text>\n");
                legendY += 18;
            }
        }

        plot.End(stream);
    }

    private static string Us(double ns) => JitterOutputs.FormatMicroseconds(ns / 1000);
}
