using System.Globalization;
using FpgaAccel.Driver.Board;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using FpgaAccel.Management;
using FpgaAccel.Management.Ftdi;

namespace FpgaAccel.Host;

/// <summary>What <see cref="Doctor.Run"/> checks, and where it looks.</summary>
public sealed record DoctorOptions
{
    /// <summary>Root of sysfs; tests point it at a fixture tree.</summary>
    public string SysfsRoot { get; init; } = "/sys";

    /// <summary>Root of the device nodes (vfio/vfio, vfio/N).</summary>
    public string DevRoot { get; init; } = "/dev";

    /// <summary>PCI vendor ID of the board (spec 1: an option).</summary>
    public ushort VendorId { get; init; } = Fa1Identity.DefaultVendorId;

    /// <summary>PCI device ID of the board.</summary>
    public ushort DeviceId { get; init; } = Fa1Identity.DefaultDeviceId;

    /// <summary>Check only this PCI address; null finds boards by IDs.</summary>
    public string? PciAddress { get; init; }

    /// <summary>Bytes the configured workload pins for DMA; RLIMIT_MEMLOCK must cover them.</summary>
    public ulong PinBytes { get; init; } = Doctor.DefaultPinBytes;

    /// <summary>Whether this process may open a node read-write; default access(2). Tests replace it.</summary>
    public Func<string, bool> CanAccess { get; init; } = UnixAccounts.CanReadWrite;

    /// <summary>This process's RLIMIT_MEMLOCK; default getrlimit(2). Tests replace it.</summary>
    public Func<ResourceLimit> MemoryLockLimit { get; init; } = ResourceLimits.GetMemoryLock;

    /// <summary>Whether this process holds CAP_IPC_LOCK (VFIO type1 then charges no pin against the limit); replaceable for tests.</summary>
    public Func<bool> HasIpcLock { get; init; } = () => ProcessLimits.HasCapability(ProcessLimits.CapIpcLock);

    /// <summary>
    /// The board's management port to look for (spec 8: the FTDI bridge 0403:6010, interface B; another with other
    /// options): found, accessible, which kernel driver holds it, its firmware version. Null: not checked (the CLI
    /// always checks it). A host without the port is not unhealthy: the driver does not need it.
    /// </summary>
    public FtdiOptions? ManagementPort { get; init; }

    /// <summary>Asks the BMC behind the bridge its firmware version (VERSION through libusb, 1 s); tests replace it.</summary>
    public Func<FtdiOptions, BmcVersionAnswer> QueryBmcVersion { get; init; } = ManagementPortChecks.QueryVersion;
}

/// <summary>The outcome of one check.</summary>
public enum CheckStatus
{
    /// <summary>What was checked is as the board needs it.</summary>
    Pass,

    /// <summary>What was checked is wrong; the check carries the fix.</summary>
    Fail,

    /// <summary>Not run because an earlier check failed (e.g. no device to look at).</summary>
    Skipped,
}

/// <summary>One check: what was looked at, what was found, and how to fix it when wrong.</summary>
/// <param name="Name">Short identifier (iommu, vfio-container, device, driver, group, access, memlock, hugepages).</param>
/// <param name="Status">Pass, fail, or skipped.</param>
/// <param name="Detail">What was found.</param>
/// <param name="Fix">What to do when it failed; null when it passed.</param>
public sealed record DoctorCheck(string Name, CheckStatus Status, string Detail, string? Fix);

/// <summary>Every check, and the boards found.</summary>
/// <param name="Checks">Every check in the order run: host first, then each board, then limits.</param>
/// <param name="Devices">The boards found with the vendor and device IDs (or at the address) asked for.</param>
public sealed record DoctorReport(IReadOnlyList<DoctorCheck> Checks, IReadOnlyList<PciFunction> Devices)
{
    /// <summary>The management ports found (when <see cref="DoctorOptions.ManagementPort"/> asked for them).</summary>
    public IReadOnlyList<ManagementPortInfo> ManagementPorts { get; init; } = [];

    /// <summary>True when no check failed.</summary>
    public bool Healthy => Checks.All(c => c.Status != CheckStatus.Fail);
}

/// <summary>
/// Checks, step by step, what running the FA-1 through VFIO needs on this host: IOMMU, vfio-pci, the board,
/// its driver and group, access to its group node, RLIMIT_MEMLOCK, huge pages. Reads only; changes nothing.
/// </summary>
public static class Doctor
{
    /// <summary>What the doctor assumes a workload pins when not told: 64 MiB.</summary>
    public const ulong DefaultPinBytes = 64UL << 20;

    /// <summary>Runs every check against the host <paramref name="options"/> describe (this host by default) and reports each one.</summary>
    public static DoctorReport Run(DoctorOptions? options = null)
    {
        options ??= new DoctorOptions();
        var checks = new List<DoctorCheck>();
        var discovery = new PciDiscovery(options.SysfsRoot);
        var groupsDir = Path.Combine(options.SysfsRoot, "kernel", "iommu_groups");

        checks.Add(discovery.IommuEnabled
            ? Pass("iommu", $"{groupsDir} lists {Directory.EnumerateFileSystemEntries(groupsDir).Count()} IOMMU group(s)")
            : Fail("iommu", $"{groupsDir} is empty or missing: the IOMMU is off",
                "Enable VT-d / AMD-Vi in the firmware and add intel_iommu=on (Intel) or amd_iommu=on (AMD) and iommu=pt to the kernel command line, then reboot."));

        var container = Path.Combine(options.DevRoot, "vfio", "vfio");
        checks.Add(Path.Exists(container)
            ? Pass("vfio-container", $"{container} exists")
            : Fail("vfio-container", $"{container} is missing: vfio-pci is not loaded (or the IOMMU is off)",
                "Load the driver: 'modprobe vfio-pci' (and add vfio-pci to /etc/modules-load.d/ to keep it)."));

        IReadOnlyList<PciFunction> devices;
        var wanted = options.PciAddress is null
            ? $"vendor 0x{options.VendorId:x4} device 0x{options.DeviceId:x4}"
            : $"PCI function {options.PciAddress}";
        if (options.PciAddress is not null && !PciAddress.TryParse(options.PciAddress, out _))
        {
            devices = [];
            checks.Add(Fail("device", $"'{options.PciAddress}' is not a PCI address",
                "Write it as domain:bus:device.function in hex, e.g. 0000:03:00.0 ('lspci -D' lists them)."));
        }
        else
        {
            devices = discovery.Find(options.VendorId, options.DeviceId, options.PciAddress is null ? null : PciAddress.Parse(options.PciAddress));
            checks.Add(devices.Count > 0
                ? Pass("device", $"found {string.Join(", ", devices.Select(d => $"{d.Address} ({d.VendorId:x4}:{d.DeviceId:x4})"))}")
                : Fail("device", $"no {wanted} in {discovery.DevicesDirectory}",
                    $"Check the board is seated and its bitstream loaded ('lspci -nn -d {options.VendorId:x4}:{options.DeviceId:x4}'); a lab bitstream " +
                    "with other IDs needs --vendor-id/--device-id, a specific board --device."));
        }

        if (devices.Count == 0)
        {
            foreach (var name in new[] { "driver", "group", "access" })
            {
                checks.Add(new DoctorCheck(name, CheckStatus.Skipped, "no FA-1 found to check", null));
            }
        }
        else
        {
            foreach (var device in devices)
            {
                checks.AddRange(CheckDevice(device, options));
            }
        }

        checks.Add(CheckMemlock(options));
        checks.Add(CheckHugePages(options));
        var ports = options.ManagementPort is { } port ? ManagementPortChecks.Run(options, port, checks) : [];
        return new DoctorReport(checks, devices) { ManagementPorts = ports };
    }

    private static IEnumerable<DoctorCheck> CheckDevice(PciFunction device, DoctorOptions options)
    {
        var address = device.Address.ToString();
        yield return device.BoundToVfio
            ? Pass("driver", $"{address} is bound to vfio-pci")
            : Fail("driver", $"{address} is bound to {device.Driver ?? "no driver"}, not vfio-pci",
                $"As root: 'fpgaaccel setup --device {address} --user {CurrentUser}' (or echo vfio-pci > " +
                $"{Path.Combine(options.SysfsRoot, "bus", "pci", "devices", address, "driver_override")}, unbind it, and write {address} to drivers_probe).");

        if (device.IommuGroup is not { } group)
        {
            yield return Fail("group", $"{address} has no IOMMU group", "Enable the IOMMU (see the iommu check) and reboot.");
            yield return new DoctorCheck("access", CheckStatus.Skipped, $"{address} has no IOMMU group node", null);
            yield break;
        }

        var members = string.Join(", ", device.Group);
        var blocking = device.BlockingGroupMembers.ToList();
        yield return blocking.Count == 0
            ? Pass("group", $"IOMMU group {group} is viable: {members}")
            : Fail("group", $"IOMMU group {group} of {address} is not viable: {string.Join(", ", blocking)} " +
                            $"bound to a driver other than vfio-pci (members: {members})",
                "Bind every device of the group to vfio-pci or unbind it ('fpgaaccel setup' does the board itself, and refuses while " +
                "another member has a driver), or move the board to a slot with its own IOMMU group (ACS).");

        var node = Path.Combine(options.DevRoot, "vfio", group.ToString(CultureInfo.InvariantCulture));
        if (!Path.Exists(node))
        {
            yield return Fail("access", $"{node} does not exist",
                device.BoundToVfio
                    ? "The group node appears when vfio-pci binds the board; reload vfio-pci or rebind the board."
                    : $"Bind the board to vfio-pci first: as root 'fpgaaccel setup --device {address} --user {CurrentUser}'.");
        }
        else if (!options.CanAccess(node))
        {
            yield return Fail("access", $"{node} is not readable and writable by {CurrentUser}",
                $"As root: 'fpgaaccel setup --device {address} --user {CurrentUser}' (chowns the node), or a udev rule " +
                $"SUBSYSTEM==\"vfio\", OWNER=\"{CurrentUser}\" for a lasting fix.");
        }
        else
        {
            yield return Pass("access", $"{node} is readable and writable by {CurrentUser}");
        }
    }

    // The user's name for messages; a uid with no passwd entry (containers, initramfs) is named by number.
    internal static string CurrentUser
    {
        get
        {
            try
            {
                return Environment.UserName;
            }
            catch (Exception ex) when (ex is IOException or InvalidOperationException or PlatformNotSupportedException)
            {
                return "uid " + UnixAccounts.EffectiveUserId.ToString(System.Globalization.CultureInfo.InvariantCulture);
            }
        }
    }

    private static DoctorCheck CheckMemlock(DoctorOptions options)
    {
        ResourceLimit limit;
        try
        {
            limit = options.MemoryLockLimit();
        }
        catch (SystemCallException ex)
        {
            return Fail("memlock", $"RLIMIT_MEMLOCK cannot be read: {ex.Message}", "Check the process's resource limits.");
        }

        if (limit.SoftIsUnlimited || limit.Soft >= options.PinBytes)
        {
            return Pass("memlock", $"RLIMIT_MEMLOCK {limit} covers the {Format(options.PinBytes)} to pin");
        }

        // VFIO type1 does not charge a process holding CAP_IPC_LOCK (root, usually) against the limit.
        if (options.HasIpcLock())
        {
            return Pass("memlock", $"RLIMIT_MEMLOCK {limit} is below the {Format(options.PinBytes)} to pin, but this process holds CAP_IPC_LOCK, which VFIO type1 does not limit");
        }

        var kib = (options.PinBytes + 1023) / 1024;
        return Fail("memlock", $"RLIMIT_MEMLOCK {limit} is below the {Format(options.PinBytes)} the configured pins need (VFIO counts every pinned page)",
            $"Raise it to at least {kib} KiB: 'ulimit -l {kib}' in this shell (up to the hard limit), or lines '{CurrentUser} soft memlock {kib}' and " +
            $"'{CurrentUser} hard memlock {kib}' in /etc/security/limits.conf (log in again), or LimitMEMLOCK={options.PinBytes} for a systemd unit.");
    }

    private static DoctorCheck CheckHugePages(DoctorOptions options)
    {
        var dir = Path.Combine(options.SysfsRoot, "kernel", "mm", "hugepages");
        if (!Directory.Exists(dir))
        {
            return Fail("hugepages", $"{dir} is missing: the kernel has no huge page support",
                "Use a kernel built with CONFIG_HUGETLBFS, or run without huge pages (2 MiB device pages, CAPS.HUGE_2M, stay unused).");
        }

        var sizes = new List<string>();
        ulong freeTotal = 0;
        foreach (var size in Directory.EnumerateDirectories(dir).Order(StringComparer.Ordinal))
        {
            var free = ReadNumber(Path.Combine(size, "free_hugepages")) ?? 0;
            var total = ReadNumber(Path.Combine(size, "nr_hugepages")) ?? 0;
            sizes.Add($"{Path.GetFileName(size)}: {free} free of {total}");
            freeTotal += free;
        }

        var found = sizes.Count == 0 ? "no huge page sizes" : string.Join(", ", sizes);
        return freeTotal > 0
            ? Pass("hugepages", found)
            : Fail("hugepages", $"no free huge pages ({found})",
                $"Reserve some as root: 'echo 64 > {Path.Combine(dir, "hugepages-2048kB", "nr_hugepages")}' (or vm.nr_hugepages in /etc/sysctl.d/, " +
                "or hugepages=N on the kernel command line).");
    }

    private static ulong? ReadNumber(string path)
    {
        try
        {
            return ulong.TryParse(File.ReadAllText(path).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : null;
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

    private static string Format(ulong bytes) => bytes % (1UL << 20) == 0 ? $"{bytes >> 20} MiB" : $"{bytes} bytes";

    internal static DoctorCheck Pass(string name, string detail) => new(name, CheckStatus.Pass, detail, null);

    internal static DoctorCheck Fail(string name, string detail, string fix) => new(name, CheckStatus.Fail, detail, fix);
}
