using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.HwSim;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Diagnostics;

/// <summary>The self-test on the model, on both clocks.</summary>
[TestFixture(ClockMode.Virtual)]
[TestFixture(ClockMode.Wall)]
public class SelfTestTests : SelfTestTestsBase
{
    private readonly ClockMode _clock;

    public SelfTestTests(ClockMode clock) => _clock = clock;

    private protected override IDeviceBackend CreateBackend() => new ModelBackend(new ModelOptions { Clock = _clock });
}

/// <summary>The self-test on a real FA-1 (FPGAACCEL_DEVICE); skipped with the reason otherwise.</summary>
[Category("Hardware")]
public class BoardSelfTestTests : SelfTestTestsBase
{
    [SetUp]
    public void RequireBoard() => HardwareBoard.RequireAddress();

    private protected override IDeviceBackend CreateBackend() => HardwareBoard.OpenBackend();
}

/// <summary>Every check of <see cref="SelfTest"/> passes on a working device, from 1 byte up to its largest size.</summary>
public abstract class SelfTestTestsBase
{
    /// <summary>A fresh backend for one test; the device opened on it owns it.</summary>
    private protected abstract IDeviceBackend CreateBackend();

    [Test]
    public async Task SelfTestPassesEveryCheck()
    {
        using var device = FpgaDevice.Open(CreateBackend(), new FpgaDeviceOptions { MemlockLimitBytes = 256UL << 20 });
        var report = await SelfTest.RunAsync(device, seed: 7);
        var failures = string.Join("\n", report.Checks.Where(c => !c.Passed).Select(c => $"{c.Name}: {c.Detail}"));
        Assert.That(report.FailedCount, Is.Zero, failures);
        Assert.That(report.PassedCount, Is.GreaterThan(100));
        Assert.That(report.LargestSize, Is.EqualTo(SelfTest.MaxSize));
    }
}
