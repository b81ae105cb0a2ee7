using FpgaAccel.Driver;
using FpgaAccel.Driver.Board;
using FpgaAccel.Host;
using FpgaAccel.Tests.Driver;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Host;

/// <summary>Setup against fixture trees: the writes land in files there; a wrapper plays the kernel's part on drivers_probe.</summary>
public class BoardSetupTests
{
    private SysfsFixture _fx = null!;
    private List<(string Path, string Value)> _writes = null!;
    private List<(string Path, uint Uid, uint Gid)> _chowns = null!;

    [SetUp]
    public void SetUp()
    {
        _fx = new SysfsFixture();
        _writes = [];
        _chowns = [];
    }

    [TearDown]
    public void TearDown() => _fx.Dispose();

    [Test]
    public void BindsThroughDriverOverrideAndGivesTheUserTheNode()
    {
        _fx.AddBoard("0000:03:00.0", "xdma", 12).AddVfioNodes(12);
        var report = BoardSetup.Run(Options(user: "lab"));
        var sys = _fx.Sys;
        Assert.That(_writes, Is.EqualTo(new[]
        {
            (Path.Combine(_fx.DeviceDir("0000:03:00.0"), "driver", "unbind"), "0000:03:00.0"),
            (Path.Combine(_fx.DeviceDir("0000:03:00.0"), "driver_override"), "vfio-pci"),
            (Path.Combine(sys, "bus", "pci", "drivers_probe"), "0000:03:00.0"),
        }));
        Assert.That(File.ReadAllText(Path.Combine(_fx.DeviceDir("0000:03:00.0"), "driver_override")), Is.EqualTo("vfio-pci"), "written to the fixture file");
        Assert.That(File.ReadAllText(Path.Combine(sys, "bus", "pci", "drivers", "xdma", "unbind")), Is.EqualTo("0000:03:00.0"));
        Assert.That(_chowns, Is.EqualTo(new[] { (_fx.GroupNode(12), 1234u, 1235u) }));
        Assert.That(report.Group, Is.EqualTo(12));
        Assert.That(report.Actions, Has.Count.EqualTo(4));
        Assert.That(report.Actions[0], Does.Contain("unbound 0000:03:00.0 from xdma"));
        Assert.That(report.MemlockAdvice, Does.Contain("lab soft memlock 65536").And.Contain("limits.conf"));
    }

    [Test]
    public void WithoutUserTheMemlockLineIsAValidTemplate()
    {
        _fx.AddBoard("0000:03:00.0", "xdma", 12).AddVfioNodes(12);
        var report = BoardSetup.Run(Options());
        Assert.That(report.MemlockAdvice, Does.Contain("'USER soft memlock 65536'").And.Contain("USER: that user's name"));
        Assert.That(report.MemlockAdvice, Does.Not.Contain("the user soft"), "limits.conf takes a name, not a phrase");
    }

    [Test]
    public void SecondRunChangesNothing()
    {
        _fx.AddBoard("0000:03:00.0", "xdma", 12).AddVfioNodes(12);
        BoardSetup.Run(Options());
        _writes.Clear();
        var again = BoardSetup.Run(Options());
        Assert.That(_writes, Is.Empty);
        Assert.That(again.Actions, Is.Empty);
    }

    [Test]
    public void UnboundDeviceIsNotUnbound()
    {
        _fx.AddBoard("0000:03:00.0", driver: null, group: 12).AddVfioNodes(12);
        BoardSetup.Run(Options());
        Assert.That(_writes.Select(w => Path.GetFileName(w.Path)), Is.EqualTo(new[] { "driver_override", "drivers_probe" }));
    }

    [Test]
    public void RefusesWhenTheGroupHoldsAForeignDriver()
    {
        _fx.AddBoard("0000:03:00.0", "xdma", 12).AddFunction("0000:03:00.1", 0x8086, 0x10d3, "e1000e", 12).AddVfioNodes(12);
        var ex = Assert.Throws<BoardSetupException>(() => BoardSetup.Run(Options()))!;
        Assert.That(ex.Message, Does.Contain("Refusing to set up 0000:03:00.0").And.Contain("0000:03:00.1 (e1000e)").And.Contain("IOMMU group 12"));
        Assert.That(_writes, Is.Empty, "nothing was changed");
    }

    [Test]
    public void NotRootIsAClearError()
    {
        _fx.AddBoard().AddVfioNodes(12);
        var ex = Assert.Throws<BoardSetupException>(() => BoardSetup.Run(Options() with { IsRoot = () => false }))!;
        Assert.That(ex.Message, Does.Contain("needs root").And.Contain("sudo fpgaaccel setup --device 0000:03:00.0"));
    }

    [Test]
    public void UnknownAddressAndUserAreNamed()
    {
        _fx.AddBoard().AddVfioNodes(12);
        Assert.That(Assert.Throws<BoardNotFoundException>(() => BoardSetup.Run(Options() with { PciAddress = "0000:09:00.0" }))!.Message,
            Does.Contain("No PCI function 0000:09:00.0"));
        Assert.Throws<InvalidPciAddressException>(() => BoardSetup.Run(Options() with { PciAddress = "nine" }));
        Assert.That(Assert.Throws<BoardSetupException>(() => BoardSetup.Run(Options(user: "nobody-here")))!.Message, Does.Contain("No user 'nobody-here'"));
    }

    [Test]
    public void DriverThatDoesNotClaimIsReported()
    {
        _fx.AddBoard("0000:03:00.0", "xdma", 12).AddVfioNodes(12);
        var ex = Assert.Throws<BoardSetupException>(() => BoardSetup.Run(Options() with { WriteAttribute = (p, v) => File.WriteAllText(p, v) }))!;
        Assert.That(ex.Message, Does.Contain("vfio-pci did not claim 0000:03:00.0").And.Contain("modprobe vfio-pci"));
    }

    private BoardSetupOptions Options(string? user = null) => new()
    {
        PciAddress = "0000:03:00.0",
        User = user,
        SysfsRoot = _fx.Sys,
        DevRoot = _fx.Dev,
        IsRoot = () => true,
        WriteAttribute = WriteLikeTheKernel,
        ResolveUser = name => name == "lab" ? (1234u, 1235u) : null,
        ChangeOwner = (path, uid, gid) => _chowns.Add((path, uid, gid)),
    };

    // Writes the fixture file, and does what the kernel would: unbind drops the driver link, drivers_probe binds
    // to the driver named in driver_override.
    private void WriteLikeTheKernel(string path, string value)
    {
        _writes.Add((path, value));
        File.WriteAllText(path, value);
        if (Path.GetFileName(path) == "unbind")
        {
            _fx.Bind(value, null);
        }
        else if (Path.GetFileName(path) == "drivers_probe")
        {
            var driver = File.ReadAllText(Path.Combine(_fx.DeviceDir(value), "driver_override")).Trim();
            _fx.Bind(value, driver == "(null)" ? null : driver);
        }
    }
}
