using FpgaAccel.Driver;
using FpgaAccel.Driver.Board;
using NUnit.Framework;

namespace FpgaAccel.Tests.Support;

/// <summary>Where the Hardware-category tests find their board: FPGAACCEL_DEVICE=&lt;pci address&gt;, else they are skipped.</summary>
internal static class HardwareBoard
{
    public const string DeviceVariable = "FPGAACCEL_DEVICE";

    /// <summary>Any PCI function bound to vfio-pci (QEMU's edu, say), for the device-agnostic VFIO tests; defaults to the board.</summary>
    public const string VfioDeviceVariable = "FPGAACCEL_VFIO_DEVICE";

    public static string RequireAddress(string variable = DeviceVariable)
    {
        var address = Environment.GetEnvironmentVariable(variable);
        if (variable == VfioDeviceVariable && string.IsNullOrWhiteSpace(address))
        {
            address = Environment.GetEnvironmentVariable(DeviceVariable);
        }

        if (string.IsNullOrWhiteSpace(address))
        {
            Assert.Ignore($"No board configured: set {variable}=<pci address> (a function bound to vfio-pci, e.g. 0000:03:00.0) to run the Hardware tests.");
        }

        return address!.Trim();
    }

    /// <summary>Opens the FA-1 at FPGAACCEL_DEVICE through the board backend.</summary>
    public static BoardBackend OpenBackend()
    {
        var address = RequireAddress();
        var options = new FpgaDeviceOptions { PciAddress = address };
        var function = new PciDiscovery(options.SysfsRoot).Describe(PciAddress.Parse(address));
        Assert.That(function, Is.Not.Null, $"{DeviceVariable}={address} names no PCI function in /sys/bus/pci/devices");
        return BoardBackend.Open(function!, options);
    }
}
