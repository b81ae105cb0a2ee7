namespace FpgaAccel.Interop.Vfio;

/// <summary>Turns the errno of a failed VFIO ioctl or open into a typed exception with the likely fix.</summary>
internal static class VfioErrors
{
    /// <summary>The exception for <paramref name="ioctl"/> failing with <paramref name="errno"/>, with the fix for that pair.</summary>
    public static VfioIoctlException FromIoctl(string ioctl, Errno errno) => new(ioctl, (int)errno, Fix(ioctl, errno));

    /// <summary>The exception for opening <paramref name="path"/> failing with <paramref name="errno"/>; EPERM and EACCES are <see cref="VfioPermissionException"/>.</summary>
    public static VfioOpenException FromOpen(string path, Errno errno) => errno switch
    {
        Errno.EPERM or Errno.EACCES => new VfioPermissionException(path, (int)errno),
        Errno.ENOENT when path.EndsWith("/vfio", StringComparison.Ordinal) =>
            new VfioOpenException(path, (int)errno, "The VFIO container node is missing: load the driver (modprobe vfio-pci) on a host with the IOMMU enabled (intel_iommu=on or amd_iommu=on)"),
        Errno.ENOENT => new VfioOpenException(path, (int)errno, "No such VFIO group: the device is not bound to vfio-pci, or the group number is wrong (see /sys/bus/pci/devices/<address>/iommu_group)"),
        Errno.EBUSY => new VfioOpenException(path, (int)errno, "The group is already open in another process (a VM or another driver instance); close it there first"),
        _ => new VfioOpenException(path, (int)errno, "Check that vfio-pci is loaded and the node is a VFIO character device"),
    };

    private static string Fix(string ioctl, Errno errno) => errno switch
    {
        Errno.ENOTTY => $"The descriptor does not accept {ioctl}: it is not the kind of VFIO object this ioctl needs (container, group or device), or the kernel lacks it",
        Errno.EBADF => "The descriptor was closed or is not a VFIO node",
        Errno.EBUSY when ioctl.Contains("SET_CONTAINER", StringComparison.Ordinal) =>
            "The group already belongs to a container, possibly in another process; close that user of the group first",
        Errno.EBUSY when ioctl.Contains("GET_DEVICE_FD", StringComparison.Ordinal) =>
            "The device is already open through this group; close the other device descriptor first",
        Errno.EBUSY => "The object is in use; close its other user first",
        Errno.EPERM or Errno.EACCES => "The process lacks permission; check the owner and mode of /dev/vfio/<group>, or run as root",
        Errno.ENOMEM => "The kernel is out of memory or the process's RLIMIT_MEMLOCK is reached; raise the limit (ulimit -l)",
        Errno.EEXIST => "The IOVA range is already mapped; unmap it first (an IOVA was allocated twice)",
        Errno.ENOSPC => "Too many DMA mappings (vfio_iommu_type1 dma_entry_limit); map fewer, larger ranges",
        Errno.EFAULT => "The host address is not mapped in this process; map and touch the memory before mapping it for DMA",
        Errno.EINVAL when ioctl.Contains("DMA", StringComparison.Ordinal) =>
            "Use page-aligned host address, IOVA and length, inside the IOMMU's valid IOVA ranges (VFIO_IOMMU_GET_INFO), with READ and/or WRITE",
        Errno.EINVAL when ioctl.Contains("SET_IRQS", StringComparison.Ordinal) =>
            "The IRQ index, start or count is outside what VFIO_DEVICE_GET_IRQ_INFO reports, or the flags are malformed",
        Errno.EINVAL when ioctl.Contains("GET_DEVICE_FD", StringComparison.Ordinal) =>
            "The device name is not a member of this group (see /sys/kernel/iommu_groups/<group>/devices)",
        Errno.ENODEV => "The device or IOMMU model is not present; check the group's members and the IOMMU type",
        Errno.EINVAL => "An argument is malformed (argsz, index or flags); check it against linux/vfio.h",
        Errno.ENOSYS or Errno.EOPNOTSUPP => "The kernel's VFIO does not support this operation",
        _ => "See the kernel log (dmesg) for the cause",
    };
}
