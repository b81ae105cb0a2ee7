using System.Runtime.InteropServices;

namespace FpgaAccel.Interop.Vfio;

/// <summary>The one place VFIO descriptors are opened and ioctls issued; errno becomes a typed exception here.</summary>
internal static unsafe class VfioNative
{
    /// <summary>How often an info ioctl is asked again with a larger buffer before its answer counts as unstable.</summary>
    internal const int ArgszAttempts = 4;

    /// <summary>The largest answer an info ioctl may ask for: far above any real capability chain (a few hundred bytes).</summary>
    internal const uint MaxArgsz = 1 << 20;

    /// <summary>Fills the buffer an info ioctl is given; argsz (its first field) is already set to the buffer's size.</summary>
    internal delegate void InfoCall(byte* buffer);

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
    /// Issues an info ioctl whose answer carries a capability chain (VFIO_DEVICE_GET_REGION_INFO, VFIO_IOMMU_GET_INFO)
    /// and returns the whole answer: <paramref name="header"/> (argsz is set here) followed by the chain.
    /// </summary>
    public static byte[] IoctlWithCapabilities<T>(SafeFileDescriptor fd, ulong request, T header, string name)
        where T : unmanaged =>
        AskWithGrowingArgsz(header, name, buffer => Ioctl(fd, request, buffer, name));

    /// <summary>
    /// The argsz protocol of linux/vfio.h: a caller's buffer too small for the capability chain comes back with
    /// argsz raised to the size needed and no chain, so ask again with that size. Each attempt starts from
    /// <paramref name="header"/> (the fields the caller set, such as a region index). Throws
    /// <see cref="VfioException"/> when the kernel still wants more after <see cref="ArgszAttempts"/> attempts.
    /// </summary>
    internal static byte[] AskWithGrowingArgsz<T>(T header, string name, InfoCall call)
        where T : unmanaged
    {
        var size = (uint)sizeof(T);
        for (var attempt = 0; attempt < ArgszAttempts; attempt++)
        {
            var buffer = new byte[size];
            MemoryMarshal.Write(buffer, in header);
            fixed (byte* p = buffer)
            {
                // Every VFIO info struct starts with __u32 argsz.
                *(uint*)p = size;
                call(p);
                var asked = *(uint*)p;
                if (asked <= size)
                {
                    return buffer;
                }

                if (asked > MaxArgsz)
                {
                    throw new VfioException(
                        $"{name} asked for a {asked}-byte buffer, more than the {MaxArgsz} bytes any capability chain needs; " +
                        "the kernel's answer is malformed: report it with the kernel version.");
                }

                size = asked;
            }
        }

        throw new VfioException(
            $"{name} kept asking for a larger buffer ({size} bytes after {ArgszAttempts} attempts); the kernel's answer is unstable. " +
            "Report it with the kernel version.");
    }

    /// <summary>
    /// VFIO_IOMMU_MAP_DMA's flags for <paramref name="access"/>, bit by bit: the flags are linux/vfio.h's, the enum
    /// is ours, and nothing but this method ties them (pinned against the header by VfioLayoutTests).
    /// </summary>
    public static uint ToDmaMapFlags(DmaAccess access) =>
        ((access & DmaAccess.DeviceRead) != 0 ? Interop.Vfio.VFIO_DMA_MAP_FLAG_READ : 0)
        | ((access & DmaAccess.DeviceWrite) != 0 ? Interop.Vfio.VFIO_DMA_MAP_FLAG_WRITE : 0);

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

    /// <summary>
    /// Reads the capability struct at <paramref name="offset"/> of an info buffer; false when it does not fit
    /// (<see cref="WalkCapabilities"/> checked only its header), so a short answer is never read past its end.
    /// </summary>
    public static bool TryReadCapability<T>(ReadOnlySpan<byte> info, int offset, out T capability)
        where T : unmanaged
    {
        if (offset < 0 || offset > info.Length - sizeof(T))
        {
            capability = default;
            return false;
        }

        capability = MemoryMarshal.Read<T>(info[offset..]);
        return true;
    }

    /// <summary>
    /// The array that follows a capability struct (sparse mmap areas, IOVA ranges): the <paramref name="count"/> entries
    /// the capability claims, but no more than the buffer holds: the kernel's count is trusted no further than its bytes.
    /// </summary>
    public static ReadOnlySpan<T> TrailingArray<T>(ReadOnlySpan<byte> info, int first, uint count)
        where T : unmanaged
    {
        var fit = (uint)Math.Max(0, (info.Length - first) / sizeof(T));
        return MemoryMarshal.Cast<byte, T>(info.Slice(first, (int)Math.Min(count, fit) * sizeof(T)));
    }
}
