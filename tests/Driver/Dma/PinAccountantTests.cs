using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Dma;

/// <summary>
/// Issue 11, defect 13: RLIMIT_MEMLOCK limits the process (the kernel charges every page a VFIO container pins to the
/// process's locked_vm), so the driver counts what every open device pins against one limit, not the full limit per device.
/// </summary>
public class PinAccountantTests
{
    [Test]
    public void TwoDevicesShareOneProcessLimit()
    {
        const ulong limit = 1UL << 20;
        using var a = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { MemlockLimitBytes = limit });
        using var b = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { MemlockLimitBytes = limit });
        using var bufferA = HostBuffer.Allocate(640UL << 10);
        using var bufferB = HostBuffer.Allocate(640UL << 10);
        using var contextA = a.CreateContext();
        using var contextB = b.CreateContext();

        var pinA = contextA.Pin(bufferA, DmaAccess.DeviceRead);
        var ex = Assert.Throws<PinLimitExceededException>(() => contextB.Pin(bufferB, DmaAccess.DeviceRead),
            "the second device charged its pin against a full limit of its own")!;
        Assert.That(ex.Pinned, Is.GreaterThanOrEqualTo(640UL << 10), "the refusal counts what the other device pins");
        Assert.That(ex.Message, Does.Contain("process"));
        Assert.That(contextB.PinCount, Is.Zero);

        pinA.Dispose();
        using var pinB = contextB.Pin(bufferB, DmaAccess.DeviceRead);
        Assert.That(b.PinnedBytes, Is.GreaterThanOrEqualTo(640UL << 10));
    }
}
