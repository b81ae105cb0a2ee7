namespace FpgaAccel.Interop.Vfio;

/// <summary>
/// A VFIO ioctl failed. <see cref="SystemCallException.Call"/> is the ioctl's C name
/// (<c>VFIO_GROUP_SET_CONTAINER: EBUSY (...)</c>) and the message ends with the likely fix.
/// </summary>
public class VfioIoctlException : SystemCallException
{
    /// <summary>A failure of <paramref name="ioctl"/> with <paramref name="errno"/>; <paramref name="fix"/> says what to do.</summary>
    internal VfioIoctlException(string ioctl, int errno, string fix)
        : base(ioctl, errno, fix)
    {
        Fix = fix;
    }

    /// <summary>What to do about it.</summary>
    public string Fix { get; }
}

/// <summary>
/// VFIO_IOMMU_MAP_DMA answered ENOMEM: pinning the pages would exceed the process's RLIMIT_MEMLOCK
/// (type1 accounts every pinned page against it).
/// </summary>
public sealed class VfioMemlockException : VfioIoctlException
{
    /// <summary>Mapping <paramref name="size"/> bytes at <paramref name="iova"/> was refused under a soft limit of <paramref name="memlockLimit"/> bytes.</summary>
    internal VfioMemlockException(ulong iova, ulong size, ulong memlockLimit)
        : base(
            "VFIO_IOMMU_MAP_DMA",
            (int)Errno.ENOMEM,
            $"Pinning {size} bytes at IOVA 0x{iova:X} exceeds RLIMIT_MEMLOCK ({FormatLimit(memlockLimit)}): every page VFIO maps is " +
            "locked and counted against it. Raise the limit (ulimit -l, 'memlock' in /etc/security/limits.conf, LimitMEMLOCK= " +
            "for a systemd unit) or map less")
    {
        Iova = iova;
        Size = size;
        MemlockLimit = memlockLimit;
    }

    /// <summary>Where the refused mapping was to start in the device's address space.</summary>
    public ulong Iova { get; }

    /// <summary>Bytes the refused mapping would have pinned.</summary>
    public ulong Size { get; }

    /// <summary>The soft RLIMIT_MEMLOCK when the mapping was refused, in bytes (ulong.MaxValue: unlimited).</summary>
    public ulong MemlockLimit { get; }

    private static string FormatLimit(ulong limit) => limit == ulong.MaxValue ? "unlimited" : $"{limit} bytes";
}

/// <summary>
/// Opening a VFIO node (<c>/dev/vfio/vfio</c> or <c>/dev/vfio/N</c>) failed. EPERM/EACCES come as
/// <see cref="VfioPermissionException"/>.
/// </summary>
public class VfioOpenException : SystemCallException
{
    /// <summary>Opening <paramref name="path"/> failed with <paramref name="errno"/>; <paramref name="fix"/> says what to do.</summary>
    internal VfioOpenException(string path, int errno, string fix)
        : base($"open({path})", errno, fix)
    {
        Path = path;
    }

    /// <summary>The node that could not be opened.</summary>
    public string Path { get; }
}

/// <summary>This user may not open a VFIO group node (EPERM or EACCES).</summary>
public sealed class VfioPermissionException : VfioOpenException
{
    /// <summary>Opening <paramref name="path"/> failed with <paramref name="errno"/> (EPERM or EACCES).</summary>
    internal VfioPermissionException(string path, int errno)
        : base(path, errno,
            $"This user may not open {path}. Give the user the node as root ('fpgaaccel setup --device <address> --user <name>', " +
            $"or chown/chmod {path}, or a udev rule for the vfio group), or run as root")
    {
    }
}

/// <summary>A VFIO rule that is not an errno: a non-viable group, a region that cannot be mmapped, an unsupported API.</summary>
public class VfioException : IOException
{
    /// <summary>A broken rule; <paramref name="message"/> names the value, the rule and the fix.</summary>
    internal VfioException(string message)
        : base(message)
    {
    }
}

/// <summary>VFIO_GROUP_GET_STATUS says the group is not viable: a member is bound to a non-VFIO driver.</summary>
public sealed class VfioGroupNotViableException : VfioException
{
    /// <summary>The group at <paramref name="path"/> is not viable.</summary>
    internal VfioGroupNotViableException(string path)
        : base($"VFIO group {path} is not viable: some device in it is bound to a driver other than vfio-pci. " +
               "Bind every device of the group to vfio-pci or unbind it (see /sys/kernel/iommu_groups/<group>/devices; " +
               "'fpgaaccel doctor' lists them), or move the device to a slot with its own IOMMU group.")
    {
        Path = path;
    }

    /// <summary>The group node.</summary>
    public string Path { get; }
}
