using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.HwSim;
using NUnit.Framework;

namespace FpgaAccel.Tests.Diagnostics;

/// <summary><c>stress --devices 2</c>: two model devices on one address space, every oracle counter of both reported.</summary>
public class MirrorStressTests
{
    [Test]
    public async Task TwoDevicesOnOneAddressSpaceRunCleanAndReportBothOracles()
    {
        using var a = FpgaDevice.Open(new ModelBackend(new ModelOptions()), new FpgaDeviceOptions { OnDemandBudgetPages = 16 });
        using var b = FpgaDevice.Open(new ModelBackend(new ModelOptions()), new FpgaDeviceOptions { OnDemandBudgetPages = 16 });
        var report = await MirrorStress.RunAsync([a, b], TimeSpan.FromSeconds(1), seed: 3);
        TestContext.Out.WriteLine($"{report.Rounds} rounds, {report.Removals} removals, {report.VerifiedCopies} verified");
        Assert.That(report.Rounds, Is.GreaterThan(0));
        Assert.That(report.Removals, Is.EqualTo(2 * report.Rounds), "a source and a destination removed per round");
        Assert.That(report.VerifiedCopies, Is.EqualTo(2 * report.Rounds), "both devices copied every round");
        Assert.That(report.Devices, Has.Count.EqualTo(2));
        Assert.That(report.Devices.Select(d => d.Oracle), Has.All.Not.Null);
        Assert.That(report.Devices.Select(d => d.Oracle!.StaleAccesses), Has.All.Zero);
        Assert.That(report.Devices.Select(d => d.Audits), Has.All.EqualTo(report.Rounds));
        Assert.That((report.DataErrors, report.ReachedAfterRemoval, report.UnexpectedStatus), Is.EqualTo((0L, 0L, 0L)));
        Assert.That(report.Passed, Is.True);
    }
}
