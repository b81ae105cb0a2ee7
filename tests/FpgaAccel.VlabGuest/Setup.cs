using System.Diagnostics;
using FpgaAccel.Interop.Vfio;

namespace FpgaAccel.VlabGuest;

/// <summary>
/// Binds a device (edu in the virtual lab, the FA-1 on the virtual board) to vfio-pci with the real <c>fpgaaccel setup</c> (driver_override, drivers_probe,
/// chown of the group node) against the guest's sysfs, checks the result in sysfs and /dev, and
/// runs it again to check that a second run changes nothing.
/// </summary>
internal static class Setup
{
    private static readonly TimeSpan s_nodeTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Returns the device's IOMMU group once it is bound to vfio-pci and its node exists.</summary>
    public static int Bind(CheckRunner runner, string address)
    {
        var (code, output) = FpgaAccelTool.Run(runner, ["setup", "--device", address, "--user", "root", "--pin-bytes", "4M"], show: true);
        Expect.Equal(0, code, "exit code of 'fpgaaccel setup'");
        Expect.True(output.Contains($"{address} is bound to vfio-pci", StringComparison.Ordinal), $"setup did not report {address} bound to vfio-pci");

        var driver = new FileInfo($"/sys/bus/pci/devices/{address}/driver").LinkTarget;
        Expect.Equal("vfio-pci", Path.GetFileName(driver ?? "(none)"), $"the driver of {address} in sysfs");
        var group = VfioPciDevice.FindGroup("/sys", address);
        var node = $"/dev/vfio/{group}";
        var clock = Stopwatch.StartNew();
        while (!File.Exists(node))
        {
            Expect.True(clock.Elapsed < s_nodeTimeout, $"{node} did not appear within {s_nodeTimeout.TotalSeconds} s after setup");
            Thread.Sleep(10);
        }

        (code, output) = FpgaAccelTool.Run(runner, ["setup", "--device", address, "--pin-bytes", "4M"], show: true);
        Expect.Equal(0, code, "exit code of the second 'fpgaaccel setup'");
        Expect.True(output.Contains("nothing to change", StringComparison.Ordinal), "a second setup run changed something");
        return group;
    }
}
