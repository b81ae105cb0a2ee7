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

    // Issue 15, item 7: one table and one plot of p50, p99 and p99.9 against the swept value, pinned and on demand, and
    // an HdrHistogram distribution per mode and point beside them.
    [Test]
    public void ASizeSweepWritesOneTableOnePlotJsonAndAnHgrmPerModeAndPoint()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"fpgaaccel-sweep-{Guid.NewGuid():N}");
        var json = Path.Combine(dir, "sweep.json");
        var svg = Path.Combine(dir, "sweep.svg");
        var csv = Path.Combine(dir, "sweep.csv");
        Directory.CreateDirectory(dir);
        try
        {
            var (code, output, error) = Run("jitter", "--backend", "model", "--clock", "virtual", "--sweep", "size=4K..16K", "--budget", "32", "--count", "40", "--warmup", "4",
                "--json", json, "--svg", svg, "--csv", csv, "--hgrm", Path.Combine(dir, "hgrm"));
            Assert.That(code, Is.EqualTo(0), error + output);
            Assert.That(output, Does.Contain("p50, p99, p99.9 against size"));
            foreach (var column in new[] { "pinned p50", "pinned p99.9", "ondemand p50", "ondemand p99.9", "faults/cmd" })
            {
                Assert.That(output, Does.Contain(column));
            }

            Assert.That(output, Does.Match(@"\n\W*4K\W").And.Match(@"\n\W*8K\W").And.Match(@"\n\W*16K\W"), "a row per swept value");

            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json));
            var root = doc.RootElement;
            Assert.That(root.GetProperty("schema").GetString(), Is.EqualTo("fpgaaccel-jitter-sweep/1"));
            Assert.That(root.GetProperty("swept").GetString(), Is.EqualTo("size"));
            var points = root.GetProperty("points").EnumerateArray().ToArray();
            Assert.That(points.Select(p => p.GetProperty("value").GetInt64()), Is.EqualTo(new[] { 4096L, 8192, 16384 }));
            foreach (var point in points)
            {
                Assert.That(point.GetProperty("size").GetInt64(), Is.EqualTo(point.GetProperty("value").GetInt64()), "each point ran at its size");
                foreach (var mode in new[] { "pinned", "ondemand" })
                {
                    var m = point.GetProperty("modes").GetProperty(mode);
                    Assert.That(m.GetProperty("count").GetInt64(), Is.EqualTo(40));
                    Assert.That(m.GetProperty("p50_ns").GetDouble(), Is.LessThanOrEqualTo(m.GetProperty("p99_ns").GetDouble()));
                    Assert.That(m.GetProperty("p99_ns").GetDouble(), Is.LessThanOrEqualTo(m.GetProperty("p999_ns").GetDouble()));
                }
            }

            Assert.That(points[0].GetProperty("modes").GetProperty("pinned").GetProperty("faults_per_command").GetDouble(), Is.Zero);
            Assert.That(points[2].GetProperty("modes").GetProperty("ondemand").GetProperty("faults_per_command").GetDouble(), Is.GreaterThan(0));

            var plot = System.Xml.Linq.XDocument.Load(svg);
            var lines = plot.Descendants().Where(e => e.Name.LocalName == "polyline").ToArray();
            Assert.That(lines, Has.Length.EqualTo(6), "p50, p99, p99.9 for each of two modes");
            Assert.That(lines.All(l => l.Attribute("points")!.Value.Split(' ').Length == 3), Is.True, "a vertex per swept value");

            var rows = File.ReadAllLines(csv);
            Assert.That(rows[0], Does.StartWith("size,mode,index,host_ns"));
            Assert.That(rows, Has.Length.EqualTo(1 + (3 * 2 * 40)));

            var hgrms = Directory.GetFiles(Path.Combine(dir, "hgrm")).Select(Path.GetFileName).Order().ToArray();
            Assert.That(hgrms, Is.EqualTo(new[] { "size-16K-ondemand.hgrm", "size-16K-pinned.hgrm", "size-4K-ondemand.hgrm", "size-4K-pinned.hgrm", "size-8K-ondemand.hgrm", "size-8K-pinned.hgrm" }));
            Assert.That(File.ReadAllText(Path.Combine(dir, "hgrm", "size-8K-pinned.hgrm")), Does.Contain("Total count    =           40"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void APrefetchSweepTabulatesOffAndOn()
    {
        var (code, output, error) = Run("jitter", "--backend", "model", "--clock", "virtual", "--mode", "ondemand", "--sweep", "prefetch", "--budget", "32", "--count", "30", "--warmup", "4");
        Assert.That(code, Is.EqualTo(0), error + output);
        Assert.That(output, Does.Contain("against prefetch").And.Match(@"\n\W*off\W").And.Match(@"\n\W*on\W"));
        Assert.That(output, Does.Not.Contain("pinned p50"), "--mode ondemand measures on demand only");
    }

    [Test]
    public void AnHgrmPerModeBesideAPlainRun()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"fpgaaccel-hgrm-{Guid.NewGuid():N}", "created");
        try
        {
            var (code, output, error) = Run("jitter", "--backend", "model", "--clock", "virtual", "--budget", "32", "--count", "30", "--warmup", "4", "--hgrm", dir);
            Assert.That(code, Is.EqualTo(0), error + output);
            Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { "ondemand.hgrm", "pinned.hgrm" }), "the directory is created when missing");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(dir)!, recursive: true);
        }
    }

    [TestCase("latency=1..2", "not a sweepable setting")]
    [TestCase("size=4M..4K", "size=4K..4M")]
    [TestCase("size=0..4K", "from 1 to 64M")]
    [TestCase("budget=1..8", "from 2")]
    [TestCase("fault-around=3..64", "power of two")]
    [TestCase("prefetch=maybe", "off or on")]
    public void ABadSweepIsBadUsageNamingTheValueTheRuleAndTheFix(string sweep, string rule)
    {
        var (code, _, error) = Run("jitter", "--backend", "model", "--clock", "virtual", "--sweep", sweep, "--count", "1");
        Assert.That(code, Is.EqualTo(2), error);
        Assert.That(error, Does.Contain($"'{sweep}'").And.Contain(rule));
        Assert.That(error, Does.Contain("e.g.").Or.Contain("write"), "the fix");
        Assert.That(error, Does.Not.Contain("   at "));
    }

    [Test]
    public void AnHgrmDirectoryThatIsAFileIsBadUsage()
    {
        var file = Path.GetTempFileName();
        try
        {
            var (code, _, error) = Run("jitter", "--backend", "model", "--clock", "virtual", "--count", "1", "--hgrm", file);
            Assert.That(code, Is.EqualTo(2), error);
            Assert.That(error, Does.Contain($"--hgrm '{file}' is not a directory"));
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = FpgaAccelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
