using System.CommandLine;
using System.Text.Json;
using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Faults;

namespace FpgaAccel.Cli;

/// <summary><c>fpgaaccel stress</c>: concurrent register/unregister/pin/unpin under DMA and faults, with the model's oracle.</summary>
internal static class StressCommand
{
    public static Command Create(CommonOptions common, CliIo io)
    {
        var seconds = new Option<double>("--seconds") { Description = "How long to run.", DefaultValueFactory = _ => 10 }.Seconds(86_400);
        var seed = new Option<int>("--seed") { Description = "Seed for every random choice (the model's too).", DefaultValueFactory = _ => 1 };
        var threads = new Option<int>("--threads") { Description = "Worker threads.", DefaultValueFactory = _ => 2 }.InRange(1, 64, "the number of threads");
        var budget = new Option<int>("--budget") { Description = "On-demand budget in pages (small: more evictions).", DefaultValueFactory = _ => 48 }
            .InRange(2, 1 << 24, "the on-demand budget in pages (2 per queue at least)");
        var service = new Option<string>("--service") { Description = "Fault service wait: block or adaptive.", DefaultValueFactory = _ => "block" };
        service.AcceptOnlyFromAmong("block", "adaptive");
        var inject = new Option<string?>("--inject")
        {
            Description = "Issue 12: inject device failures (comma-separated: loss, hang, lost-irq, fatal, garbage) on a seeded schedule under traffic, " +
                "recover after each, verify every byte; reports injections, recoveries and the time to release every waiter. Needs --backend model.",
        };
        inject.Validators.Add(r =>
        {
            var value = r.Tokens.Count > 0 ? r.Tokens[^1].Value : null;
            try
            {
                RecoveryStressOptions.ParseKinds(value);
            }
            catch (InvalidInjectionException ex)
            {
                r.AddError(ex.Message);
            }
        });
        var devices = new Option<int>("--devices")
        {
            Description = "Issue 15: open this many devices and attach them to one address space; each round pins and registers once, copies on every device, " +
                "removes with one batched removal and checks every device faults on the removed range; every oracle counter of every device is reported.",
            DefaultValueFactory = _ => 1,
        }.InRange(1, 4, "the number of devices attached to one address space");
        var command = new Command("stress", "Threads register, unregister, pin and unpin regions while queues copy through them and faults are serviced; " +
            "prints operations, faults, aborts, evictions and the model's oracle counters. Exits 1 if any invariant failed.");
        common.AddTo(command);
        command.Options.Add(seconds);
        command.Options.Add(seed);
        command.Options.Add(threads);
        command.Options.Add(budget);
        command.Options.Add(service);
        command.Options.Add(inject);
        command.Options.Add(devices);
        command.SetAction(result => result.GetValue(inject) is { } kinds
            ? RunInjections(result, common, io, RecoveryStressOptions.ParseKinds(kinds), result.GetValue(seconds), result.GetValue(seed))
            : result.GetValue(devices) > 1
            ? RunMirror(result, common, io, result.GetValue(devices), result.GetValue(seconds), result.GetValue(seed), result.GetValue(budget))
            : CliRunner.Run(result, common, io, options => options with
            {
                OnDemandBudgetPages = result.GetValue(budget),
                Model = options.Model with { Seed = result.GetValue(seed) },
            }, (device, json, output) =>
            {
                var stress = new StressOptions
                {
                    Duration = TimeSpan.FromSeconds(result.GetValue(seconds)),
                    Seed = result.GetValue(seed),
                    Threads = result.GetValue(threads),
                    FaultService = new FaultServiceOptions { Mode = result.GetValue(service) == "adaptive" ? FaultWaitMode.Adaptive : FaultWaitMode.Block },
                };
                var report = StressTest.RunAsync(device, stress, json ? null : line => output.WriteLine(line)).GetAwaiter().GetResult();
                if (json)
                {
                    WriteJson(report, output);
                }
                else
                {
                    WriteText(report, output);
                }

                return report.Passed ? ExitCodes.Ok : ExitCodes.Failed;
            }));
        return command;
    }

    private static int RunMirror(System.CommandLine.ParseResult result, CommonOptions common, CliIo io, int count, double seconds, int seed, int budget)
    {
        FpgaDeviceOptions? opened = null;
        return CliRunner.Run(result, common, io, options => opened = options with { OnDemandBudgetPages = budget, Model = options.Model with { Seed = seed } }, (device, json, output) =>
        {
            var devices = new List<FpgaDevice> { device };
            try
            {
                for (var i = 1; i < count; i++)
                {
                    devices.Add(FpgaDevice.Open(opened!));
                }

                var report = MirrorStress.RunAsync(devices, TimeSpan.FromSeconds(seconds), seed, json ? null : line => output.WriteLine(line)).GetAwaiter().GetResult();
                if (json)
                {
                    WriteJson(report, output);
                }
                else
                {
                    output.WriteLine($"devices           {devices.Count} attached to one address space");
                    output.WriteLine($"rounds            {report.Rounds} ({report.Removals} batched removals, {report.VerifiedCopies} copies verified, {report.DataErrors} data errors)");
                    output.WriteLine($"after removal     {report.ReachedAfterRemoval} DMAs reached a removed range; {report.UnexpectedStatus} unexpected statuses");
                    for (var i = 0; i < report.Devices.Count; i++)
                    {
                        var d = report.Devices[i];
                        var o = d.Oracle;
                        output.WriteLine($"device {i}          {d.Commands} commands, {d.Faults} faults, {d.Audits} audits ({d.AuditViolations} violations); oracle: " +
                            (o is null ? "n/a (no model oracle)" : $"stale_accesses {o.StaleAccesses}, lost_faults {o.LostFaults}, freed_memory_accesses {o.FreedMemoryAccesses}, dropin_mismatches {o.DropinMismatches}, audit_violations {o.AuditViolations}, bad_ring_head_writes {o.BadRingHeadWrites}"));
                    }

                    output.WriteLine(report.Passed ? "PASS" : "FAIL");
                }

                return report.Passed ? ExitCodes.Ok : ExitCodes.Failed;
            }
            finally
            {
                foreach (var extra in devices.Skip(1))
                {
                    extra.Dispose();
                }
            }
        });
    }

    private static void WriteJson(MirrorStressReport r, TextWriter output)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteBoolean("passed", r.Passed);
            w.WriteNumber("devices_attached", r.Devices.Count);
            w.WriteNumber("rounds", r.Rounds);
            w.WriteNumber("removals", r.Removals);
            w.WriteNumber("verified_copies", r.VerifiedCopies);
            w.WriteNumber("data_errors", r.DataErrors);
            w.WriteNumber("reached_after_removal", r.ReachedAfterRemoval);
            w.WriteNumber("unexpected_status", r.UnexpectedStatus);
            w.WriteStartArray("devices");
            foreach (var d in r.Devices)
            {
                w.WriteStartObject();
                w.WriteString("device", d.Description);
                w.WriteNumber("commands", d.Commands);
                w.WriteNumber("faults", d.Faults);
                w.WriteNumber("audits", d.Audits);
                w.WriteNumber("audit_violations_found", d.AuditViolations);
                if (d.Oracle is { } o)
                {
                    w.WriteStartObject("oracle");
                    w.WriteNumber("data_accesses", o.DataAccesses);
                    w.WriteNumber("stale_accesses", o.StaleAccesses);
                    w.WriteNumber("faults_raised", o.FaultsRaised);
                    w.WriteNumber("lost_faults", o.LostFaults);
                    w.WriteNumber("freed_memory_accesses", o.FreedMemoryAccesses);
                    w.WriteNumber("dropin_mismatches", o.DropinMismatches);
                    w.WriteNumber("audit_violations", o.AuditViolations);
                    w.WriteNumber("bad_ring_head_writes", o.BadRingHeadWrites);
                    w.WriteEndObject();
                }
                else
                {
                    w.WriteNull("oracle");
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }

    private static int RunInjections(System.CommandLine.ParseResult result, CommonOptions common, CliIo io, IReadOnlyList<InjectionKind> kinds, double seconds, int seed) =>
        CliRunner.Run(result, common, io, options => RecoveryStress.Configure(options with { Model = options.Model with { Seed = seed } }), (device, json, output) =>
        {
            var report = RecoveryStress.RunAsync(device, new RecoveryStressOptions { Duration = TimeSpan.FromSeconds(seconds), Seed = seed, Kinds = kinds },
                json ? null : line => output.WriteLine(line)).GetAwaiter().GetResult();
            if (json)
            {
                WriteJson(report, output);
            }
            else
            {
                output.WriteLine($"injections        {report.Injections} ({string.Join(", ", report.InjectionsByKind.Select(k => $"{k.Key} {k.Value}"))})");
                output.WriteLine($"recoveries        {report.Recoveries} ({report.Resets} by reset)");
                output.WriteLine($"commands          {report.Commands} verified ({report.BytesVerified} bytes), {report.DataErrors} data errors");
                output.WriteLine($"failed commands   {string.Join(", ", report.FailedCommands.Select(k => $"{k.Key} {k.Value}"))}");
                output.WriteLine($"release           p50 {report.ReleaseP50Ms:0.0} ms, max {report.ReleaseMaxMs:0.0} ms ({report.ReleaseMaxKind})");
                output.WriteLine($"health check      {report.CompletionsFoundByHealthCheck} completions found (lost interrupts); {report.UnexpectedFailures} unexpected failures");
                output.WriteLine(report.Passed ? "PASS" : "FAIL: " + string.Join("; ", report.Failures));
            }

            return report.Passed ? ExitCodes.Ok : ExitCodes.Failed;
        });

    private static void WriteJson(RecoveryStressReport r, TextWriter output)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteBoolean("passed", r.Passed);
            w.WriteNumber("injections", r.Injections);
            WriteCounts(w, "injections_by_kind", r.InjectionsByKind);
            w.WriteNumber("recoveries", r.Recoveries);
            w.WriteNumber("resets", r.Resets);
            w.WriteNumber("commands_verified", r.Commands);
            w.WriteNumber("bytes_verified", r.BytesVerified);
            w.WriteNumber("data_errors", r.DataErrors);
            WriteCounts(w, "failed_commands", r.FailedCommands);
            w.WriteNumber("release_p50_ms", Math.Round(r.ReleaseP50Ms, 2));
            w.WriteNumber("release_max_ms", Math.Round(r.ReleaseMaxMs, 2));
            w.WriteString("release_max_kind", r.ReleaseMaxKind);
            w.WriteNumber("completions_found_by_health_check", r.CompletionsFoundByHealthCheck);
            w.WriteNumber("unexpected_failures", r.UnexpectedFailures);
            w.WriteStartArray("failures");
            foreach (var f in r.Failures)
            {
                w.WriteStringValue(f);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }

    private static void WriteText(StressReport r, TextWriter output)
    {
        static string Oracle(long? v) => v?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "n/a (no model oracle)";
        output.WriteLine($"operations        {r.Operations}");
        output.WriteLine($"commands          {r.Commands} ({r.VerifiedCopies} results verified)");
        output.WriteLine($"faults            {r.Faults} ({r.Dropins} dropins, {r.Aborts} aborts, {r.FaultFailures} failed and aborted)");
        output.WriteLine($"evictions         {r.Evictions} (budgets visited {r.BudgetsVisited}, down to {r.MinimumBudget} pages; {r.OverBudget} over budget)");
        output.WriteLine($"scenarios         {r.Scenarios} ({string.Join(", ", r.ScenarioKinds.Select(k => $"{k.Key} {k.Value}"))})");
        output.WriteLine($"interleavings     {r.Interleavings} distinct ({r.SchedulePoints} schedule points reached)");
        output.WriteLine($"service restarts  {r.FaultServiceRestarts}; pin-limit faults {r.PinLimitFaults} ({r.LimitEvictions} pages given back at the limit); audits {r.Audits}");
        output.WriteLine($"stale accesses    {Oracle(r.StaleAccesses)}");
        output.WriteLine($"lost faults       {Oracle(r.LostFaults)}");
        output.WriteLine($"freed-memory DMA  {Oracle(r.FreedMemoryAccesses)}");
        output.WriteLine($"dropin mismatches {Oracle(r.DropinMismatches)}");
        output.WriteLine($"audit violations  {Oracle(r.AuditViolations)}");
        output.WriteLine($"bad ring heads    {Oracle(r.BadRingHeadWrites)}");
        output.WriteLine($"bad completions   {r.BadCompletions}; phase glitches {r.PhaseGlitches}");
        output.WriteLine($"deadlocks         {r.Deadlocks}");
        output.WriteLine(r.Passed ? "PASS: every invariant held" : "FAIL: " + string.Join("; ", r.Failures));
    }

    private static void WriteJson(StressReport r, TextWriter output)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteBoolean("passed", r.Passed);
            w.WriteNumber("operations", r.Operations);
            w.WriteNumber("commands", r.Commands);
            w.WriteNumber("verified_copies", r.VerifiedCopies);
            w.WriteNumber("data_errors", r.DataErrors);
            w.WriteNumber("unexpected_status", r.UnexpectedStatus);
            w.WriteNumber("faults", r.Faults);
            w.WriteNumber("dropins", r.Dropins);
            w.WriteNumber("aborts", r.Aborts);
            w.WriteNumber("fault_failures", r.FaultFailures);
            w.WriteNumber("evictions", r.Evictions);
            w.WriteNumber("over_budget", r.OverBudget);
            w.WriteNumber("budgets_visited", r.BudgetsVisited);
            w.WriteNumber("minimum_budget", r.MinimumBudget);
            w.WriteNumber("scenarios", r.Scenarios);
            WriteCounts(w, "scenario_kinds", r.ScenarioKinds);
            w.WriteNumber("interleavings", r.Interleavings);
            w.WriteNumber("schedule_points", r.SchedulePoints);
            w.WriteNumber("fault_service_restarts", r.FaultServiceRestarts);
            w.WriteNumber("pin_limit_faults", r.PinLimitFaults);
            w.WriteNumber("limit_evictions", r.LimitEvictions);
            w.WriteNumber("audits", r.Audits);
            w.WriteNumber("bad_completions", r.BadCompletions);
            w.WriteNumber("phase_glitches", r.PhaseGlitches);
            w.WriteStartObject("oracle");
            WriteNullable(w, "stale_accesses", r.StaleAccesses);
            WriteNullable(w, "lost_faults", r.LostFaults);
            WriteNullable(w, "freed_memory_accesses", r.FreedMemoryAccesses);
            WriteNullable(w, "dropin_mismatches", r.DropinMismatches);
            WriteNullable(w, "audit_violations", r.AuditViolations);
            WriteNullable(w, "bad_ring_head_writes", r.BadRingHeadWrites);
            w.WriteEndObject();
            WriteNullable(w, "stale_accesses", r.StaleAccesses);
            WriteNullable(w, "lost_faults", r.LostFaults);
            w.WriteNumber("deadlocks", r.Deadlocks);
            w.WriteBoolean("fault_service_alive", r.FaultServiceAlive);
            w.WriteStartArray("failures");
            foreach (var f in r.Failures)
            {
                w.WriteStringValue(f);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }

    private static void WriteNullable(Utf8JsonWriter w, string name, long? value)
    {
        if (value is { } v)
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    // A name → count table as one JSON object.
    private static void WriteCounts(Utf8JsonWriter w, string name, IEnumerable<KeyValuePair<string, long>> counts)
    {
        w.WriteStartObject(name);
        foreach (var (kind, count) in counts)
        {
            w.WriteNumber(kind, count);
        }

        w.WriteEndObject();
    }
}
