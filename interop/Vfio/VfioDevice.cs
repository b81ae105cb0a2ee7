using System.Buffers.Binary;
using System.Runtime.InteropServices;
using static FpgaAccel.Interop.Interop.Vfio;

namespace FpgaAccel.Interop.Vfio;

/// <summary>
/// A VFIO device descriptor: regions (BARs, config space), IRQs, reset. Device-agnostic: region and IRQ
/// indexes are the caller's (vfio-pci's are in <see cref="VfioPciRegion"/> and <see cref="VfioPciIrq"/>).
/// </summary>
public sealed unsafe class VfioDevice : IDisposable
{
    /// <summary>PCI command register offset in config space (PCI Local Bus spec 6.2.2).</summary>
    public const int PciCommandOffset = 0x04;

    /// <summary>Command register bit 1: Memory Space Enable.</summary>
    public const ushort PciCommandMemory = 1 << 1;

    /// <summary>Command register bit 2: Bus Master Enable (the device may issue DMA).</summary>
    public const ushort PciCommandBusMaster = 1 << 2;

    private readonly SafeFileDescriptor _fd;
    private VfioRegionInfo? _config;

    internal VfioDevice(SafeFileDescriptor fd, string name)
    {
        _fd = fd;
        Name = name;
    }

    /// <summary>The name the device was opened by (its PCI address for vfio-pci).</summary>
    public string Name { get; }

    /// <summary>What the device offers: regions, IRQ indexes, reset (VFIO_DEVICE_GET_INFO).</summary>
    public VfioDeviceInfo GetInfo()
    {
        var info = new vfio_device_info { argsz = (uint)sizeof(vfio_device_info) };
        VfioNative.Ioctl(_fd, VFIO_DEVICE_GET_INFO, &info, nameof(VFIO_DEVICE_GET_INFO));
        return new VfioDeviceInfo(info.flags, info.num_regions, info.num_irqs);
    }

    /// <summary>
    /// VFIO_DEVICE_GET_REGION_INFO for <paramref name="index"/>, with the capability chain (sparse mmap areas,
    /// MSI-X mappable) decoded. Retries with the argsz the kernel asks for when the chain did not fit.
    /// </summary>
    public VfioRegionInfo GetRegionInfo(uint index)
    {
        var buffer = VfioNative.IoctlWithCapabilities(_fd, VFIO_DEVICE_GET_REGION_INFO, new vfio_region_info { index = index }, nameof(VFIO_DEVICE_GET_REGION_INFO));
        return DecodeRegion(buffer, MemoryMarshal.Read<vfio_region_info>(buffer));
    }

    /// <summary>
    /// Maps <paramref name="length"/> bytes (default: the rest of the region) of <paramref name="region"/> at
    /// <paramref name="offset"/> within it, read-write and shared. Throws <see cref="VfioException"/> when the region
    /// or that range may not be mmapped (no VFIO_REGION_INFO_FLAG_MMAP, or outside every sparse area).
    /// </summary>
    public VfioMappedRegion MapRegion(VfioRegionInfo region, ulong offset = 0, ulong? length = null)
    {
        ArgumentNullException.ThrowIfNull(region);
        var bytes = length ?? (offset < region.Size ? region.Size - offset : 0);
        if (!region.CanMmapRange(offset, bytes))
        {
            var why = !region.CanMmap
                ? "the region does not support mmap (no VFIO_REGION_INFO_FLAG_MMAP)"
                : bytes == 0 || offset > region.Size || bytes > region.Size - offset
                    ? $"the range is outside the region's {region.Size} bytes"
                    : "the range is not inside one of the region's sparse mmap areas (" +
                      string.Join(", ", region.SparseAreas!.Select(a => $"0x{a.Offset:X}+0x{a.Size:X}")) + ")";
            throw new VfioException(
                $"Region {region.Index} of {Name}: cannot mmap 0x{bytes:X} bytes at offset 0x{offset:X}: {why}. " +
                "Map a range the kernel allows, or use ReadRegion/WriteRegion for this range.");
        }

        var protection = ((region.Flags & VfioRegionFlags.Read) != 0 ? MemoryProtection.Read : MemoryProtection.None)
                         | ((region.Flags & VfioRegionFlags.Write) != 0 ? MemoryProtection.Write : MemoryProtection.None);
        // The mmap offset is the region's 64-bit offset in the device fd (index << 40 on vfio-pci) plus ours.
        var mapping = MemoryMapping.Shared(_fd, bytes, checked((long)(region.Offset + offset)), protection);
        return new VfioMappedRegion(mapping, region.Index, offset);
    }

    /// <summary>Reads region bytes through the device fd (pread): for regions or ranges that cannot be mmapped.</summary>
    public void ReadRegion(VfioRegionInfo region, ulong offset, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(region);
        CheckRange(region, offset, (ulong)destination.Length);
        fixed (byte* p = destination)
        {
            Transfer(p, destination.Length, region.Offset + offset, write: false);
        }
    }

    /// <summary>Writes region bytes through the device fd (pwrite).</summary>
    public void WriteRegion(VfioRegionInfo region, ulong offset, ReadOnlySpan<byte> source)
    {
        ArgumentNullException.ThrowIfNull(region);
        CheckRange(region, offset, (ulong)source.Length);
        fixed (byte* p = source)
        {
            Transfer(p, source.Length, region.Offset + offset, write: true);
        }
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes of PCI config space at <paramref name="offset"/>.</summary>
    public void ReadConfig(ulong offset, Span<byte> destination) => ReadRegion(ConfigRegion(), offset, destination);

    /// <summary>Writes PCI config space at <paramref name="offset"/> (vfio-pci virtualizes and filters some fields).</summary>
    public void WriteConfig(ulong offset, ReadOnlySpan<byte> source) => WriteRegion(ConfigRegion(), offset, source);

    /// <summary>Reads a little-endian 16-bit config register.</summary>
    public ushort ReadConfig16(ulong offset)
    {
        Span<byte> b = stackalloc byte[2];
        ReadConfig(offset, b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    /// <summary>Writes a little-endian 16-bit config register.</summary>
    public void WriteConfig16(ulong offset, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        WriteConfig(offset, b);
    }

    /// <summary>
    /// Sets Memory Space and Bus Master Enable in the command register (read-modify-write), so the device
    /// answers BAR accesses and may issue DMA. Returns the command register as written.
    /// </summary>
    public ushort EnableBusMastering()
    {
        var command = ReadConfig16(PciCommandOffset);
        var wanted = (ushort)(command | PciCommandMemory | PciCommandBusMaster);
        if (wanted != command)
        {
            WriteConfig16(PciCommandOffset, wanted);
        }

        return wanted;
    }

    /// <summary>VFIO_DEVICE_GET_IRQ_INFO for <paramref name="index"/>.</summary>
    public VfioIrqInfo GetIrqInfo(uint index)
    {
        var info = new vfio_irq_info { argsz = (uint)sizeof(vfio_irq_info), index = index };
        VfioNative.Ioctl(_fd, VFIO_DEVICE_GET_IRQ_INFO, &info, nameof(VFIO_DEVICE_GET_IRQ_INFO));
        return new VfioIrqInfo(info.index, (VfioIrqFlags)info.flags, info.count);
    }

    /// <summary>
    /// VFIO_DEVICE_SET_IRQS with DATA_EVENTFD | ACTION_TRIGGER: vector <c>start + i</c> signals
    /// <paramref name="eventFds"/>[i]; a null entry passes -1 (leave that vector unassigned).
    /// Enabling an index this way enables MSI/MSI-X on the device.
    /// </summary>
    public void SetIrqEventFds(uint index, uint start, IReadOnlyList<SafeFileDescriptor?> eventFds)
    {
        ArgumentNullException.ThrowIfNull(eventFds);
        ArgumentOutOfRangeException.ThrowIfZero(eventFds.Count, nameof(eventFds));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(eventFds.Count, 2048, nameof(eventFds));
        var count = eventFds.Count;
        var size = sizeof(vfio_irq_set) + (count * sizeof(int));
        var buffer = stackalloc byte[size];
        var set = (vfio_irq_set*)buffer;
        set->argsz = (uint)size;
        set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
        set->index = index;
        set->start = start;
        set->count = (uint)count;
        var fds = (int*)(buffer + sizeof(vfio_irq_set));
        // The numbers travel inside the struct, out of the marshaller's sight: hold them open across the ioctl.
        using var held = new HeldDescriptors(count);
        for (var i = 0; i < count; i++)
        {
            fds[i] = held.Hold(eventFds[i]);
        }

        VfioNative.Ioctl(_fd, VFIO_DEVICE_SET_IRQS, buffer, nameof(VFIO_DEVICE_SET_IRQS));
    }

    /// <summary>Disables every vector of <paramref name="index"/> (DATA_NONE | ACTION_TRIGGER, count 0; linux/vfio.h).</summary>
    public void DisableIrqs(uint index)
    {
        var set = new vfio_irq_set
        {
            argsz = (uint)sizeof(vfio_irq_set),
            flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
            index = index,
            start = 0,
            count = 0,
        };
        VfioNative.Ioctl(_fd, VFIO_DEVICE_SET_IRQS, &set, nameof(VFIO_DEVICE_SET_IRQS));
    }

    /// <summary>VFIO_DEVICE_RESET. Throws <see cref="VfioException"/> when the device lacks VFIO_DEVICE_FLAGS_RESET.</summary>
    public void Reset()
    {
        if (!GetInfo().SupportsReset)
        {
            throw new VfioException(
                $"{Name} offers no reset through VFIO (VFIO_DEVICE_FLAGS_RESET is clear: no FLR, PM or bus reset available). " +
                "Reset it through the device's own registers or a cold reset.");
        }

        VfioNative.IoctlValue(_fd, VFIO_DEVICE_RESET, 0, nameof(VFIO_DEVICE_RESET));
    }

    /// <summary>Closes the device descriptor; vfio-pci disables its interrupts and resets it where it can.</summary>
    public void Dispose() => _fd.Dispose();

    internal static VfioRegionInfo DecodeRegion(ReadOnlySpan<byte> buffer, vfio_region_info info)
    {
        List<VfioSparseArea>? areas = null;
        var msixMappable = false;
        if ((info.flags & VFIO_REGION_INFO_FLAG_CAPS) != 0 && info.cap_offset != 0)
        {
            foreach (var (id, _, offset) in VfioNative.WalkCapabilities(buffer, info.cap_offset, sizeof(vfio_region_info), nameof(VFIO_DEVICE_GET_REGION_INFO)))
            {
                if (id == VFIO_REGION_INFO_CAP_SPARSE_MMAP && VfioNative.TryReadCapability(buffer, offset, out vfio_region_info_cap_sparse_mmap cap))
                {
                    var entries = VfioNative.TrailingArray<vfio_region_sparse_mmap_area>(buffer, offset + sizeof(vfio_region_info_cap_sparse_mmap), cap.nr_areas);
                    areas = new List<VfioSparseArea>(entries.Length);
                    foreach (var a in entries)
                    {
                        areas.Add(new VfioSparseArea(a.offset, a.size));
                    }
                }
                else if (id == VFIO_REGION_INFO_CAP_MSIX_MAPPABLE)
                {
                    msixMappable = true;
                }
            }
        }

        return new VfioRegionInfo(info.index, (VfioRegionFlags)info.flags, info.size, info.offset, areas, msixMappable);
    }

    private VfioRegionInfo ConfigRegion() => _config ??= GetRegionInfo(VFIO_PCI_CONFIG_REGION_INDEX);

    private void CheckRange(VfioRegionInfo region, ulong offset, ulong length)
    {
        if (length == 0 || offset > region.Size || length > region.Size - offset)
        {
            throw new ArgumentOutOfRangeException(
                nameof(offset), offset, $"0x{length:X} bytes at 0x{offset:X} are outside region {region.Index} of {Name} (0x{region.Size:X} bytes).");
        }
    }

    private void Transfer(byte* buffer, int length, ulong fileOffset, bool write)
    {
        var call = write ? "pwrite(vfio device)" : "pread(vfio device)";
        var done = 0;
        while (done < length)
        {
            var n = write
                ? Interop.Libc.pwrite(_fd, buffer + done, (nuint)(length - done), checked((long)fileOffset + done))
                : Interop.Libc.pread(_fd, buffer + done, (nuint)(length - done), checked((long)fileOffset + done));
            if (n < 0)
            {
                var errno = Interop.Libc.LastErrno();
                if (errno == Errno.EINTR)
                {
                    continue;
                }

                throw SystemCallException.FromErrno(call, errno,
                    $"Accessing {length} bytes at device offset 0x{fileOffset:X} of {Name} failed; the region may not support this access width");
            }

            if (n == 0)
            {
                throw SystemCallException.FromErrno(call, Errno.EIO,
                    $"The device transferred 0 bytes at offset 0x{fileOffset + (ulong)done:X} of {Name}");
            }

            done += (int)n;
        }
    }
}
