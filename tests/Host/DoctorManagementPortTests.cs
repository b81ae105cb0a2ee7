using FpgaAccel.Host;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Usb;
using FpgaAccel.Management;
using FpgaAccel.Management.Ftdi;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Host;

/// <summary>The doctor's management-port checks against fixture trees: found, access, kernel driver, firmware.</summary>
public class DoctorManagementPortTests
{
    private SysfsFixture _fx = null!;
    private FtdiOptions? _queried;

    [SetUp]
    public void SetUp()
    {
        _fx = new SysfsFixture();
        _fx.AddBoard().AddVfioNodes(12).AddHugePages(free2M: 64);
        _queried = null;
    }

    [TearDown]
    public void TearDown() => _fx.Dispose();

    [Test]
    public void NotAskedNothingIsChecked() =>
        Assert.That(Doctor.Run(Options() with { ManagementPort = null }).Checks.Select(c => c.Name), Has.None.StartWith("bmc-"));

    [Test]
    public void AHostWithoutThePortIsStillHealthy()
    {
        var report = Doctor.Run(Options());
        Assert.That(Statuses(report), Is.EqualTo(new[] { CheckStatus.Skipped, CheckStatus.Skipped, CheckStatus.Skipped, CheckStatus.Skipped }));
        Assert.That(report.Checks.Single(c => c.Name == "bmc-port").Detail, Does.Contain("no USB bridge 0403:6010").And.Contain("optional"));
        Assert.That(report.Healthy, Is.True);
        Assert.That(report.ManagementPorts, Is.Empty);
        Assert.That(_queried, Is.Null);
    }

    [Test]
    public void TheBoardsBridgeIsFoundWithItsDriverAndFirmware()
    {
        _fx.AddUsbDevice("1-4.2", 0x0403, 0x6010, bus: 1, address: 7, release: 0x0700, "ftdi_sio", "ftdi_sio");
        var report = Doctor.Run(Options());

        Assert.That(Statuses(report), Is.All.EqualTo(CheckStatus.Pass));
        Assert.That(Detail(report, "bmc-port"), Does.Contain("0403:6010").And.Contain("1-4.2").And.Contain("interface B"));
        Assert.That(Detail(report, "bmc-driver"), Does.Contain("held by the kernel driver ftdi_sio (/dev/ttyUSB1)"));
        Assert.That(Detail(report, "bmc-firmware"), Does.Contain("FA1-BMC 1.2.0"));
        Assert.That(_queried, Is.EqualTo(new FtdiOptions { UsbPath = "1-4.2", Interface = 1, SysfsRoot = _fx.Sys }), "the query goes to the bridge found, interface B");
        var port = report.ManagementPorts.Single();
        Assert.That(port, Is.EqualTo(new ManagementPortInfo("1-4.2", new UsbDeviceId(0x0403, 0x6010), Path.Combine(_fx.Dev, "bus", "usb", "001", "007"), 1, "ftdi_sio", "ttyUSB1", "1.2.0")));
    }

    [Test]
    public void QemusSingleChannelBridgeIsFoundOnInterfaceA()
    {
        _fx.AddUsbDevice("1-1", 0x0403, 0x6001, bus: 1, address: 2, release: 0x0400, (string?)null);
        var report = Doctor.Run(Options() with { ManagementPort = new FtdiOptions { Id = new UsbDeviceId(0x0403, 0x6001) } });
        Assert.That(Statuses(report), Is.All.EqualTo(CheckStatus.Pass));
        Assert.That(Detail(report, "bmc-driver"), Is.EqualTo("no kernel driver holds interface A"));
        Assert.That(_queried!.Interface, Is.Zero);
    }

    [Test]
    public void NoAccessNamesTheUdevRuleAndSkipsTheFirmware()
    {
        _fx.AddUsbDevice("1-4.2", 0x0403, 0x6010, bus: 1, address: 7, release: 0x0700, "ftdi_sio", "ftdi_sio");
        var report = Doctor.Run(Options() with { CanAccess = path => !path.Contains("/bus/usb/", StringComparison.Ordinal) });
        var access = report.Checks.Single(c => c.Name == "bmc-access");
        Assert.That(access.Status, Is.EqualTo(CheckStatus.Fail));
        Assert.That(access.Fix, Does.Contain("ATTRS{idProduct}==\"6010\"").And.Contain("udevadm"));
        Assert.That(report.Checks.Single(c => c.Name == "bmc-firmware").Status, Is.EqualTo(CheckStatus.Skipped));
        Assert.That(report.Healthy, Is.False);
        Assert.That(_queried, Is.Null);
    }

    [Test]
    public void ABmcThatDoesNotAnswerFailsWithTheReason()
    {
        _fx.AddUsbDevice("1-4.2", 0x0403, 0x6010, bus: 1, address: 7, release: 0x0700, "ftdi_sio", "ftdi_sio");
        var report = Doctor.Run(Options() with
        {
            QueryBmcVersion = _ => throw new BmcTimeoutException("VERSION", TimeSpan.FromSeconds(1), "", "usb 1-4.2"),
        });
        var firmware = report.Checks.Single(c => c.Name == "bmc-firmware");
        Assert.That(firmware.Status, Is.EqualTo(CheckStatus.Fail));
        Assert.That(firmware.Detail, Does.Contain("No reply to VERSION within 1000 ms"));
        Assert.That(firmware.Fix, Does.Contain("fpgaaccel bmc version -v"));
    }

    [Test]
    public void SeveralBridgesNeedAUsbPath()
    {
        _fx.AddUsbDevice("1-4.2", 0x0403, 0x6010, bus: 1, address: 7, release: 0x0700, "ftdi_sio", "ftdi_sio")
           .AddUsbDevice("2-1", 0x0403, 0x6010, bus: 2, address: 3, release: 0x0700, "ftdi_sio", "ftdi_sio");
        var report = Doctor.Run(Options());
        var port = report.Checks.Single(c => c.Name == "bmc-port");
        Assert.That(port.Status, Is.EqualTo(CheckStatus.Fail));
        Assert.That(port.Detail, Does.Contain("2 USB bridges match 0403:6010: 1-4.2, 2-1"));
        Assert.That(port.Fix, Does.Contain("--usb-path"));

        report = Doctor.Run(Options() with { ManagementPort = new FtdiOptions { UsbPath = "2-1" } });
        Assert.That(Statuses(report), Is.All.EqualTo(CheckStatus.Pass));
        Assert.That(_queried!.UsbPath, Is.EqualTo("2-1"));
    }

    [Test]
    public void ABridgeWithoutTheBmcsInterfaceFails()
    {
        _fx.AddUsbDevice("1-1", 0x0403, 0x6011, bus: 1, address: 2, release: 0x0800, "ftdi_sio", "ftdi_sio", "ftdi_sio", "ftdi_sio");
        var report = Doctor.Run(Options() with { ManagementPort = new FtdiOptions { Id = new UsbDeviceId(0x0403, 0x6011) } });
        Assert.That(report.Checks.Single(c => c.Name == "bmc-port").Fix, Does.Contain("--usb-interface"));

        report = Doctor.Run(Options() with { ManagementPort = new FtdiOptions { Interface = 1 } });
        Assert.That(report.Checks.Single(c => c.Name == "bmc-port").Status, Is.EqualTo(CheckStatus.Skipped), "no 0403:6010 at all");
    }

    private static IEnumerable<CheckStatus> Statuses(DoctorReport report) =>
        report.Checks.Where(c => c.Name.StartsWith("bmc-", StringComparison.Ordinal)).Select(c => c.Status);

    private static string Detail(DoctorReport report, string name) => report.Checks.Single(c => c.Name == name).Detail;

    private DoctorOptions Options() => new()
    {
        SysfsRoot = _fx.Sys,
        DevRoot = _fx.Dev,
        CanAccess = _ => true,
        MemoryLockLimit = () => new ResourceLimit(1UL << 30, 1UL << 30),
        ManagementPort = new FtdiOptions(),
        QueryBmcVersion = port =>
        {
            _queried = port;
            return new BmcVersionAnswer(new BmcFirmwareVersion(1, 2, 0), TimeSpan.FromMilliseconds(0.8));
        },
    };
}
