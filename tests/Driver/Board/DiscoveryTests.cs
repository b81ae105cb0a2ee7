using FpgaAccel.Driver.Board;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Board;

/// <summary>PCI discovery against fixture sysfs trees: IDs, addresses, groups, their members and drivers.</summary>
public class DiscoveryTests
{
    private SysfsFixture _fx = null!;

    [SetUp]
    public void SetUp() => _fx = new SysfsFixture();

    [TearDown]
    public void TearDown() => _fx.Dispose();

    [Test]
    public void ReportsGroupMembersWithTheirDrivers()
    {
        _fx.AddBoard("0000:03:00.0", "vfio-pci", 12)
           .AddFunction("0000:03:00.1", 0x10ee, 0x9038, "xdma", 12)
           .AddFunction("0000:00:01.0", 0x8086, 0x1901, "pcieport", 12);
        var board = new PciDiscovery(_fx.Sys).Describe(PciAddress.Parse("0000:03:00.0"))!;
        Assert.That(board.Group.Select(m => m.ToString()), Is.EqualTo(new[] { "0000:00:01.0 (pcieport)", "0000:03:00.0 (vfio-pci)", "0000:03:00.1 (xdma)" }));
        Assert.That(board.OtherGroupMembers.Select(m => m.Name), Is.EqualTo(new[] { "0000:00:01.0", "0000:03:00.1" }));
        Assert.That(board.BlockingGroupMembers.Select(m => m.Name), Is.EqualTo(new[] { "0000:03:00.1" }), "a bridge on pcieport does not block VFIO");
        Assert.That(board.GroupViable, Is.False);
    }

    [Test]
    public void GroupOfVfioAndUnboundMembersIsViable()
    {
        _fx.AddBoard("0000:03:00.0", "vfio-pci", 12).AddFunction("0000:03:00.1", 0x10ee, 0x9038, null, 12);
        var board = new PciDiscovery(_fx.Sys).Describe(PciAddress.Parse("0000:03:00.0"))!;
        Assert.That(board.GroupViable, Is.True);
        Assert.That(board.Group.Single(m => m.Name == "0000:03:00.1").Driver, Is.Null);
    }

    [Test]
    public void FindsByAddressOrByIds()
    {
        _fx.AddBoard("0000:03:00.0").AddBoard("0000:04:00.0", group: 13).AddFunction("0000:05:00.0", 0x8086, 0x1234, "e1000e", 14);
        var discovery = new PciDiscovery(_fx.Sys);
        Assert.That(discovery.Find(0x10ee, 0xfa01, null).Select(f => f.Address.ToString()), Is.EqualTo(new[] { "0000:03:00.0", "0000:04:00.0" }));
        Assert.That(discovery.Find(0x10ee, 0xfa01, PciAddress.Parse("05:00.0")).Single().Driver, Is.EqualTo("e1000e"),
            "an explicit address is described whatever its IDs");
        Assert.That(discovery.Find(0x10ee, 0xfa01, PciAddress.Parse("0000:09:00.0")), Is.Empty);
    }

    [Test]
    public void IommuOffMeansNoGroups()
    {
        _fx.AddBoard(group: null);
        var discovery = new PciDiscovery(_fx.Sys);
        Assert.That(discovery.IommuEnabled, Is.False);
        var board = discovery.FindByIds(0x10ee, 0xfa01).Single();
        Assert.That(board.IommuGroup, Is.Null);
        Assert.That(board.GroupViable, Is.False);
        _fx.AddFunction("0000:07:00.0", 0x8086, 0x1, null, 3);
        Assert.That(discovery.IommuEnabled, Is.True);
    }
}
