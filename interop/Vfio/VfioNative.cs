using System.Runtime.InteropServices;

namespace FpgaAccel.Interop.Vfio;

/// <summary>The one place VFIO descriptors are opened and ioctls issued; errno becomes a typed exception here.</summary>
internal static unsafe class VfioNative
{
    /// <summary>Opens a VFIO node read-write, close-on-exec.</summary>
    public static SafeFileDescriptor Open(string path)
    {
        var fd = Interop.Libc.open(path, Interop.Libc.O_RDWR | Interop.Libc.O_CLOEXEC);
        if (fd.IsInvalid)
        {
            var errno = Interop.Libc.LastErrno();
            fd.Dispose();
            throw VfioErrors.FromOpen(path, errno);
        }

        return fd;
    }

    /// <summary>Issues <paramref name="request"/> with a pointer argument; returns the ioctl's non-negative result.</summary>
    public static int Ioctl(SafeFileDescriptor fd, ulong request, void* arg, string name) =>
        IoctlValue(fd, request, (nint)arg, name); // ioctl's third argument is one register either way (x86-64 ABI)

    /// <summary>Issues <paramref name="request"/> with a value argument (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU).</summary>
    public static int IoctlValue(SafeFileDescriptor fd, ulong request, nint value, string name)
    {
        var result = Interop.Libc.ioctl(fd, request, value);
        return result < 0 ? throw VfioErrors.FromIoctl(name, Interop.Libc.LastErrno()) : result;
    }

    /// <summary>
    /// Walks a VFIO capability chain (linux/vfio.h vfio_info_cap_header): offsets are from the start of
    /// the info buffer, 0 ends the chain. Every offset is bounds-checked; a loop or an overrun is malformed.
    /// </summary>
    public static List<(ushort Id, ushort Version, int Offset)> WalkCapabilities(ReadOnlySpan<byte> info, uint first, int headerSize, string what)
    {
        var caps = new List<(ushort, ushort, int)>();
        var offset = first;
        while (offset != 0)
        {
            if (offset < (uint)headerSize || offset > (uint)(info.Length - sizeof(Interop.Vfio.vfio_info_cap_header)) || caps.Count > 64)
            {
                throw new VfioException(
                    $"The kernel's {what} capability chain is malformed (offset {offset} in a {info.Length}-byte buffer); " +
                    "this is a kernel or ABI mismatch: report it with the kernel version.");
            }

            var header = MemoryMarshal.Read<Interop.Vfio.vfio_info_cap_header>(info[(int)offset..]);
            caps.Add((header.id, header.version, (int)offset));
            offset = header.next;
        }

        return caps;
    }
}
