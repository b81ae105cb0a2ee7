using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.HwSim;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Diagnostics;

/// <summary>The seeded stress run on the model, both fault-service wait modes, judged by the model's oracle too.</summary>
[TestFixture(FaultWaitMode.Block)]
[TestFixture(FaultWaitMode.Adaptive)]
public class StressTestTests : StressTestTestsBase
{
    public StressTestTests(FaultWaitMode mode)
        : base(mode)
    {
    }

    private protected override IDeviceBackend CreateBackend() => new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
}

/// <summary>The seeded stress run on a real FA-1 (FPGAACCEL_DEVICE), both wait modes; skipped with the reason otherwise.</summary>
[Category("Hardware")]
[TestFixture(FaultWaitMode.Block)]
[TestFixture(FaultWaitMode.Adaptive)]
public class BoardStressTestTests : StressTestTestsBase
{
    public BoardStressTestTests(FaultWaitMode mode)
        : base(mode)
    {
    }

    [SetUp]
    public void RequireBoard() => HardwareBoard.RequireAddress();

    private protected override IDeviceBackend CreateBackend() => HardwareBoard.OpenBackend();
}

/// <summary>
/// <see cref="StressTest"/> on any backend: threads register, pin, unpin and unregister while queues copy through
/// the buffers; every copy is verified, and where the backend has an oracle (the model) its counters must be zero.
/// </summary>
public abstract class StressTestTestsBase
{
    protected StressTestTestsBase(FaultWaitMode mode) => Mode = mode;

    /// <summary>The fault service's wait mode under test.</summary>
    protected FaultWaitMode Mode { get; }

    /// <summary>A fresh backend for one test; the device opened on it owns it.</summary>
    private protected abstract IDeviceBackend CreateBackend();

    [Test]
    public async Task SeededStressHoldsEveryInvariant()
    {
        using var device = FpgaDevice.Open(CreateBackend(), new FpgaDeviceOptions { OnDemandBudgetPages = 24 });
        var report = await StressTest.RunAsync(device, new StressOptions
        {
            Duration = TimeSpan.FromSeconds(4),
            Seed = 11,
            Threads = 2,
            FaultService = new FaultServiceOptions { Mode = Mode },
        });
        Assert.That(report.Failures, Is.Empty);
        Assert.That(report.Faults, Is.GreaterThan(0));
        Assert.That(report.Evictions, Is.GreaterThan(0));
        Assert.That(report.VerifiedCopies, Is.GreaterThan(0));

        // The seeded scenarios (issue 11): every kind ran, under schedules that produced distinct interleavings, each
        // followed by an audit; eviction ran down to the minimum budget for the open queues.
        Assert.That(report.ScenarioKinds.Values, Has.All.GreaterThan(0), string.Join(", ", report.ScenarioKinds));
        Assert.That(report.Interleavings, Is.GreaterThan(1));
        Assert.That(report.Audits, Is.EqualTo(report.Scenarios));
        Assert.That(report.FaultServiceRestarts, Is.GreaterThan(0));
        Assert.That(report.MinimumBudget, Is.EqualTo(3 * FpgaDeviceOptions.MinimumOnDemandPagesPerQueue));
        if (device.Oracle is not null)
        {
            Assert.That(report.StaleAccesses, Is.EqualTo(0), "the model's oracle");
            Assert.That(report.LostFaults, Is.EqualTo(0), "the model's oracle");
            Assert.That(report.FreedMemoryAccesses, Is.EqualTo(0), "the model's oracle");
            Assert.That(report.DropinMismatches, Is.EqualTo(0), "the model's oracle");
            Assert.That(report.AuditViolations, Is.EqualTo(0), "the model's oracle");
            Assert.That(report.BadRingHeadWrites, Is.EqualTo(0), "the model's oracle");
            Assert.That(report.LimitEvictions, Is.GreaterThan(0), "the pin-limit scenario met the limit on the fault path");
        }
    }
}
