using System.Globalization;

namespace FpgaAccel.Interop.Vfio;

/// <summary>Where <see cref="VfioPciDevice.Open"/> looks, and which IOMMU model it asks for.</summary>
public sealed record VfioOpenOptions
{
    /// <summary>Root of sysfs (the device's <c>iommu_group</c> link is read there).</summary>
    public string SysfsRoot { get; init; } = "/sys";

    /// <summary>Root of the device nodes (<c>vfio/vfio</c> and <c>vfio/N</c> live there).</summary>
    public string DevRoot { get; init; } = "/dev";

    /// <summary>The IOMMU model to set on the container.</summary>
    public VfioIommuType IommuType { get; init; } = VfioIommuType.Type1v2;
}

/// <summary>
/// One PCI function opened through VFIO, any device: the container, its group and the device descriptor,
/// opened in the order the kernel needs and closed in reverse. Nothing stays open when a step fails.
/// </summary>
public sealed class VfioPciDevice : IDisposable
{
    private VfioPciDevice(string address, int groupNumber, VfioContainer container, VfioGroup group, VfioDevice device, VfioDeviceInfo info)
    {
        Address = address;
        GroupNumber = groupNumber;
        Container = container;
        Group = group;
        Device = device;
        Info = info;
    }

    /// <summary>The PCI address, as sysfs spells it (0000:03:00.0).</summary>
    public string Address { get; }

    /// <summary>The IOMMU group number.</summary>
    public int GroupNumber { get; }

    /// <summary>The container: the IOMMU context the device's DMA mappings live in.</summary>
    public VfioContainer Container { get; }

    /// <summary>The device's IOMMU group, attached to <see cref="Container"/>.</summary>
    public VfioGroup Group { get; }

    /// <summary>The device descriptor: regions, config space, IRQs, reset.</summary>
    public VfioDevice Device { get; }

    /// <summary>VFIO_DEVICE_GET_INFO, read at open.</summary>
    public VfioDeviceInfo Info { get; }

    /// <summary>
    /// Opens <paramref name="pciAddress"/>: reads its IOMMU group from sysfs, opens the container
    /// (API version and IOMMU extension checked), opens the group and checks it is viable, attaches it,
    /// sets the IOMMU model, and gets the device descriptor.
    /// </summary>
    public static VfioPciDevice Open(string pciAddress, VfioOpenOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pciAddress);
        options ??= new VfioOpenOptions();
        var groupNumber = FindGroup(options.SysfsRoot, pciAddress);
        var container = VfioContainer.Open(Path.Combine(options.DevRoot, "vfio", "vfio"), options.IommuType);
        VfioGroup? group = null;
        VfioDevice? device = null;
        try
        {
            group = VfioGroup.Open(groupNumber, options.DevRoot);
            group.EnsureViable();
            group.SetContainer(container);
            container.SetIommu(options.IommuType);
            device = group.OpenDevice(pciAddress);
            var info = device.GetInfo();
            return new VfioPciDevice(pciAddress, groupNumber, container, group, device, info);
        }
        catch
        {
            // Reverse order: device, group (closing it detaches it from the container), container.
            device?.Dispose();
            group?.Dispose();
            container.Dispose();
            throw;
        }
    }

    /// <summary>The IOMMU group of <paramref name="pciAddress"/>: the name of the target of its sysfs <c>iommu_group</c> link.</summary>
    public static int FindGroup(string sysfsRoot, string pciAddress)
    {
        var deviceDir = Path.Combine(sysfsRoot, "bus", "pci", "devices", pciAddress);
        if (!Directory.Exists(deviceDir))
        {
            throw new VfioException(
                $"No PCI function {pciAddress} in {Path.Combine(sysfsRoot, "bus", "pci", "devices")}: check the address with 'lspci -D'.");
        }

        var link = new FileInfo(Path.Combine(deviceDir, "iommu_group")).LinkTarget;
        if (link is null || !int.TryParse(Path.GetFileName(link.TrimEnd('/')), NumberStyles.None, CultureInfo.InvariantCulture, out var group))
        {
            throw new VfioException(
                $"PCI function {pciAddress} has no IOMMU group ({Path.Combine(deviceDir, "iommu_group")} is missing): the IOMMU is off. " +
                "Enable it (intel_iommu=on or amd_iommu=on on the kernel command line, and VT-d/AMD-Vi in the firmware) and reboot.");
        }

        return group;
    }

    /// <summary>Closes the device, the group and the container, in that order (the reverse of opening).</summary>
    public void Dispose()
    {
        Device.Dispose();
        Group.Dispose();
        Container.Dispose();
    }
}
