using System.CommandLine;
using System.Text.Json;
using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;

namespace FpgaAccel.Cli;

/// <summary><c>fpgaaccel selftest</c>: liveness, then COPY, FILL and CRC32C against the CPU.</summary>
internal static class SelfTestCommand
{
    public static Command Create(CommonOptions common, CliIo io)
    {
        var seed = new Option<int>("--seed") { Description = "Seed for the test data.", DefaultValueFactory = _ => 1 };
        var command = new Command("selftest", "Check the device end to end: SCRATCH liveness, then COPY, FILL and CRC32C checked against the CPU " +
            "across sizes from 1 byte to 8 MiB, unaligned offsets and 4 KiB / 2 MiB boundaries. Exits 1 on any failure.");
        common.AddTo(command);
        command.Options.Add(seed);
        command.SetAction(result => CliRunner.Run(result, common, io, (device, json, output) =>
        {
            var report = SelfTest.RunAsync(device, result.GetValue(seed), json ? null : c => WriteLine(output, c)).GetAwaiter().GetResult();
            if (json)
            {
                WriteJson(device, report, output);
            }
            else
            {
                if (report.Note is not null)
                {
                    output.WriteLine($"note: {report.Note}");
                }

                output.WriteLine($"{report.PassedCount} passed, {report.FailedCount} failed");
            }

            return report.AllPassed ? ExitCodes.Ok : ExitCodes.Failed;
        }));
        return command;
    }

    private static void WriteLine(TextWriter output, SelfTestCheck check) =>
        output.WriteLine($"{(check.Passed ? "PASS" : "FAIL")}  {check.Name,-44} {check.Detail}");

    private static void WriteJson(FpgaDevice device, SelfTestReport report, TextWriter output)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("backend", device.Info.Backend.ToString().ToLowerInvariant());
            w.WriteBoolean("passed", report.AllPassed);
            w.WriteNumber("checks_passed", report.PassedCount);
            w.WriteNumber("checks_failed", report.FailedCount);
            w.WriteNumber("largest_size", report.LargestSize);
            if (report.Note is not null)
            {
                w.WriteString("note", report.Note);
            }

            w.WriteStartArray("checks");
            foreach (var c in report.Checks)
            {
                w.WriteStartObject();
                w.WriteString("name", c.Name);
                w.WriteBoolean("passed", c.Passed);
                w.WriteString("detail", c.Detail);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }
}
