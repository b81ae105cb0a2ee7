using System.CommandLine;
using System.Globalization;
using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Queues;
using Spectre.Console;

namespace FpgaAccel.Cli;

/// <summary>
/// <c>fpgaaccel jitter</c>: DMA latency with long-term pinned buffers against on-demand (faulting)
/// buffers, as distributions and tails.
/// </summary>
internal static class JitterCommand
{
    public static Command Create(CommonOptions common, CliIo io)
    {
        var mode = new Option<string>("--mode") { Description = "pinned, ondemand, or both (side by side in one run).", DefaultValueFactory = _ => "both" };
        mode.AcceptOnlyFromAmong("pinned", "ondemand", "both");
        var op = new Option<string>("--op") { Description = "The DMA command measured: copy, fill or crc.", DefaultValueFactory = _ => "copy" };
        op.AcceptOnlyFromAmong("copy", "fill", "crc");
        var size = new Option<ulong>("--size") { Description = $"Bytes per command (1 to {JitterOptions.MaxSize}).", DefaultValueFactory = _ => 16 * 1024 }
            .InRange(1UL, JitterOptions.MaxSize, "the bytes per command");
        var count = new Option<int>("--count") { Description = "Measured commands per mode.", DefaultValueFactory = _ => 4000 }
            .InRange(1, JitterOptions.MaxCount, "the number of measured commands");
        var warmup = new Option<int>("--warmup") { Description = "Unmeasured commands per mode first.", DefaultValueFactory = _ => 400 }
            .InRange(0, JitterOptions.MaxCount, "the number of warm-up commands");
        var budget = new Option<int>("--budget") { Description = "On-demand budget in pages; the working set is twice this, so pages keep faulting.", DefaultValueFactory = _ => 128 }
            .InRange(2, 1 << 24, "the on-demand budget in pages (a COPY stalled on a fault needs 2)");
        var service = new Option<string>("--service") { Description = "Fault service wait: block (eventfd) or adaptive (spin on FQ_TAIL, then block).", DefaultValueFactory = _ => "block" };
        service.AcceptOnlyFromAmong("block", "adaptive");
        var completion = new Option<string>("--completion") { Description = "Completion by interrupt (eventfd) or by polling the PHASE bit.", DefaultValueFactory = _ => "interrupt" };
        completion.AcceptOnlyFromAmong("interrupt", "poll");
        var continuations = new Option<string>("--continuations")
        {
            Description = "Where the client's code after each await runs: inline on the thread that harvested the completion (a run-to-completion client), or on the thread pool (the queue's default).",
            DefaultValueFactory = _ => "inline",
        };
        continuations.AcceptOnlyFromAmong("inline", "pool");
        var faultAround = new Option<int?>("--fault-around") { Description = "On-demand fault-around window in pages: a power of two, 1 (off) to 64 (default: the device's, 16 = 64 KiB)." };
        faultAround.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is { } v && (v < 1 || v > 64 || (v & (v - 1)) != 0))
            {
                r.AddError($"--fault-around {v} is not a power of two from 1 to 64 pages; use 1 to turn fault-around off.");
            }
        });
        var stages = new Option<bool>("--fault-stages") { Description = "Time every step of each fault's service (wake-up, ring, lookup, reserve, pin, install, record, respond, reclaim) and print where the time goes." };
        var prefetch = new Option<bool>("--prefetch") { Description = "On demand: prefetch each command's ranges (OnDemandRegion.Prefetch) right before submitting it; the latency includes the prefetch." };
        var json = new Option<FileInfo?>("--json") { Description = "Write statistics as JSON (schema fpgaaccel-jitter/1, see perf/README.md)." }.FilePath();
        var csv = new Option<FileInfo?>("--csv") { Description = "Write every raw sample as CSV." }.FilePath();
        var svg = new Option<FileInfo?>("--svg") { Description = "Write an SVG plot: the tail plot of both modes' latency distributions, or with --sweep p50, p99 and p99.9 against the swept value." }.FilePath();
        var sweep = new Option<string?>("--sweep")
        {
            Description = "Run once per value of one setting and tabulate p50, p99, p99.9 against it: size=4K..4M, budget=32..512, fault-around=1..64 (doubling from the first value to the last), " +
                "prefetch (off, on), or a list such as size=4K,64K,1M. The swept value replaces --size, --budget, --fault-around or --prefetch.",
        };
        sweep.Validators.Add(r =>
        {
            var text = r.Tokens.Count > 0 ? r.Tokens[^1].Value : null;
            if (text is null)
            {
                return;
            }

            try
            {
                JitterSweep.Parse(text);
            }
            catch (InvalidDeviceOptionException ex)
            {
                r.AddError($"--sweep: {ex.Message}");
            }
        });
        var hgrm = new Option<DirectoryInfo?>("--hgrm") { Description = "Write each mode's host latency distribution as HdrHistogram .hgrm files (microseconds) into this directory (created when missing); one per mode and sweep point." };
        hgrm.Validators.Add(r =>
        {
            var token = r.Tokens.Count > 0 ? r.Tokens[^1].Value : null;
            if (token is not null && (string.IsNullOrWhiteSpace(token) || File.Exists(token)))
            {
                r.AddError($"--hgrm '{token}' is not a directory: give a directory for the .hgrm files (created when missing), not a file.");
            }
        });

        var command = new Command("jitter", "Measure DMA latency with pinned buffers against on-demand (IO-page-faulting) buffers: percentiles, tails, histograms.");
        common.AddTo(command, withJson: false);
        foreach (var o in new Option[] { mode, op, size, count, warmup, budget, service, completion, continuations, faultAround, prefetch, stages, sweep, hgrm, json, csv, svg })
        {
            command.Options.Add(o);
        }

        command.SetAction(result =>
        {
            var options = new JitterOptions
            {
                Operation = result.GetValue(op) switch { "fill" => JitterOperation.Fill, "crc" => JitterOperation.Crc, _ => JitterOperation.Copy },
                Size = result.GetValue(size),
                Count = result.GetValue(count),
                Warmup = result.GetValue(warmup),
                Completion = result.GetValue(completion) == "poll" ? CompletionMode.Poll : CompletionMode.Interrupt,
                Continuations = result.GetValue(continuations) == "pool" ? ContinuationMode.ThreadPool : ContinuationMode.Inline,
                // On the virtual clock a run is meant to be reproducible (D34): reclaim before answering (F3).
                FaultService = new FaultServiceOptions
                {
                    Mode = result.GetValue(service) == "adaptive" ? FaultWaitMode.Adaptive : FaultWaitMode.Block,
                    TraceStages = result.GetValue(stages),
                    ReclaimBeforeAnswer = result.GetValue(common.Clock) == "virtual",
                },
                FaultAroundPages = result.GetValue(faultAround),
                Prefetch = result.GetValue(prefetch),
            };
            var budgetPages = result.GetValue(budget);
            var sweepSpec = result.GetValue(sweep) is { } sweepText ? JitterSweep.Parse(sweepText) : null;

            // Every bad input is refused before any work starts: settings (every sweep point's), then the output files.
            try
            {
                options.Validate(budgetPages);
                for (var i = 0; sweepSpec is not null && i < sweepSpec.Values.Count; i++)
                {
                    sweepSpec.Apply(options, sweepSpec.Values[i]).Validate(sweepSpec.Parameter == SweepParameter.Budget ? (int)sweepSpec.Values[i] : budgetPages);
                }
            }
            catch (FpgaAccelException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Usage;
            }

            var outputs = new List<(FileStream Stream, Action<JitterRunReport, Stream> Write, Action<JitterSweepReport, Stream> WriteSweep)>();
            var hgrmDirectory = result.GetValue(hgrm);
            try
            {
                foreach (var (file, write, writeSweep) in new (FileInfo?, Action<JitterRunReport, Stream>, Action<JitterSweepReport, Stream>)[]
                {
                    (result.GetValue(json), JitterOutputs.WriteJson, JitterSweepOutputs.WriteJson),
                    (result.GetValue(csv), JitterOutputs.WriteCsv, JitterSweepOutputs.WriteCsv),
                    (result.GetValue(svg), JitterOutputs.WriteSvg, JitterSweepOutputs.WriteSvg),
                })
                {
                    if (file is not null)
                    {
                        outputs.Add((OpenOutput(file), write, writeSweep));
                    }
                }

                if (hgrmDirectory is not null)
                {
                    HgrmOutput.Prepare(hgrmDirectory);
                }
            }
            catch (IOException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                outputs.ForEach(o => o.Stream.Dispose());
                return ExitCodes.Usage;
            }

            try
            {
                var modes = result.GetValue(mode) switch
                {
                    "pinned" => new[] { BufferMode.Pinned },
                    "ondemand" => [BufferMode.OnDemand],
                    _ => [BufferMode.Pinned, BufferMode.OnDemand],
                };
                return CliRunner.Run(result, common, io, o => o with { OnDemandBudgetPages = budgetPages }, (device, _, output) =>
                {
                    if (sweepSpec is not null)
                    {
                        var sweepReport = MeasureSweep(device, sweepSpec, options, budgetPages, result.GetValue(service)!, modes, output);
                        foreach (var (stream, _, writeSweep) in outputs)
                        {
                            writeSweep(sweepReport, stream);
                            output.WriteLine($"wrote {stream.Name}");
                        }

                        foreach (var point in sweepReport.Points)
                        {
                            foreach (var m in point.Modes)
                            {
                                WriteHgrm(hgrmDirectory, m, sweepSpec, point.Value, output);
                            }
                        }

                        return sweepReport.Points.SelectMany(p => p.Modes).All(m => m.NonOk == 0) ? ExitCodes.Ok : ExitCodes.Failed;
                    }

                    var report = Measure(device, options, budgetPages, result.GetValue(service)!, modes, output);
                    foreach (var (stream, write, _) in outputs)
                    {
                        write(report, stream);
                        output.WriteLine($"wrote {stream.Name}");
                    }

                    foreach (var m in report.Modes)
                    {
                        WriteHgrm(hgrmDirectory, m, null, 0, output);
                    }

                    return report.Modes.All(m => m.NonOk == 0) ? ExitCodes.Ok : ExitCodes.Failed;
                });
            }
            finally
            {
                outputs.ForEach(o => o.Stream.Dispose());
            }
        });
        return command;
    }

    private static void WriteHgrm(DirectoryInfo? directory, JitterModeResult result, JitterSweep? sweep, long value, TextWriter output)
    {
        if (directory is null)
        {
            return;
        }

        var path = Path.Combine(directory.FullName, HgrmOutput.FileName(result.Mode, sweep, value));
        HgrmOutput.Write(result, path);
        output.WriteLine($"wrote {path}");
    }

    private static FileStream OpenOutput(FileInfo file)
    {
        try
        {
            return new FileStream(file.FullName, FileMode.Create, FileAccess.Write, FileShare.Read);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException or NotSupportedException)
        {
            throw new IOException($"Cannot write '{file.FullName}': {ex.Message} Choose a path in a directory you can write to.", ex);
        }
    }

    private static JitterRunReport Measure(FpgaDevice device, JitterOptions options, int budget, string service, BufferMode[] modes, TextWriter output)
    {
        var console = CreateConsole(output);
        var results = new List<JitterModeResult>();
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                foreach (var m in modes)
                {
                    var task = ctx.AddTask(JitterOutputs.ModeName(m), maxValue: options.Count);
                    var progress = new Progress<int>(v => task.Value = v);
                    results.Add(Jitter.RunAsync(device, m, options, progress).GetAwaiter().GetResult());
                    task.Value = options.Count;
                }
            });

        // The wake-up floor of this machine, now: the fault service's time is read against it (issue 15).
        var floor = results.Any(r => r.FaultService is not null) ? WakeupFloor.Measure() : null;
        var report = new JitterRunReport(device, options, budget, service, results) { WakeupFloor = floor, StageTimes = device.Faults?.StageTimes ?? [] };
        Render(console, report);
        return report;
    }

    private static JitterSweepReport MeasureSweep(FpgaDevice device, JitterSweep sweep, JitterOptions options, int budget, string service, BufferMode[] modes, TextWriter output)
    {
        var console = CreateConsole(output);
        IReadOnlyList<JitterSweepPoint> points = [];
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask($"sweep {sweep.Name}", maxValue: sweep.Values.Count * modes.Length);
                var done = 0;
                var progress = new Progress<(int Point, BufferMode Mode)>(p =>
                {
                    task.Description = $"{sweep.Name}={sweep.Format(sweep.Values[p.Point])} {JitterOutputs.ModeName(p.Mode)}";
                    task.Value = done++;
                });
                points = Jitter.SweepAsync(device, sweep, options, modes, progress).GetAwaiter().GetResult();
                task.Value = task.MaxValue;
            });

        var report = new JitterSweepReport(device, sweep, options, budget, service, points);
        JitterSweepOutputs.Render(console, report);
        return report;
    }

    private static IAnsiConsole CreateConsole(TextWriter output)
    {
        // Colours and live progress only on a terminal; logs and files get plain text, wide enough for the table.
        var terminal = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = terminal ? InteractionSupport.Detect : InteractionSupport.No,
        });
        console.Profile.Width = Math.Max(console.Profile.Width, 132);
        return console;
    }

    private static void Render(IAnsiConsole console, JitterRunReport report)
    {
        var o = report.Options;
        console.MarkupLine(Markup.Escape($"{o.Operation.ToString().ToLowerInvariant()} of {o.Size} bytes, {o.Count} commands per mode after {o.Warmup} warm-up, " +
            $"budget {report.Budget} pages, {report.Service} fault service, {o.Completion.ToString().ToLowerInvariant()} completions, {JitterOutputs.ContinuationsName(o.Continuations)} continuations, on {report.Device.Info.BackendDescription}"));
        console.MarkupLine(Markup.Escape($"percentiles: {LatencyStats.Method}"));

        foreach (var (title, pick) in new (string, Func<JitterModeResult, LatencyStats>)[] { ("host latency (submit to completion seen)", m => m.Host), ("device time (end - start cycle)", m => m.Device) })
        {
            var table = new Table().Title(title).AddColumns("mode", "count", "min", "p50", "p90", "p99", "p99.9", "max", "stddev", "faults", "faults/cmd", "evictions");
            foreach (var m in report.Modes)
            {
                var s = pick(m);
                table.AddRow(JitterOutputs.ModeName(m.Mode), s.Count.ToString(CultureInfo.InvariantCulture), Us(s.Min), Us(s.P50), Us(s.P90), Us(s.P99), Us(s.P999), Us(s.Max), Us(s.StdDev),
                    m.Faults.ToString(CultureInfo.InvariantCulture), m.FaultsPerCommand.ToString("0.##", CultureInfo.InvariantCulture), m.Evictions.ToString(CultureInfo.InvariantCulture));
            }

            console.Write(table);
        }

        if (report.TailRatio is { } ratio)
        {
            console.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture, $"tail ratio, on-demand p99.9 / pinned p99.9: {ratio:0.00}")));
            var p50 = report.Modes.First(m => m.Mode == BufferMode.OnDemand).Host.P50 / Math.Max(1, report.Modes.First(m => m.Mode == BufferMode.Pinned).Host.P50);
            console.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture, $"p50 ratio, on-demand / pinned: {p50:0.00}")));
        }

        if (report.StageTimes.Count > 0)
        {
            var table = new Table().Title("where the fault service time goes (per fault; reclaim per batch)").AddColumns("step", "count", "p50", "p99", "mean");
            foreach (var s in report.StageTimes)
            {
                table.AddRow(s.Stage.ToString().ToLowerInvariant(), s.Count.ToString(CultureInfo.InvariantCulture), JitterOutputs.FormatMicroseconds(s.P50Microseconds),
                    JitterOutputs.FormatMicroseconds(s.P99Microseconds), JitterOutputs.FormatMicroseconds(s.MeanMicroseconds));
            }

            console.Write(table);
        }

        if (report.WakeupFloor is { } floor)
        {
            console.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"eventfd wake-up floor (write to epoll_wait return on another thread), {floor.Count} wake-ups: p50 {Us(floor.P50)}, p99 {Us(floor.P99)}; fault service p50 / floor p50: {report.ServiceToFloor:0.00}")));
        }

        foreach (var m in report.Modes)
        {
            console.MarkupLine(Markup.Escape($"{JitterOutputs.ModeName(m.Mode)}: GC collections during the measured phase gen0 {m.Gen0}, gen1 {m.Gen1}, gen2 {m.Gen2}; " +
                $"{m.AllocatedBytes / Math.Max(1, m.Samples.Length)} bytes allocated per command (all threads)" + (m.NonOk > 0 ? $"; {m.NonOk} commands did not complete OK" : string.Empty)));
            if (m.FaultService is { } fs)
            {
                console.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                    $"{JitterOutputs.ModeName(m.Mode)}: fault service time (record's device cycle to response sent), {fs.Count} faults: p50 {Us(fs.P50)}, p99 {Us(fs.P99)}, p99.9 {Us(fs.P999)}, max {Us(fs.Max)}; " +
                    $"{m.ServiceBytesPerFault:0.##} bytes allocated per fault on the service thread")));
            }

            if (m.Paging is { } p)
            {
                console.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                    $"{JitterOutputs.ModeName(m.Mode)}: fault-around {p.FaultAroundPages} pages ({p.FaultAroundMapped} mapped around faults), prefetch {(p.Prefetch ? "on" : "off")} ({p.PrefetchedPages} pages); " +
                    $"{m.Evictions} evictions in {p.EvictionBatches} batches with {p.EvictionFences} fences ({(p.EvictionFences == 0 ? 0 : (double)m.Evictions / p.EvictionFences):0.#} pages per fence), {p.DirectReclaims} on a fault's path")));
            }

            console.Write(Histogram(m));
        }
    }

    // Log-spaced buckets, four per decade, over the mode's own range.
    private static BarChart Histogram(JitterModeResult m)
    {
        var chart = new BarChart().Width(70).Label($"{JitterOutputs.ModeName(m.Mode)}: host latency histogram (log buckets)");
        var values = m.Samples.Select(s => Math.Max(1.0, s.HostNanoseconds / 1000.0)).ToArray();
        if (values.Length == 0)
        {
            return chart;
        }

        var low = Math.Floor(Math.Log10(values.Min()) * 4) / 4;
        var high = Math.Ceiling(Math.Log10(values.Max()) * 4) / 4;
        var buckets = Math.Max(1, (int)Math.Round((high - low) * 4));
        var counts = new int[buckets];
        foreach (var v in values)
        {
            counts[Math.Clamp((int)((Math.Log10(v) - low) * 4), 0, buckets - 1)]++;
        }

        for (var i = 0; i < buckets; i++)
        {
            chart.AddItem("< " + JitterOutputs.FormatMicroseconds(Math.Pow(10, low + ((i + 1) / 4.0))), counts[i], m.Mode == BufferMode.Pinned ? Color.SteelBlue : Color.Red);
        }

        return chart;
    }

    private static string Us(double ns) => JitterOutputs.FormatMicroseconds(ns / 1000);
}
