using System.Globalization;
using System.Text;
using static FpgaAccel.Interop.Interop.Vfio;

namespace FpgaAccel.Interop.Vfio;

/// <summary>
/// A VFIO group (<c>/dev/vfio/N</c>): the unit of isolation the IOMMU gives. Every device of the group
/// must be bound to a VFIO driver or to none before the group is viable.
/// </summary>
public sealed unsafe class VfioGroup : IDisposable
{
    private readonly SafeFileDescriptor _fd;

    internal VfioGroup(SafeFileDescriptor fd, string path)
    {
        _fd = fd;
        Path = path;
    }

    /// <summary>The group node this was opened from.</summary>
    public string Path { get; }

    /// <summary>
    /// Opens a group node. EPERM/EACCES become <see cref="VfioPermissionException"/> naming the node and the fix.
    /// </summary>
    public static VfioGroup Open(string path) => new(VfioNative.Open(path), path);

    /// <summary>Opens group <paramref name="group"/> under <paramref name="devRoot"/> (<c>/dev/vfio/N</c>).</summary>
    public static VfioGroup Open(int group, string devRoot = "/dev") =>
        Open(System.IO.Path.Combine(devRoot, "vfio", group.ToString(CultureInfo.InvariantCulture)));

    /// <summary>Whether the group is viable and attached to a container (VFIO_GROUP_GET_STATUS).</summary>
    public VfioGroupStatus GetStatus()
    {
        var status = new vfio_group_status { argsz = (uint)sizeof(vfio_group_status) };
        VfioNative.Ioctl(_fd, VFIO_GROUP_GET_STATUS, &status, nameof(VFIO_GROUP_GET_STATUS));
        return new VfioGroupStatus((status.flags & VFIO_GROUP_FLAGS_VIABLE) != 0, (status.flags & VFIO_GROUP_FLAGS_CONTAINER_SET) != 0);
    }

    /// <summary>Throws <see cref="VfioGroupNotViableException"/> unless the group is viable (linux/vfio.h VFIO_GROUP_FLAGS_VIABLE).</summary>
    public void EnsureViable()
    {
        if (!GetStatus().Viable)
        {
            throw new VfioGroupNotViableException(Path);
        }
    }

    /// <summary>VFIO_GROUP_SET_CONTAINER: attaches the group to <paramref name="container"/>.</summary>
    public void SetContainer(VfioContainer container)
    {
        ArgumentNullException.ThrowIfNull(container);
        // linux/vfio.h: the argument points to the container's fd, out of the marshaller's sight: hold it across the ioctl.
        using var held = new HeldDescriptors(1);
        var fd = held.Hold(container.Handle);
        VfioNative.Ioctl(_fd, VFIO_GROUP_SET_CONTAINER, &fd, nameof(VFIO_GROUP_SET_CONTAINER));
    }

    /// <summary>VFIO_GROUP_UNSET_CONTAINER. Closing the group does this too.</summary>
    public void UnsetContainer() => VfioNative.IoctlValue(_fd, VFIO_GROUP_UNSET_CONTAINER, 0, nameof(VFIO_GROUP_UNSET_CONTAINER));

    /// <summary>
    /// VFIO_GROUP_GET_DEVICE_FD: opens the device named <paramref name="name"/> (for PCI, its address
    /// <c>0000:03:00.0</c>). The group must be attached to a container with an IOMMU set.
    /// </summary>
    public VfioDevice OpenDevice(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var bytes = Encoding.UTF8.GetBytes(name + "\0");
        int fd;
        fixed (byte* p = bytes)
        {
            fd = VfioNative.Ioctl(_fd, VFIO_GROUP_GET_DEVICE_FD, p, nameof(VFIO_GROUP_GET_DEVICE_FD));
        }

        return new VfioDevice(new SafeFileDescriptor(fd), name);
    }

    /// <summary>Closes the group node, which detaches it from its container (device descriptors keep the group alive until closed).</summary>
    public void Dispose() => _fd.Dispose();
}
