using System.Globalization;

namespace FpgaAccel.Driver.Board;

/// <summary>One PCI function as sysfs describes it.</summary>
/// <param name="Address">Its address.</param>
/// <param name="VendorId">PCI vendor ID.</param>
/// <param name="DeviceId">PCI device ID.</param>
/// <param name="ClassCode">24-bit class code (base class in the top byte).</param>
/// <param name="Driver">Name of the bound driver, or null when none is bound.</param>
/// <param name="IommuGroup">IOMMU group number, or null when the IOMMU is off.</param>
/// <param name="GroupMembers">Every function in the same IOMMU group, this one included.</param>
public sealed record PciFunction(
    PciAddress Address,
    ushort VendorId,
    ushort DeviceId,
    uint ClassCode,
    string? Driver,
    int? IommuGroup,
    IReadOnlyList<PciAddress> GroupMembers)
{
    /// <summary>The driver name VFIO's PCI functions are bound to.</summary>
    public const string VfioPciDriver = "vfio-pci";

    /// <summary>True when vfio-pci owns the function.</summary>
    public bool BoundToVfio => Driver == VfioPciDriver;

    /// <summary>Every device of the IOMMU group (this one included) with the driver bound to it.</summary>
    public IReadOnlyList<IommuGroupMember> Group { get; init; } = [];

    /// <summary>The other devices of the IOMMU group.</summary>
    public IEnumerable<IommuGroupMember> OtherGroupMembers => Group.Where(m => m.Name != Address.ToString());

    /// <summary>Members that make the group non-viable for VFIO (bound to a driver that does DMA on its own).</summary>
    public IEnumerable<IommuGroupMember> BlockingGroupMembers => Group.Where(m => !m.AllowsVfio);

    /// <summary>True when every member of the group lets VFIO use it (linux/vfio.h VFIO_GROUP_FLAGS_VIABLE).</summary>
    public bool GroupViable => IommuGroup is not null && !BlockingGroupMembers.Any();
}

/// <summary>One device in an IOMMU group (<c>kernel/iommu_groups/N/devices/NAME</c>) and its driver.</summary>
/// <param name="Name">The device name: a PCI address for PCI devices.</param>
/// <param name="Driver">The bound driver, or null.</param>
public sealed record IommuGroupMember(string Name, string? Driver)
{
    /// <summary>
    /// True when the member does not stop VFIO from using the group: unbound, bound to vfio-pci, or bound
    /// to a driver the kernel lets share a group with VFIO because it does no DMA of its own (pci-stub, and
    /// pcieport for bridges: both set driver_managed_dma).
    /// </summary>
    public bool AllowsVfio => Driver is null or PciFunction.VfioPciDriver or "pci-stub" or "pcieport";

    /// <summary>The member and its driver, as messages list them: <c>0000:03:00.1 (e1000e)</c>.</summary>
    public override string ToString() => $"{Name} ({Driver ?? "no driver"})";
}

/// <summary>
/// Finds PCI functions under a sysfs root (<c>/sys</c>, or a fixture tree in tests):
/// <c>bus/pci/devices/ADDR/{vendor,device,class,driver,iommu_group}</c>.
/// </summary>
public sealed class PciDiscovery
{
    /// <summary>Looks for PCI functions under <paramref name="sysfsRoot"/> (<c>/sys</c> on a host).</summary>
    public PciDiscovery(string sysfsRoot = "/sys") => SysfsRoot = sysfsRoot;

    /// <summary>The sysfs tree searched: <c>/sys</c>, or a fixture tree in tests and containers.</summary>
    public string SysfsRoot { get; }

    /// <summary>Where PCI functions are listed.</summary>
    public string DevicesDirectory => Path.Combine(SysfsRoot, "bus", "pci", "devices");

    /// <summary>The function at <paramref name="address"/> when given, else every function with the IDs.</summary>
    public IReadOnlyList<PciFunction> Find(ushort vendorId, ushort deviceId, PciAddress? address)
    {
        if (address is { } a)
        {
            return Describe(a) is { } one ? [one] : [];
        }

        return FindByIds(vendorId, deviceId);
    }

    /// <summary>True when sysfs lists at least one IOMMU group (the IOMMU is on).</summary>
    public bool IommuEnabled
    {
        get
        {
            var groups = Path.Combine(SysfsRoot, "kernel", "iommu_groups");
            return Directory.Exists(groups) && Directory.EnumerateFileSystemEntries(groups).Any();
        }
    }

    /// <summary>Every function with the given IDs, in address order.</summary>
    public IReadOnlyList<PciFunction> FindByIds(ushort vendorId, ushort deviceId)
    {
        if (!Directory.Exists(DevicesDirectory))
        {
            return [];
        }

        var found = new List<PciFunction>();
        foreach (var entry in Directory.EnumerateFileSystemEntries(DevicesDirectory).Order(StringComparer.Ordinal))
        {
            if (!PciAddress.TryParse(Path.GetFileName(entry), out var address))
            {
                continue;
            }

            var function = Describe(address);
            if (function is not null && function.VendorId == vendorId && function.DeviceId == deviceId)
            {
                found.Add(function);
            }
        }

        return found;
    }

    /// <summary>The function at <paramref name="address"/>, or null when sysfs has none there.</summary>
    public PciFunction? Describe(PciAddress address)
    {
        var dir = Path.Combine(DevicesDirectory, address.ToString());
        if (!Directory.Exists(dir))
        {
            return null;
        }

        var vendor = ReadHex(Path.Combine(dir, "vendor"));
        var device = ReadHex(Path.Combine(dir, "device"));
        if (vendor is null || device is null)
        {
            return null;
        }

        var cls = ReadHex(Path.Combine(dir, "class")) ?? 0;
        var driver = LinkName(Path.Combine(dir, "driver"));
        int? group = int.TryParse(LinkName(Path.Combine(dir, "iommu_group")), NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g : null;
        var members = group is null ? [address] : GroupMembers(group.Value);
        IReadOnlyList<IommuGroupMember> details = group is null ? [new IommuGroupMember(address.ToString(), driver)] : GroupDetails(group.Value);
        return new PciFunction(address, (ushort)vendor.Value, (ushort)device.Value, (uint)cls, driver, group, members) { Group = details };
    }

    /// <summary>Every device of IOMMU group <paramref name="group"/>, PCI or not, with its bound driver.</summary>
    public IReadOnlyList<IommuGroupMember> GroupDetails(int group)
    {
        var dir = Path.Combine(SysfsRoot, "kernel", "iommu_groups", group.ToString(CultureInfo.InvariantCulture), "devices");
        if (!Directory.Exists(dir))
        {
            return [];
        }

        return Directory.EnumerateFileSystemEntries(dir)
            .Order(StringComparer.Ordinal)
            .Select(entry => new IommuGroupMember(Path.GetFileName(entry), LinkName(Path.Combine(entry, "driver"))))
            .ToList();
    }

    /// <summary>Functions in IOMMU group <paramref name="group"/> (from <c>kernel/iommu_groups/N/devices</c>).</summary>
    public IReadOnlyList<PciAddress> GroupMembers(int group)
    {
        var dir = Path.Combine(SysfsRoot, "kernel", "iommu_groups", group.ToString(CultureInfo.InvariantCulture), "devices");
        if (!Directory.Exists(dir))
        {
            return [];
        }

        var members = new List<PciAddress>();
        foreach (var entry in Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal))
        {
            if (PciAddress.TryParse(Path.GetFileName(entry), out var address))
            {
                members.Add(address);
            }
        }

        return members;
    }

    private static ulong? ReadHex(string path)
    {
        try
        {
            var text = File.ReadAllText(path).Trim();
            if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            {
                text = text[2..];
            }

            return ulong.TryParse(text, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var value) ? value : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    // sysfs links (driver, iommu_group) point at a directory whose name is the answer.
    private static string? LinkName(string path)
    {
        var target = new FileInfo(path).LinkTarget;
        return target is null ? null : Path.GetFileName(target.TrimEnd('/'));
    }
}
