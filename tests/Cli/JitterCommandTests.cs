using FpgaAccel.Cli;
using NUnit.Framework;

namespace FpgaAccel.Tests.Cli;

public class JitterCommandTests
{
    // Issue 11, defect 12: a budget too small for a COPY between two on-demand buffers livelocked (each fault evicted the
    // other side's page); it is now refused as bad usage, naming the minimum, before any work starts.
    [Test]
    public async Task OnDemandWithABudgetOfOnePageEndsAsBadUsage()
    {
        var run = Task.Run(() => Run("jitter", "--backend", "model", "--clock", "virtual", "--mode", "ondemand", "--budget", "1", "--count", "20", "--warmup", "0"));
        Assert.That(await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(60))), Is.SameAs(run), "jitter --budget 1 did not end");
        var (code, _, error) = await run;
        Assert.That(code, Is.EqualTo(2), error);
        Assert.That(error, Does.Contain("budget").And.Contain("2"));
        Assert.That(error, Does.Not.Contain("   at "), "no stack trace");
    }

    // Issue 15, "checked by": the JSON reports faults per command and the fault-around setting.
    [Test]
    public void JsonReportsFaultsPerCommandTheFaultAroundSettingAndTheEvictionFences()
    {
        var file = Path.Combine(Path.GetTempPath(), $"fpgaaccel-jitter-{Guid.NewGuid():N}.json");
        try
        {
            var (code, output, error) = Run("jitter", "--backend", "model", "--clock", "virtual", "--mode", "ondemand", "--budget", "32", "--count", "200", "--warmup", "20", "--json", file);
            Assert.That(code, Is.EqualTo(0), error + output);
            using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(file));
            var root = json.RootElement;
            Assert.That(root.GetProperty("parameters").GetProperty("fault_around_pages").GetInt32(), Is.EqualTo(16));
            Assert.That(root.GetProperty("parameters").GetProperty("prefetch").GetBoolean(), Is.False);
            var onDemand = root.GetProperty("modes").GetProperty("ondemand");
            var perCommand = onDemand.GetProperty("faults_per_command").GetDouble();
            Assert.That(perCommand, Is.GreaterThan(0).And.LessThanOrEqualTo(2), "a 16 KiB COPY with 64 KiB fault-around faults at most twice");
            Assert.That(perCommand, Is.EqualTo(onDemand.GetProperty("faults").GetDouble() / 200).Within(1e-3));
            var paging = onDemand.GetProperty("paging");
            Assert.That(paging.GetProperty("eviction_fences").GetInt64(), Is.EqualTo(paging.GetProperty("eviction_batches").GetInt64()));
            Assert.That(paging.GetProperty("evictions_per_fence").GetDouble(), Is.GreaterThan(1), "evictions are batched");
        }
        finally
        {
            File.Delete(file);
        }
    }

    [TestCase("3")]
    [TestCase("0")]
    [TestCase("128")]
    public void AFaultAroundThatIsNotAPowerOfTwoUpTo64IsBadUsage(string pages)
    {
        var (code, _, error) = Run("jitter", "--backend", "model", "--clock", "virtual", "--fault-around", pages, "--count", "1");
        Assert.That(code, Is.EqualTo(2), error);
        Assert.That(error, Does.Contain($"--fault-around {pages}").And.Contain("power of two"));
    }

    [Test]
    public void PrefetchRunsWithoutFaults()
    {
        var (code, output, error) = Run("jitter", "--backend", "model", "--clock", "virtual", "--mode", "ondemand", "--budget", "32", "--count", "100", "--warmup", "10", "--prefetch");
        Assert.That(code, Is.EqualTo(0), error + output);
        Assert.That(output, Does.Contain("prefetch on"));
        Assert.That(output, Does.Match(@"ondemand: GC collections"));
        Assert.That(output, Does.Contain("fault-around 16 pages (0 mapped around faults)"), "every page was prefetched, so nothing faulted");
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = FpgaAccelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
