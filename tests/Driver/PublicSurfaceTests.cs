using System.Reflection;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Board;
using FpgaAccel.Driver.Dma;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver;

/// <summary>
/// What a library user must not reach (firmware-iface/DECISIONS.md S4): the mirror the fault service walks, the
/// interrupt handlers and vectors, the backend under an open device, raw descriptors, and the device reset.
/// </summary>
public class PublicSurfaceTests
{
    private const BindingFlags Instance = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance;
    private const BindingFlags Static = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static;

    [TestCase(typeof(AddressMirror))]
    [TestCase(typeof(MirrorEntry))]
    [TestCase(typeof(MirrorFlags))]
    [TestCase(typeof(IDeviceBackend))]
    [TestCase(typeof(ModelBackend))]
    [TestCase(typeof(BoardBackend))]
    [TestCase(typeof(IovaRange))]
    [TestCase(typeof(IovaLayout))]
    [TestCase(typeof(PinAccountant))]
    [TestCase(typeof(InvalidationFence))]
    [TestCase(typeof(AddressSpacePinLedger))]
    [TestCase(typeof(ContextRemoval))]
    public void DriverInternalsAreNotPublic(Type type) => Assert.That(type.IsVisible, Is.False, $"{type.FullName} is part of the public surface");

    [TestCase(typeof(DeviceContext), nameof(DeviceContext.Mirror))]
    public void PropertyIsNotPublic(Type type, string name)
    {
        var property = type.GetProperty(name, Instance) ?? throw new MissingMemberException(type.FullName, name);
        Assert.That(property.GetMethod!.IsPublic, Is.False, $"{type.Name}.{name} is public");
    }

    [TestCase(typeof(DeviceInterrupts), nameof(DeviceInterrupts.Subscribe))]
    [TestCase(typeof(DeviceInterrupts), nameof(DeviceInterrupts.Claim))]
    [TestCase(typeof(DeviceInterrupts), nameof(DeviceInterrupts.Release))]
    [TestCase(typeof(DeviceInterrupts), nameof(DeviceInterrupts.Unsubscribe))]
    [TestCase(typeof(DeviceInterrupts), nameof(DeviceInterrupts.Dispose))]
    [TestCase(typeof(CommandQueue), nameof(CommandQueue.SubmitAsync))]
    [TestCase(typeof(FpgaDevice), nameof(FpgaDevice.Reset))]
    public void MethodIsNotPublic(Type type, string name)
    {
        var methods = type.GetMethods(Instance | Static).Where(m => m.Name == name).ToList();
        Assert.That(methods, Is.Not.Empty, $"{type.Name}.{name} not found");
        Assert.That(methods.Where(m => m.IsPublic).Select(m => m.ToString()), Is.Empty);
    }

    [Test]
    public void OpeningOverACallersBackendIsNotPublic()
    {
        var open = typeof(FpgaDevice).GetMethods(Static).Where(m => m.Name == nameof(FpgaDevice.Open)).ToList();
        Assert.That(open.Single(m => m.IsPublic).GetParameters().Select(p => p.ParameterType), Is.EqualTo(new[] { typeof(FpgaDeviceOptions) }),
            "the one public way to open a device takes options");
        Assert.That(open.Where(m => m.GetParameters().Any(p => p.ParameterType == typeof(IDeviceBackend))).All(m => !m.IsPublic), Is.True);
    }

    [Test]
    public void InterruptsCanBeObservedButNotStopped()
    {
        Assert.That(typeof(IDisposable).IsAssignableFrom(typeof(DeviceInterrupts)), Is.False, "a caller could stop the device's dispatcher");
        Assert.That(typeof(DeviceInterrupts).GetMethod(nameof(DeviceInterrupts.Count))!.IsPublic, Is.True);
    }

    [Test]
    public void OracleIsPublicForHarnesses()
    {
        Assert.That(typeof(FpgaDevice).GetProperty(nameof(FpgaDevice.Oracle))!.GetMethod!.IsPublic, Is.True);
        Assert.That(typeof(IDeviceOracle).IsVisible && typeof(DeviceOracleReport).IsVisible, Is.True);
    }
}
