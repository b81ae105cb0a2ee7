using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Backends;

/// <summary>
/// Fault injection reaches harnesses through the backend seam (<see cref="IDeviceBackend.FaultInjection"/>, handed
/// out as <see cref="FpgaDevice.FaultInjection"/>), never by a type test on the backend: on the model every call
/// lands in <see cref="Fa1Model.Inject"/>. What the driver then does is the driver's tests' business.
/// </summary>
public class FaultInjectionSeamTests
{
    [Test]
    public void FpgaDeviceFaultInjectionReachesTheModel()
    {
        var backend = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        using var device = FpgaDevice.Open(backend);
        var inject = device.FaultInjection;
        Assert.That(inject, Is.Not.Null, "the model offers fault injection");

        inject!.StickInvalidations();
        inject.RemoveFromBus();
        Assert.That(backend.Model.Read64(Fa1Registers.Id), Is.EqualTo(Fa1Identity.DeviceLost), "the model left the bus");
        inject.ReturnToBus();
        Assert.That(backend.Model.Read64(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue), "and came back");

        var seam = inject.Counts;
        var model = backend.Model.Inject.Counts;
        Assert.Multiple(() =>
        {
            Assert.That(seam, Is.EqualTo(new DeviceFaultInjectionCounts(1, 1, 0, 0, 1, 0, 0, 0)));
            Assert.That(
                seam,
                Is.EqualTo(new DeviceFaultInjectionCounts(
                    model.Removals, model.Returns, model.EngineStops, model.LostInterrupts, model.StuckInvalidations, model.Fatals, model.SpuriousErrors, model.Garbage)));
        });
    }

    [Test]
    public void ABackendWithoutTheCapabilityOffersNullAndTheSeamIsPublic()
    {
        using var backend = new NoCapabilities();
        Assert.That(((IDeviceBackend)backend).FaultInjection, Is.Null, "the default: a board has none");
        Assert.That(typeof(FpgaDevice).GetProperty(nameof(FpgaDevice.FaultInjection))!.GetMethod!.IsPublic, Is.True);
        Assert.That(typeof(IDeviceFaultInjection).IsVisible && typeof(DeviceFaultInjectionCounts).IsVisible, Is.True);
    }

    // Implements only what IDeviceBackend requires, as a board backend does: no optional capability.
    private sealed class NoCapabilities : IDeviceBackend
    {
        public BackendKind Kind => BackendKind.Board;

        public string Description => "no capabilities";

        public IReadOnlyList<IovaRange> IovaRanges => [];

        public ulong Read64(uint offset) => ulong.MaxValue;

        public void Write64(uint offset, ulong value)
        {
        }

        public int ConnectInterrupts(IReadOnlyList<EventFd> vectors) => 0;

        public void DisconnectInterrupts()
        {
        }

        public void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
        {
        }

        public ulong UnmapDma(ulong iova, ulong length) => 0;

        public void Dispose()
        {
        }
    }
}
