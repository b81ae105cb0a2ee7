using System.Globalization;

namespace FpgaAccel.Tests.Support;

/// <summary>
/// A throwaway sysfs and /dev tree, laid out as the kernel lays it out: <c>bus/pci/devices/ADDR</c> with
/// vendor, device, class, a <c>driver</c> symlink and an <c>iommu_group</c> symlink; <c>kernel/iommu_groups/N/devices/ADDR</c>
/// linking back; <c>kernel/mm/hugepages</c>; and <c>dev/vfio/{vfio,N}</c> as plain files.
/// </summary>
internal sealed class SysfsFixture : IDisposable
{
    public SysfsFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "fpgaaccel-sysfs-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(Sys, "bus", "pci", "devices"));
        Directory.CreateDirectory(Path.Combine(Sys, "kernel", "iommu_groups"));
        Directory.CreateDirectory(Dev);
        File.WriteAllText(Path.Combine(Sys, "bus", "pci", "drivers_probe"), string.Empty);
    }

    public string Root { get; }

    public string Sys => Path.Combine(Root, "sys");

    public string Dev => Path.Combine(Root, "dev");

    public string DeviceDir(string address) => Path.Combine(Sys, "bus", "pci", "devices", address);

    public string GroupNode(int group) => Path.Combine(Dev, "vfio", group.ToString(CultureInfo.InvariantCulture));

    /// <summary>A PCI function; <paramref name="group"/> null leaves it without an IOMMU group (IOMMU off).</summary>
    public SysfsFixture AddFunction(string address, ushort vendor, ushort device, string? driver, int? group)
    {
        var dir = DeviceDir(address);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "vendor"), $"0x{vendor:x4}\n");
        File.WriteAllText(Path.Combine(dir, "device"), $"0x{device:x4}\n");
        File.WriteAllText(Path.Combine(dir, "class"), "0x120000\n");
        File.WriteAllText(Path.Combine(dir, "driver_override"), "(null)\n");
        Bind(address, driver);
        if (group is { } g)
        {
            var groupDir = Path.Combine(Sys, "kernel", "iommu_groups", g.ToString(CultureInfo.InvariantCulture));
            Directory.CreateDirectory(Path.Combine(groupDir, "devices"));
            File.CreateSymbolicLink(Path.Combine(groupDir, "devices", address), dir);
            File.CreateSymbolicLink(Path.Combine(dir, "iommu_group"), groupDir);
        }

        return this;
    }

    /// <summary>An FA-1 with the spec's IDs.</summary>
    public SysfsFixture AddBoard(string address = "0000:03:00.0", string? driver = "vfio-pci", int? group = 12) =>
        AddFunction(address, 0x10ee, 0xfa01, driver, group);

    /// <summary>Points the function's driver link at <paramref name="driver"/> (null: unbound), as the kernel does on bind.</summary>
    public void Bind(string address, string? driver)
    {
        var link = Path.Combine(DeviceDir(address), "driver");
        if (File.Exists(link) || new FileInfo(link).LinkTarget is not null)
        {
            File.Delete(link);
        }

        if (driver is null)
        {
            return;
        }

        var driverDir = Path.Combine(Sys, "bus", "pci", "drivers", driver);
        Directory.CreateDirectory(driverDir);
        if (!File.Exists(Path.Combine(driverDir, "unbind")))
        {
            File.WriteAllText(Path.Combine(driverDir, "unbind"), string.Empty);
        }

        File.CreateSymbolicLink(link, driverDir);
    }

    /// <summary>/dev/vfio/vfio and /dev/vfio/N as plain files (enough for existence and access checks).</summary>
    public SysfsFixture AddVfioNodes(params int[] groups)
    {
        Directory.CreateDirectory(Path.Combine(Dev, "vfio"));
        File.WriteAllText(Path.Combine(Dev, "vfio", "vfio"), string.Empty);
        foreach (var g in groups)
        {
            File.WriteAllText(GroupNode(g), string.Empty);
        }

        return this;
    }

    public SysfsFixture AddHugePages(int free2M, int free1G = 0)
    {
        foreach (var (name, free) in new[] { ("hugepages-2048kB", free2M), ("hugepages-1048576kB", free1G) })
        {
            var dir = Path.Combine(Sys, "kernel", "mm", "hugepages", name);
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "nr_hugepages"), $"{free}\n");
            File.WriteAllText(Path.Combine(dir, "free_hugepages"), $"{free}\n");
        }

        return this;
    }

    /// <summary>
    /// A USB device as the kernel lays it out: <c>devices/usbB/NAME</c> with idVendor, idProduct, bcdDevice, busnum, devnum
    /// and product, linked from <c>bus/usb/devices/NAME</c>; one interface directory <c>NAME:1.I</c> per entry of
    /// <paramref name="interfaceDrivers"/> (null: no driver), with a <c>ttyUSBn</c> child when the driver is ftdi_sio; and
    /// its usbfs node <c>dev/bus/usb/BBB/DDD</c> as a plain file.
    /// </summary>
    public SysfsFixture AddUsbDevice(string name, ushort vendor, ushort product, int bus, int address, ushort release, params string?[] interfaceDrivers)
    {
        var dir = Path.Combine(Sys, "devices", "pci0000:00", $"usb{bus}", name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "idVendor"), $"{vendor:x4}\n");
        File.WriteAllText(Path.Combine(dir, "idProduct"), $"{product:x4}\n");
        File.WriteAllText(Path.Combine(dir, "bcdDevice"), $"{release:x4}\n");
        File.WriteAllText(Path.Combine(dir, "busnum"), $"{bus}\n");
        File.WriteAllText(Path.Combine(dir, "devnum"), $"{address}\n");
        File.WriteAllText(Path.Combine(dir, "product"), "FT2232H Dual USB-UART/FIFO IC\n");
        var links = Path.Combine(Sys, "bus", "usb", "devices");
        Directory.CreateDirectory(links);
        File.CreateSymbolicLink(Path.Combine(links, name), dir);
        for (var i = 0; i < interfaceDrivers.Length; i++)
        {
            var iface = Path.Combine(dir, $"{name}:1.{i}");
            Directory.CreateDirectory(iface);
            File.WriteAllText(Path.Combine(iface, "bInterfaceNumber"), $"{i:x2}\n");
            File.CreateSymbolicLink(Path.Combine(links, $"{name}:1.{i}"), iface);
            if (interfaceDrivers[i] is { } driver)
            {
                var driverDir = Path.Combine(Sys, "bus", "usb", "drivers", driver);
                Directory.CreateDirectory(driverDir);
                File.CreateSymbolicLink(Path.Combine(iface, "driver"), driverDir);
                if (driver == "ftdi_sio")
                {
                    Directory.CreateDirectory(Path.Combine(iface, $"ttyUSB{i}"));
                }
            }
        }

        var node = Path.Combine(Dev, "bus", "usb", $"{bus:D3}");
        Directory.CreateDirectory(node);
        File.WriteAllText(Path.Combine(node, $"{address:D3}"), string.Empty);
        return this;
    }

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
