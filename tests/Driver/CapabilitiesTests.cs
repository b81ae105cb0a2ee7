using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver;

/// <summary>
/// Issue 11, defect 11: what the device reports at open is range-checked before any shift or index uses it, and a
/// bad value is refused at open with a typed error naming the field, the value, the rule and the fix.
/// </summary>
public class CapabilitiesTests
{
    private static readonly Capabilities s_good = new ModelOptions().Capabilities;

    private static IEnumerable<TestCaseData> BadCapabilities()
    {
        yield return Case("VA bits", With(vaBits: 0));
        yield return Case("VA bits", With(vaBits: 64));
        yield return Case("VA bits", With(vaBits: 200));
        yield return Case("VA bits", With(vaBits: 49));
        yield return Case("IOVA bits", With(iovaBits: 0));
        yield return Case("IOVA bits", With(iovaBits: 40));
        yield return Case("IOVA bits", With(iovaBits: 65));
        yield return Case("TLB ways", With(tlbWays: 0));
        yield return Case("TLB sets", With(tlbSetsLog2: 40));
        yield return Case("contexts", With(contexts: 0));
        yield return Case("contexts", With(contexts: 200));
        yield return Case("queues", With(queues: 0));

        static TestCaseData Case(string field, Capabilities caps) => new TestCaseData(field, caps.Raw).SetArgDisplayNames(field, $"0x{caps.Raw:X16}");
    }

    [TestCaseSource(nameof(BadCapabilities))]
    public void BadCapabilitiesAreRefusedAtOpen(string field, ulong caps)
    {
        var backend = new ForgingBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual })) { Caps = caps };
        var ex = Assert.Throws<InvalidCapabilitiesException>(() => FpgaDevice.Open(backend))!;
        Assert.That(ex.Field, Is.EqualTo(field));
        Assert.That(ex.Message, Does.Contain(field).And.Contain($"0x{caps:X16}"));
    }

    [TestCase(0UL)]
    [TestCase(10_000_000_000_000UL)]
    public void AbsurdClockIsRefusedAtOpen(ulong hz)
    {
        var backend = new ForgingBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual })) { ClockHz = hz };
        var ex = Assert.Throws<InvalidCapabilitiesException>(() => FpgaDevice.Open(backend))!;
        Assert.That(ex.Field, Is.EqualTo("CLOCK_HZ"));
    }

    // A device whose IOVAs are narrower than the IOMMU's window: the layout keeps every IOVA the driver hands it
    // below 2^IOVA bits (47 bits: the identity layout, not host address + 2^47).
    [Test]
    public void DeviceIovaBitsBoundTheIovaLayout()
    {
        var backend = new ForgingBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual })) { Caps = With(iovaBits: 47).Raw };
        using var device = FpgaDevice.Open(backend);
        Assert.That(device.Mmu.Layout.Delta, Is.Zero, "2^47 + a user address does not fit in 47 bits");
        using var context = device.CreateContext();
        using var buffer = HostBuffer.Allocate(4096);
        using var pin = context.Pin(buffer, DmaAccess.DeviceRead);
        Assert.That(context.Translation((ulong)buffer.Address, out _).Address, Is.EqualTo((ulong)buffer.Address));
    }

    private static Capabilities With(int? contexts = null, int? queues = null, int? tlbWays = null, int? tlbSetsLog2 = null, int? vaBits = null, int? iovaBits = null) =>
        Capabilities.Create(contexts ?? s_good.Contexts, queues ?? s_good.Queues, tlbWays ?? s_good.TlbWays, tlbSetsLog2 ?? s_good.TlbSetsLog2,
            s_good.IsModel, s_good.Huge2M, s_good.Dropin, vaBits ?? s_good.VaBits, iovaBits ?? s_good.IovaBits);

    /// <summary>Reports forged CAPS or CLOCK_HZ values: a bitstream that is not what it should be.</summary>
    private sealed class ForgingBackend(IDeviceBackend inner) : DelegatingBackend(inner)
    {
        public ulong? Caps { get; init; }

        public ulong? ClockHz { get; init; }

        public override ulong Read64(uint offset) => offset switch
        {
            Fa1Registers.Caps when Caps is { } caps => caps,
            Fa1Registers.ClockHz when ClockHz is { } hz => hz,
            _ => base.Read64(offset),
        };
    }
}
