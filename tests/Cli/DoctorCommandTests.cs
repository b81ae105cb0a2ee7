using System.Text.Json;
using FpgaAccel.Cli;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Driver;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Cli;

/// <summary>fpgaaccel doctor and setup in-process: on this host (no IOMMU, no board) and on fixture trees.</summary>
public class DoctorCommandTests
{
    [Test]
    public void DoctorJsonOnThisHostFailsAndGivesAFixForEachMiss()
    {
        var (code, output, error) = Run("doctor", "--json");
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        var checks = root.GetProperty("checks").EnumerateArray().ToList();
        var failed = checks.Where(c => c.GetProperty("status").GetString() == "fail").ToList();
        Assert.That(code, Is.EqualTo(failed.Count > 0 ? 1 : 0), error);
        Assert.That(root.GetProperty("healthy").GetBoolean(), Is.EqualTo(failed.Count == 0));
        foreach (var check in failed)
        {
            Assert.That(check.GetProperty("fix").GetString(), Is.Not.Null.And.Not.Empty, check.GetProperty("name").GetString());
        }

        var iommuOn = Directory.Exists("/sys/kernel/iommu_groups") && Directory.EnumerateFileSystemEntries("/sys/kernel/iommu_groups").Any();
        var iommu = checks.Single(c => c.GetProperty("name").GetString() == "iommu");
        Assert.That(iommu.GetProperty("status").GetString(), Is.EqualTo(iommuOn ? "pass" : "fail"));
        if (!iommuOn)
        {
            // This build machine: no IOMMU, no /dev/vfio, no board.
            Assert.That(code, Is.EqualTo(1));
            Assert.That(iommu.GetProperty("fix").GetString(), Does.Contain("intel_iommu=on"));
            Assert.That(failed.Select(c => c.GetProperty("name").GetString()), Is.SupersetOf(new[] { "iommu", "vfio-container", "device" }));
        }
    }

    [Test]
    public void DoctorTextOnAHealthyFixtureExitsZero()
    {
        using var fx = new SysfsFixture();
        fx.AddBoard().AddVfioNodes(12).AddHugePages(16);
        var (code, output, error) = Run("doctor", "--sysfs", fx.Sys, "--dev", fx.Dev, "--pin-bytes", "1M");
        Assert.That(code, Is.Zero, output + error);
        Assert.That(output, Does.Contain("[ok  ] driver").And.Contain("0000:03:00.0 is bound to vfio-pci").And.Contain("All checks passed."));
    }

    [Test]
    public void DoctorJsonOnAFixtureListsTheBoardAndItsGroup()
    {
        using var fx = new SysfsFixture();
        fx.AddBoard("0000:03:00.0", "xdma", 5).AddFunction("0000:03:00.1", 0x8086, 0x10d3, "e1000e", 5).AddVfioNodes().AddHugePages(16);
        var (code, output, _) = Run("doctor", "--json", "--sysfs", fx.Sys, "--dev", fx.Dev, "--pin-bytes", "4K");
        Assert.That(code, Is.EqualTo(1));
        using var doc = JsonDocument.Parse(output);
        var device = doc.RootElement.GetProperty("devices")[0];
        Assert.That(device.GetProperty("address").GetString(), Is.EqualTo("0000:03:00.0"));
        Assert.That(device.GetProperty("iommu_group").GetInt32(), Is.EqualTo(5));
        Assert.That(device.GetProperty("group_members").EnumerateArray().Select(m => m.GetProperty("driver").GetString()), Is.EqualTo(new[] { "xdma", "e1000e" }));
        var failed = doc.RootElement.GetProperty("checks").EnumerateArray().Where(c => c.GetProperty("status").GetString() == "fail")
            .Select(c => c.GetProperty("name").GetString());
        Assert.That(failed, Is.EquivalentTo(new[] { "driver", "group", "access" }));
    }

    [TestCase("--vendor-id", "xyz", "--vendor-id 'xyz'")]
    [TestCase("--pin-bytes", "-1", "--pin-bytes '-1'")]
    public void DoctorBadOptionIsUsageError(string option, string value, string message)
    {
        var (code, _, error) = Run("doctor", option, value);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(error, Does.Contain(message));
    }

    [Test]
    public void SetupOnABoundBoardIsIdempotentOrRefusesWithoutRoot()
    {
        using var fx = new SysfsFixture();
        fx.AddBoard().AddVfioNodes(12);
        File.WriteAllText(Path.Combine(fx.DeviceDir("0000:03:00.0"), "driver_override"), "vfio-pci\n");
        var (code, output, error) = Run("setup", "--device", "0000:03:00.0", "--sysfs", fx.Sys, "--dev", fx.Dev);
        if (UnixAccounts.EffectiveUserId != 0)
        {
            Assert.That(code, Is.EqualTo(1));
            Assert.That(error, Does.Contain("needs root"));
            return;
        }

        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("already bound to vfio-pci").And.Contain("nothing to change").And.Contain("memlock"));
    }

    [Test]
    public void SetupRefusesAForeignDriverInTheGroup()
    {
        using var fx = new SysfsFixture();
        fx.AddBoard("0000:03:00.0", "xdma", 12).AddFunction("0000:03:00.1", 0x8086, 0x10d3, "e1000e", 12).AddVfioNodes(12);
        var (code, _, error) = Run("setup", "--device", "0000:03:00.0", "--sysfs", fx.Sys, "--dev", fx.Dev);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.Contain(UnixAccounts.EffectiveUserId == 0 ? "0000:03:00.1 (e1000e)" : "needs root"));
    }

    [Test]
    public void SetupNeedsADeviceAndAValidAddress()
    {
        Assert.That(Run("setup").Code, Is.Not.Zero);
        if (UnixAccounts.EffectiveUserId == 0)
        {
            var (code, _, error) = Run("setup", "--device", "banana");
            Assert.That(code, Is.EqualTo(2));
            Assert.That(error, Does.Contain("'banana' is not a PCI address"));
        }
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = FpgaAccelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
