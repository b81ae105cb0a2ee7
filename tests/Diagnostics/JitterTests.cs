using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using NUnit.Framework;

namespace FpgaAccel.Tests.Diagnostics;

/// <summary>
/// <see cref="Jitter"/> on the model: every measured command is a sample, pinned buffers never fault, on-demand
/// buffers fault and evict (the working set is twice the budget), the statistics are ordered, and bad options
/// are refused before any work starts. Latency values are not asserted: these machines are noisy.
/// </summary>
public class JitterTests
{
    private static FpgaDevice Open(int budget = 16) =>
        FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = budget });

    [Test]
    public async Task PinnedRunRecordsEveryCommandWithoutFaults()
    {
        using var device = Open();
        var result = await Jitter.RunAsync(device, BufferMode.Pinned, new JitterOptions { Count = 64, Warmup = 8, Size = 8192 });
        Assert.That(result.Samples, Has.Length.EqualTo(64));
        Assert.That(result.Samples.All(s => s.Status == CompletionStatus.Ok), Is.True);
        Assert.That(result.Faults, Is.Zero);
        Assert.That(result.NonOk, Is.Zero);
        Assert.That(result.Samples.All(s => s.DeviceEndCycle >= s.DeviceStartCycle && s.HostNanoseconds > 0), Is.True);
        AssertOrdered(result.Host);
        AssertOrdered(result.Device);
    }

    [Test]
    public async Task OnDemandRunFaultsAndEvictsAndStillCompletesEveryCommand()
    {
        using var device = Open(budget: 8);
        var result = await Jitter.RunAsync(device, BufferMode.OnDemand, new JitterOptions { Count = 48, Warmup = 4, Size = 8192 });
        Assert.That(result.Samples, Has.Length.EqualTo(48));
        Assert.That(result.NonOk, Is.Zero);
        Assert.That(result.Faults, Is.GreaterThan(0));
        Assert.That(result.Faults, Is.EqualTo(result.Samples.Sum(s => (long)s.Faults)), "faults are the sum of the samples'");
        Assert.That(result.Evictions, Is.GreaterThan(0), "the working set is twice the budget");
        Assert.That(result.FaultService, Is.Not.Null);
        AssertOrdered(result.Host);
    }

    [Test]
    public async Task VirtualClockRunsAreReproducible()
    {
        // The virtual clock counts modelled cycles only, so two runs of the same options must report the same device
        // cycles and faults for every command: nothing may depend on where the allocator put the buffers (their
        // offset inside a 2 MiB chunk once decided which neighbours an eviction's invalidation also dropped).
        async Task<JitterSample[]> Run()
        {
            using var device = Open(budget: 8);
            // Reclaiming before the answer is what makes a virtual-clock run reproducible (F3), and what the CLI's
            // --clock virtual selects.
            var options = new JitterOptions { Count = 40, Warmup = 4, Size = 8192, FaultService = new() { ReclaimBeforeAnswer = true } };
            var result = await Jitter.RunAsync(device, BufferMode.OnDemand, options);
            return result.Samples;
        }

        var first = await Run();
        using var spacer = HostBuffer.Allocate(3 * 4096); // moves the next run's buffers
        var second = await Run();
        Assert.That(second.Select(s => (s.DeviceStartCycle, s.DeviceEndCycle, s.Faults)),
            Is.EqualTo(first.Select(s => (s.DeviceStartCycle, s.DeviceEndCycle, s.Faults))));
    }

    [TestCase(0UL, 10, 0, "size")]
    [TestCase(JitterOptions.MaxSize + 1, 10, 0, "size")]
    [TestCase(4096UL, 0, 0, "count")]
    [TestCase(4096UL, 10, -1, "warmup")]
    public void BadOptionsAreRefusedBeforeAnyWork(ulong size, int count, int warmup, string name)
    {
        using var device = Open();
        var pinnedBefore = device.PinnedBytes;
        var ex = Assert.ThrowsAsync<InvalidDeviceOptionException>(async () =>
            await Jitter.RunAsync(device, BufferMode.Pinned, new JitterOptions { Size = size, Count = count, Warmup = warmup }));
        Assert.That(ex!.Message, Does.Contain(name));
        Assert.That(device.PinnedBytes, Is.EqualTo(pinnedBefore), "nothing was pinned by the refused run");
    }

    [Test]
    public void StatisticsUseExactNearestRank()
    {
        var values = Enumerable.Range(1, 1000).Select(i => (double)i).Reverse().ToArray();
        var stats = LatencyStats.From(values);
        Assert.That(stats.Count, Is.EqualTo(1000));
        Assert.That(stats.Min, Is.EqualTo(1));
        Assert.That(stats.P50, Is.EqualTo(500));
        Assert.That(stats.P90, Is.EqualTo(900));
        Assert.That(stats.P99, Is.EqualTo(990));
        Assert.That(stats.P999, Is.EqualTo(999));
        Assert.That(stats.Max, Is.EqualTo(1000));
        Assert.That(stats.Mean, Is.EqualTo(500.5).Within(1e-9));
        Assert.That(LatencyStats.From([]).Count, Is.Zero);
    }

    private static void AssertOrdered(LatencyStats s)
    {
        Assert.That(s.Min, Is.LessThanOrEqualTo(s.P50));
        Assert.That(s.P50, Is.LessThanOrEqualTo(s.P90));
        Assert.That(s.P90, Is.LessThanOrEqualTo(s.P99));
        Assert.That(s.P99, Is.LessThanOrEqualTo(s.P999));
        Assert.That(s.P999, Is.LessThanOrEqualTo(s.Max));
    }
}
