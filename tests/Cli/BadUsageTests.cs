using FpgaAccel.Cli;
using NUnit.Framework;

namespace FpgaAccel.Tests.Cli;

/// <summary>
/// The README's exit-code promise for every kind of bad usage (issue 11, "rules that hold everywhere"): a bad value for
/// any option of any command, an unknown option or command, a missing required one: exit code 2, a message that says
/// what is wrong, and never a stack trace. Device commands run on the model, so a value that slipped through would run.
/// </summary>
public class BadUsageTests
{
    private static readonly string[] s_model = ["--backend", "model", "--clock", "virtual"];

    private static IEnumerable<TestCaseData> Cases()
    {
        // The root.
        yield return Case("no command");
        yield return Case("unknown command", "bogus");

        // Options every device command takes.
        foreach (var command in new[] { "info", "selftest", "stress", "jitter" })
        {
            yield return Case($"{command}: unknown backend", command, "--backend", "fpga");
            yield return Case($"{command}: unknown clock", command, "--backend", "model", "--clock", "slow");
            yield return Case($"{command}: malformed PCI address", command, "--backend", "model", "--device", "not-an-address");
            yield return Case($"{command}: unknown option", [command, .. s_model, "--nope"]);
        }

        yield return Case("selftest: seed not a number", ["selftest", .. s_model, "--seed", "q"]);
        yield return Case("selftest: seed out of range", ["selftest", .. s_model, "--seed", "99999999999"]);

        foreach (var seconds in new[] { "abc", "-1", "0", "NaN", "Infinity", "1e308", "100000" })
        {
            yield return Case($"stress: --seconds {seconds}", ["stress", .. s_model, "--seconds", seconds]);
        }

        foreach (var threads in new[] { "0", "-3", "65", "x" })
        {
            yield return Case($"stress: --threads {threads}", ["stress", .. s_model, "--seconds", "1", "--threads", threads]);
        }

        foreach (var budget in new[] { "0", "1", "-5", "x", "999999999" })
        {
            yield return Case($"stress: --budget {budget}", ["stress", .. s_model, "--seconds", "1", "--budget", budget]);
        }

        yield return Case("stress: seed not a number", ["stress", .. s_model, "--seconds", "1", "--seed", "x"]);
        yield return Case("stress: unknown service", ["stress", .. s_model, "--seconds", "1", "--service", "fast"]);
        foreach (var inject in new[] { "", "boom", "loss,,fatal", "loss,loss", "hang,nope" })
        {
            yield return Case($"stress: --inject '{inject}'", ["stress", .. s_model, "--seconds", "1", "--inject", inject]);
        }

        yield return Case("jitter: unknown mode", ["jitter", .. s_model, "--mode", "x"]);
        yield return Case("jitter: unknown op", ["jitter", .. s_model, "--op", "x"]);
        foreach (var size in new[] { "0", "-1", "x", "99999999999" })
        {
            yield return Case($"jitter: --size {size}", ["jitter", .. s_model, "--size", size]);
        }

        foreach (var count in new[] { "0", "-1", "x" })
        {
            yield return Case($"jitter: --count {count}", ["jitter", .. s_model, "--count", count]);
        }

        yield return Case("jitter: --warmup -1", ["jitter", .. s_model, "--warmup", "-1"]);
        yield return Case("jitter: --budget 1", ["jitter", .. s_model, "--budget", "1"]);
        yield return Case("jitter: --budget 0", ["jitter", .. s_model, "--budget", "0"]);
        yield return Case("jitter: --budget huge", ["jitter", .. s_model, "--budget", "999999999"]);
        yield return Case("jitter: unknown service", ["jitter", .. s_model, "--service", "x"]);
        yield return Case("jitter: unknown completion", ["jitter", .. s_model, "--completion", "x"]);
        yield return Case("jitter: unwritable json", ["jitter", .. s_model, "--count", "1", "--json", "/nonexistent-dir/x.json"]);
        yield return Case("jitter: csv is a directory", ["jitter", .. s_model, "--count", "1", "--csv", "/tmp"]);
        yield return Case("jitter: empty svg path", ["jitter", .. s_model, "--count", "1", "--svg", ""]);
        foreach (var sweep in new[] { "", "bogus=1..2", "size", "size=4M..4K", "size=x..4K", "budget=1..4", "fault-around=3", "prefetch=maybe", "size=1..2..3" })
        {
            yield return Case($"jitter: --sweep '{sweep}'", ["jitter", .. s_model, "--count", "1", "--sweep", sweep]);
        }

        yield return Case("jitter: --hgrm empty", ["jitter", .. s_model, "--count", "1", "--hgrm", ""]);
        yield return Case("jitter: --hgrm unwritable", ["jitter", .. s_model, "--count", "1", "--hgrm", "/proc/fpgaaccel-hgrm"]);

        yield return Case("doctor: bad vendor id", "doctor", "--vendor-id", "ZZ");
        yield return Case("doctor: vendor id too wide", "doctor", "--vendor-id", "0x10000");
        yield return Case("doctor: bad device id", "doctor", "--device-id", "ZZ");
        yield return Case("doctor: bad pin bytes", "doctor", "--pin-bytes", "5Q");
        yield return Case("doctor: zero pin bytes", "doctor", "--pin-bytes", "0");
        yield return Case("doctor: malformed PCI address", "doctor", "--device", "not-an-address");
        yield return Case("doctor: unknown option", "doctor", "--nope");

        yield return Case("setup: no device", "setup");
        yield return Case("setup: malformed PCI address", "setup", "--device", "not-an-address");
        yield return Case("setup: bad pin bytes", "setup", "--device", "0000:03:00.0", "--pin-bytes", "5Q");
        yield return Case("setup: empty user", "setup", "--device", "0000:03:00.0", "--user", "");

        yield return Case("asm: no method", "asm");
        yield return Case("asm: unknown type", "asm", "Nope.Nope");
        yield return Case("asm: missing assembly", "asm", "AddressMirror.Lookup", "--assembly", "/nonexistent/x.dll");

        static TestCaseData Case(string name, params string[] args) => new TestCaseData(args, 0).SetArgDisplayNames(name);
    }

    [TestCaseSource(nameof(Cases))]
    public async Task BadUsageExitsTwoWithAMessageAndNoStackTrace(string[] args, int unused)
    {
        var run = Task.Run(() => Run(args));
        Assert.That(await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(60))), Is.SameAs(run), "the command ran on instead of refusing its input");
        var (code, output, error) = await run;
        Assert.That(code, Is.EqualTo(2), $"exit code for: fpgaaccel {string.Join(' ', args)}\n{error}");
        Assert.That(error.Trim(), Is.Not.Empty, "no message says what is wrong");
        Assert.That(error + output, Does.Not.Contain("   at ").And.Not.Contain("Unhandled exception"), "a stack trace was printed");
    }

    private static (int Code, string Output, string Error) Run(string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = FpgaAccelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
