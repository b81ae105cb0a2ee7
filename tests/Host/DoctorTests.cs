using FpgaAccel.Driver.Board;
using FpgaAccel.Host;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Driver;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Host;

/// <summary>The doctor against fixture trees: a healthy host, then one misconfiguration at a time, each reported with a fix.</summary>
public class DoctorTests
{
    private SysfsFixture _fx = null!;

    [SetUp]
    public void SetUp()
    {
        _fx = new SysfsFixture();
        _fx.AddBoard("0000:03:00.0", "vfio-pci", 12).AddVfioNodes(12).AddHugePages(free2M: 64);
    }

    [TearDown]
    public void TearDown() => _fx.Dispose();

    [Test]
    public void HealthyHostPassesEveryCheck()
    {
        var report = Doctor.Run(Options());
        Assert.That(report.Checks.Select(c => c.Name), Is.EqualTo(new[] { "iommu", "vfio-container", "device", "driver", "group", "access", "memlock", "hugepages" }));
        Assert.That(report.Checks.Where(c => c.Status != CheckStatus.Pass), Is.Empty);
        Assert.That(report.Healthy, Is.True);
        Assert.That(report.Checks.All(c => c.Fix is null), Is.True);
    }

    [Test]
    public void NoIommu()
    {
        using var fx = new SysfsFixture();
        fx.AddBoard(group: null).AddHugePages(8);
        var report = Doctor.Run(Options() with { SysfsRoot = fx.Sys, DevRoot = fx.Dev });
        AssertFails(report, "iommu", "is empty or missing", "intel_iommu=on");
        AssertFails(report, "vfio-container", "is missing", "modprobe vfio-pci");
        AssertFails(report, "group", "has no IOMMU group", "Enable the IOMMU");
    }

    [Test]
    public void NoDevice()
    {
        var report = Doctor.Run(Options() with { DeviceId = 0xfa02 });
        AssertFails(report, "device", "no vendor 0x10ee device 0xfa02", "lspci -nn -d 10ee:fa02");
        Assert.That(report.Checks.Where(c => c.Name is "driver" or "group" or "access").Select(c => c.Status), Is.All.EqualTo(CheckStatus.Skipped));
    }

    [Test]
    public void NoDeviceAtTheGivenAddress()
    {
        AssertFails(Doctor.Run(Options() with { PciAddress = "0000:09:00.0" }), "device", "no PCI function 0000:09:00.0", "lspci");
        AssertFails(Doctor.Run(Options() with { PciAddress = "not-an-address" }), "device", "'not-an-address' is not a PCI address", "0000:03:00.0");
    }

    [Test]
    public void WrongDriver()
    {
        _fx.Bind("0000:03:00.0", "xdma");
        var report = Doctor.Run(Options());
        AssertFails(report, "driver", "0000:03:00.0 is bound to xdma, not vfio-pci", "fpgaaccel setup --device 0000:03:00.0");
        AssertFails(report, "group", "not viable: 0000:03:00.0 (xdma)", "vfio-pci");
    }

    [Test]
    public void NonViableGroup()
    {
        _fx.AddFunction("0000:03:00.1", 0x8086, 0x10d3, "e1000e", 12);
        var report = Doctor.Run(Options());
        Assert.That(report.Checks.Single(c => c.Name == "driver").Status, Is.EqualTo(CheckStatus.Pass));
        AssertFails(report, "group", "IOMMU group 12 of 0000:03:00.0 is not viable: 0000:03:00.1 (e1000e)", "own IOMMU group");
    }

    [Test]
    public void NoAccessToTheGroupNode()
    {
        var report = Doctor.Run(Options() with { CanAccess = _ => false });
        AssertFails(report, "access", $"{_fx.GroupNode(12)} is not readable and writable", "fpgaaccel setup --device 0000:03:00.0 --user");
    }

    [Test]
    public void MissingGroupNode()
    {
        File.Delete(_fx.GroupNode(12));
        AssertFails(Doctor.Run(Options()), "access", $"{_fx.GroupNode(12)} does not exist", "rebind");
    }

    [Test]
    public void LowMemlock()
    {
        var report = Doctor.Run(Options() with { MemoryLockLimit = () => new ResourceLimit(8 << 20, 8 << 20), PinBytes = 256UL << 20, HasIpcLock = () => false });
        AssertFails(report, "memlock", "below the 256 MiB", "262144 KiB");
        Assert.That(report.Checks.Single(c => c.Name == "memlock").Fix, Does.Contain("limits.conf").And.Contain("LimitMEMLOCK=268435456"));
    }

    [Test]
    public void LowMemlockWithIpcLockPassesAsVfioDoesNotLimitIt()
    {
        var report = Doctor.Run(Options() with { MemoryLockLimit = () => new ResourceLimit(8 << 20, 8 << 20), PinBytes = 256UL << 20, HasIpcLock = () => true });
        var check = report.Checks.Single(c => c.Name == "memlock");
        Assert.That(check.Status, Is.EqualTo(CheckStatus.Pass));
        Assert.That(check.Detail, Does.Contain("CAP_IPC_LOCK"));
    }

    [Test]
    public void UnlimitedMemlockPasses() =>
        Assert.That(Doctor.Run(Options() with { MemoryLockLimit = () => new ResourceLimit(ulong.MaxValue, ulong.MaxValue) }).Healthy, Is.True);

    [Test]
    public void NoHugePages()
    {
        using var fx = new SysfsFixture();
        fx.AddBoard().AddVfioNodes(12).AddHugePages(free2M: 0);
        var report = Doctor.Run(Options() with { SysfsRoot = fx.Sys, DevRoot = fx.Dev });
        AssertFails(report, "hugepages", "no free huge pages (hugepages-1048576kB: 0 free of 0, hugepages-2048kB: 0 free of 0)", "nr_hugepages");
        Assert.That(report.Checks.Count(c => c.Status == CheckStatus.Fail), Is.EqualTo(1), "only that check fails");
    }

    private static void AssertFails(DoctorReport report, string name, string detail, string fix)
    {
        Assert.That(report.Healthy, Is.False);
        var check = report.Checks.FirstOrDefault(c => c.Name == name && c.Status == CheckStatus.Fail);
        Assert.That(check, Is.Not.Null, $"check '{name}' should fail; got: " + string.Join("; ", report.Checks));
        Assert.That(check!.Detail, Does.Contain(detail));
        Assert.That(check.Fix, Does.Contain(fix));
    }

    private DoctorOptions Options() => new()
    {
        SysfsRoot = _fx.Sys,
        DevRoot = _fx.Dev,
        CanAccess = _ => true,
        MemoryLockLimit = () => new ResourceLimit(1UL << 30, 1UL << 30),
    };
}
