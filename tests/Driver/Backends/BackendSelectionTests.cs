using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Board;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Backends;

/// <summary>Choosing a backend: names, auto fallback, and what 'board' says when there is none.</summary>
public class BackendSelectionTests
{
    private string _root = null!;

    [SetUp]
    public void SetUp()
    {
        _root = Path.Combine(Path.GetTempPath(), "fpgaaccel-sysfs-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(_root, "sys", "bus", "pci", "devices"));
        Directory.CreateDirectory(Path.Combine(_root, "dev"));
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_root, recursive: true);

    [TestCase("auto", BackendKind.Auto)]
    [TestCase("BOARD", BackendKind.Board)]
    [TestCase(" model ", BackendKind.Model)]
    public void ParsesBackendNames(string name, BackendKind kind) =>
        Assert.That(FpgaDeviceOptions.ParseBackend(name), Is.EqualTo(kind));

    [Test]
    public void UnknownBackendNameIsTypedErrorListingChoices()
    {
        var ex = Assert.Throws<UnknownBackendException>(() => FpgaDeviceOptions.ParseBackend("fpga"))!;
        Assert.That(ex.Message, Does.Contain("'fpga'").And.Contain("auto, board, model"));
    }

    [Test]
    public void BoardWithNoneBoundSaysWhatWasLookedFor()
    {
        var before = FdCount.Now();
        var options = Options(BackendKind.Board);
        var ex = Assert.Throws<BoardNotFoundException>(() => FpgaDevice.Open(options))!;
        Assert.That(ex.Message, Does.Contain("vendor 0x10ee device 0xfa01")
            .And.Contain(Path.Combine(_root, "dev", "vfio", "vfio"))
            .And.Contain(Path.Combine(_root, "sys", "bus", "pci", "devices"))
            .And.Contain("fpgaaccel setup --device"));
        Assert.That(FdCount.SettledAtMost(before), Is.LessThanOrEqualTo(before));
    }

    [Test]
    public void BoardBoundToAnotherDriverIsNamed()
    {
        AddFunction("0000:03:00.0", 0x10ee, 0xfa01, driver: "xdma", group: 7);
        Directory.CreateDirectory(Path.Combine(_root, "dev", "vfio"));
        File.WriteAllText(Path.Combine(_root, "dev", "vfio", "vfio"), string.Empty);
        var ex = Assert.Throws<BoardNotFoundException>(() => FpgaDevice.Open(Options(BackendKind.Board)))!;
        Assert.That(ex.Message, Does.Contain("0000:03:00.0 is bound to xdma, not vfio-pci"));
    }

    [Test]
    public void BoardInANonViableGroupIsNamedWithTheBlockingMember()
    {
        AddFunction("0000:03:00.0", 0x10ee, 0xfa01, driver: "vfio-pci", group: 7);
        AddFunction("0000:03:00.1", 0x8086, 0x10d3, driver: "e1000e", group: 7);
        Directory.CreateDirectory(Path.Combine(_root, "dev", "vfio"));
        File.WriteAllText(Path.Combine(_root, "dev", "vfio", "vfio"), string.Empty);
        File.WriteAllText(Path.Combine(_root, "dev", "vfio", "7"), string.Empty);
        var ex = Assert.Throws<BoardNotFoundException>(() => FpgaDevice.Open(Options(BackendKind.Board)))!;
        Assert.That(ex.Message, Does.Contain("IOMMU group 7 is not viable").And.Contain("0000:03:00.1 (e1000e)"));
        using var device = FpgaDevice.Open(Options(BackendKind.Auto));
        Assert.That(device.Info.Backend, Is.EqualTo(BackendKind.Model), "auto falls back to the model");
    }

    [Test]
    public void UsableBoardIsOpenedThroughVfioAndItsFailureNamesTheStep()
    {
        // Looks usable in sysfs and /dev, but the container node is a plain file, not VFIO: the board backend is
        // tried (no hook, no model fallback) and its error names the step and the ioctl.
        AddFunction("0000:03:00.0", 0x10ee, 0xfa01, driver: "vfio-pci", group: 7);
        Directory.CreateDirectory(Path.Combine(_root, "dev", "vfio"));
        File.WriteAllText(Path.Combine(_root, "dev", "vfio", "vfio"), string.Empty);
        File.WriteAllText(Path.Combine(_root, "dev", "vfio", "7"), string.Empty);
        // Warm up once: the first failure loads assemblies and resources whose descriptors the runtime keeps.
        Assert.Throws<BoardOpenException>(() => FpgaDevice.Open(Options(BackendKind.Auto)));
        var before = FdCount.Now();
        for (var i = 0; i < 4; i++)
        {
            Assert.Throws<BoardOpenException>(() => FpgaDevice.Open(Options(BackendKind.Auto)));
        }

        var ex = Assert.Throws<BoardOpenException>(() => FpgaDevice.Open(Options(BackendKind.Auto)))!;
        Assert.That(ex.Address, Is.EqualTo("0000:03:00.0"));
        Assert.That(ex.Message, Does.Contain("opening the VFIO container, group and device").And.Contain("VFIO_GET_API_VERSION: ENOTTY"));
        Assert.That(FdCount.SettledAtMost(before), Is.LessThanOrEqualTo(before), "nothing stays open");
    }

    [Test]
    public void AutoFallsBackToModelWhenNoBoard()
    {
        using var device = FpgaDevice.Open(Options(BackendKind.Auto));
        Assert.That(device.Info.Backend, Is.EqualTo(BackendKind.Model));
    }

    [Test]
    public void DiscoveryFindsFunctionsByIdsWithDriverAndGroup()
    {
        AddFunction("0000:03:00.0", 0x10ee, 0xfa01, driver: "vfio-pci", group: 12);
        AddFunction("0000:03:00.1", 0x10ee, 0xfa01, driver: null, group: 12);
        AddFunction("0000:04:00.0", 0x8086, 0x1234, driver: "e1000e", group: 13);
        var found = new PciDiscovery(Path.Combine(_root, "sys")).FindByIds(0x10ee, 0xfa01);
        Assert.That(found.Select(f => f.Address.ToString()), Is.EqualTo(new[] { "0000:03:00.0", "0000:03:00.1" }));
        Assert.That(found[0].Driver, Is.EqualTo("vfio-pci"));
        Assert.That(found[0].BoundToVfio, Is.True);
        Assert.That(found[1].Driver, Is.Null);
        Assert.That(found[0].IommuGroup, Is.EqualTo(12));
        Assert.That(found[0].GroupMembers.Select(a => a.ToString()), Is.EqualTo(new[] { "0000:03:00.0", "0000:03:00.1" }));
    }

    [TestCase("0000:03:00.0", "0000:03:00.0")]
    [TestCase("03:1f.7", "0000:03:1f.7")]
    [TestCase("ABCD:EF:01.2", "abcd:ef:01.2")]
    public void ParsesPciAddresses(string text, string canonical) =>
        Assert.That(PciAddress.Parse(text).ToString(), Is.EqualTo(canonical));

    [TestCase("3:00.0")]
    [TestCase("0000:03:20.0")]
    [TestCase("0000:03:00.8")]
    [TestCase("banana")]
    public void RejectsBadPciAddresses(string text)
    {
        var ex = Assert.Throws<InvalidPciAddressException>(() => PciAddress.Parse(text))!;
        Assert.That(ex.Message, Does.Contain($"'{text}'").And.Contain("0000:03:00.0"));
    }

    private FpgaDeviceOptions Options(BackendKind kind) => new()
    {
        Backend = kind,
        SysfsRoot = Path.Combine(_root, "sys"),
        DevRoot = Path.Combine(_root, "dev"),
    };

    private void AddFunction(string address, ushort vendor, ushort device, string? driver, int group)
    {
        var sys = Path.Combine(_root, "sys");
        var dir = Path.Combine(sys, "bus", "pci", "devices", address);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "vendor"), $"0x{vendor:x4}\n");
        File.WriteAllText(Path.Combine(dir, "device"), $"0x{device:x4}\n");
        File.WriteAllText(Path.Combine(dir, "class"), "0x120000\n");
        if (driver is not null)
        {
            var driverDir = Path.Combine(sys, "bus", "pci", "drivers", driver);
            Directory.CreateDirectory(driverDir);
            File.CreateSymbolicLink(Path.Combine(dir, "driver"), driverDir);
        }

        var groupDir = Path.Combine(sys, "kernel", "iommu_groups", group.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Directory.CreateDirectory(Path.Combine(groupDir, "devices"));
        File.CreateSymbolicLink(Path.Combine(groupDir, "devices", address), dir);
        File.CreateSymbolicLink(Path.Combine(dir, "iommu_group"), groupDir);
    }
}
