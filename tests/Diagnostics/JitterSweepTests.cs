using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.HwSim;
using NUnit.Framework;

namespace FpgaAccel.Tests.Diagnostics;

/// <summary>
/// <see cref="JitterSweep"/>: the grammar of <c>--sweep</c> (ranges double from the first value to the last, lists run as
/// given, every value checked against its setting's rule with a typed error naming the text, the rule and the fix), and
/// <see cref="Jitter.SweepAsync"/> on the model: one result per point and mode, each point run with its own setting.
/// </summary>
public class JitterSweepTests
{
    [Test]
    public void ASizeRangeDoublesFromTheFirstValueToTheLast()
    {
        var sweep = JitterSweep.Parse("size=4K..4M");
        Assert.That(sweep.Parameter, Is.EqualTo(SweepParameter.Size));
        Assert.That(sweep.Values, Is.EqualTo(Enumerable.Range(0, 11).Select(i => 4096L << i)));
        Assert.That(sweep.Values.Select(sweep.Format), Is.EqualTo(new[] { "4K", "8K", "16K", "32K", "64K", "128K", "256K", "512K", "1M", "2M", "4M" }));
    }

    [Test]
    public void ARangeWhoseLastValueIsNotADoublingEndsOnIt()
    {
        Assert.That(JitterSweep.Parse("size=4K..10K").Values, Is.EqualTo(new[] { 4096L, 8192, 10240 }));
        Assert.That(JitterSweep.Parse("budget=32..32").Values, Is.EqualTo(new[] { 32L }));
    }

    [Test]
    public void BudgetFaultAroundAndPrefetchParse()
    {
        Assert.That(JitterSweep.Parse("budget=16..128").Values, Is.EqualTo(new[] { 16L, 32, 64, 128 }));
        Assert.That(JitterSweep.Parse(" fault-around = 1..64 ").Values, Is.EqualTo(new[] { 1L, 2, 4, 8, 16, 32, 64 }));
        Assert.That(JitterSweep.Parse("prefetch").Values, Is.EqualTo(new[] { 0L, 1 }));
        Assert.That(JitterSweep.Parse("prefetch=on,off").Values, Is.EqualTo(new[] { 1L, 0 }));
        Assert.That(JitterSweep.Parse("size=1M,4K,64KiB").Values, Is.EqualTo(new[] { 1L << 20, 4096, 65536 }), "a list runs in the order given");
    }

    [Test]
    public void APointSetsOnlyTheSweptSetting()
    {
        var options = new JitterOptions { Size = 8192, FaultAroundPages = 4, Prefetch = false, Count = 7 };
        Assert.That(JitterSweep.Parse("size=4K..8K").Apply(options, 4096), Is.EqualTo(options with { Size = 4096 }));
        Assert.That(JitterSweep.Parse("fault-around=1..2").Apply(options, 1), Is.EqualTo(options with { FaultAroundPages = 1 }));
        Assert.That(JitterSweep.Parse("prefetch").Apply(options, 1), Is.EqualTo(options with { Prefetch = true }));
        Assert.That(JitterSweep.Parse("budget=2..4").Apply(options, 4), Is.EqualTo(options), "the budget is the device's, set before the point runs");
    }

    [TestCase("latency=1..2", "'latency' is not a sweepable setting")]
    [TestCase("size", "size needs a range or a list")]
    [TestCase("size=4M..4K", "write the smaller value first (size=4K..4M)")]
    [TestCase("size=0..4K", "a size is a number of bytes from 1 to 64M")]
    [TestCase("size=4Q..8K", "not '4Q'")]
    [TestCase("size=4K..128M", "a size is a number of bytes from 1 to 64M")]
    [TestCase("size=4K,4K", "4K is listed twice")]
    [TestCase("size=", "a value is empty")]
    [TestCase("size=1..2..4", "is neither a range nor a list")]
    [TestCase("size=1..4G", "a size is a number of bytes")]
    [TestCase("budget=1..8", "from 2 (a stalled COPY needs 2)")]
    [TestCase("fault-around=3..64", "a power of two from 1 (off) to 64 pages, not '3'")]
    [TestCase("fault-around=1..128", "not '128'")]
    [TestCase("prefetch=maybe", "prefetch is off or on, not 'maybe'")]
    public void ABadSweepIsATypedErrorNamingTheTextTheRuleAndTheFix(string text, string rule)
    {
        var ex = Assert.Throws<InvalidDeviceOptionException>(() => JitterSweep.Parse(text));
        Assert.That(ex!.Option, Is.EqualTo("sweep"));
        Assert.That(ex.Message, Does.Contain($"'{text}'"), "names the value");
        Assert.That(ex.Message, Does.Contain(rule), "names the rule");
        Assert.That(ex.Message, Does.Contain("e.g.").Or.Contain("write").Or.Contain("list each").Or.Contain("narrow"), "says how to fix it");
    }

    [Test]
    public void MoreThanMaxPointsIsRefused()
    {
        var list = string.Join(',', Enumerable.Range(1, JitterSweep.MaxPoints + 1));
        var ex = Assert.Throws<InvalidDeviceOptionException>(() => JitterSweep.Parse($"size={list}"));
        Assert.That(ex!.Message, Does.Contain($"at most {JitterSweep.MaxPoints} points"));
    }

    [Test]
    public async Task ABudgetSweepRunsEachPointUnderItsBudget()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 64 });
        var sweep = JitterSweep.Parse("budget=8,64");
        var seen = new List<(int, BufferMode)>();
        var points = await Jitter.SweepAsync(device, sweep, new JitterOptions { Count = 40, Warmup = 8, Size = 8192, FaultAroundPages = 1 },
            [BufferMode.Pinned, BufferMode.OnDemand], new SynchronousProgress(seen));
        Assert.That(points.Select(p => p.Value), Is.EqualTo(new[] { 8L, 64 }));
        Assert.That(points.All(p => p.Modes.Select(m => m.Mode).SequenceEqual([BufferMode.Pinned, BufferMode.OnDemand])), Is.True);
        Assert.That(seen, Is.EqualTo(new[] { (0, BufferMode.Pinned), (0, BufferMode.OnDemand), (1, BufferMode.Pinned), (1, BufferMode.OnDemand) }));
        Assert.That(device.OnDemand.Budget, Is.EqualTo(64), "the last point's budget");
        // A reclaim batch evicts from the high watermark (budget - 1/8) to the low one (budget - 1/4): a larger budget
        // evicts more pages per fence, so the batch size shows which budget each point ran under.
        double PerFence(JitterSweepPoint p) => (double)p.Modes[1].Evictions / Math.Max(1, p.Modes[1].Paging!.EvictionFences);
        Assert.That(PerFence(points[1]), Is.GreaterThan(PerFence(points[0])), "budget 64 evicts in larger batches than budget 8");
        Assert.That(points.SelectMany(p => p.Modes).All(m => m.NonOk == 0 && m.Samples.Length == 40), Is.True);
    }

    [Test]
    public async Task AFaultAroundSweepFaultsLessAsTheWindowGrows()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 64 });
        var points = await Jitter.SweepAsync(device, JitterSweep.Parse("fault-around=1..16"), new JitterOptions { Count = 32, Warmup = 4, Size = 16384 }, [BufferMode.OnDemand]);
        var perCommand = points.Select(p => p.Modes[0].FaultsPerCommand).ToArray();
        Assert.That(points.Select(p => p.Modes[0].Paging!.FaultAroundPages), Is.EqualTo(new[] { 1, 2, 4, 8, 16 }));
        Assert.That(perCommand[0], Is.EqualTo(8), "fault-around off: a 16 KiB COPY faults each of its 4 + 4 pages");
        Assert.That(perCommand[^1], Is.LessThanOrEqualTo(2), "a 64 KiB window: at most a fault per side");
    }

    [Test]
    public async Task APrefetchSweepFaultsOnlyWithPrefetchOff()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 32 });
        var points = await Jitter.SweepAsync(device, JitterSweep.Parse("prefetch"), new JitterOptions { Count = 32, Warmup = 4, Size = 8192 }, [BufferMode.OnDemand]);
        Assert.That(points[0].Modes[0].Faults, Is.GreaterThan(0), "prefetch off");
        Assert.That(points[1].Modes[0].Faults, Is.Zero, "prefetch on: every range was mapped before its command");
        Assert.That(points[1].Modes[0].Paging!.Prefetch, Is.True);
    }

    [Test]
    public void ABadPointFailsTheSweepBeforeAnyWork()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 32 });
        var sweep = new JitterSweep(SweepParameter.Size, [4096, 0]);
        var reported = new List<(int, BufferMode)>();
        Assert.ThrowsAsync<InvalidDeviceOptionException>(() => Jitter.SweepAsync(device, sweep, new JitterOptions { Count = 4, Warmup = 0 }, [BufferMode.Pinned], new SynchronousProgress(reported)));
        Assert.That(reported, Is.Empty, "no point ran");
    }

    // Progress<T> posts to the thread pool; the test wants the reports in order as they happen.
    private sealed class SynchronousProgress(List<(int, BufferMode)> seen) : IProgress<(int Point, BufferMode Mode)>
    {
        public void Report((int Point, BufferMode Mode) value) => seen.Add(value);
    }
}
