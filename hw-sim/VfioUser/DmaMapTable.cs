using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;

namespace FpgaAccel.HwSim.VfioUser;

/// <summary>One range of client memory the device may reach (a DMA_MAP).</summary>
internal sealed class ClientMapping
{
    /// <summary>The device's address of the first byte.</summary>
    public required ulong Iova { get; init; }

    /// <summary>Bytes in the range.</summary>
    public required ulong Size { get; init; }

    /// <summary>What the client lets the device do.</summary>
    public required DmaAccess Access { get; init; }

    /// <summary>The range's bytes in this process: the client's fd mmapped shared, or (no fd) a read-only mirror.</summary>
    public MemoryMapping? Memory { get; set; }

    /// <summary>True when the client passed no fd: the bytes are reached with DMA_READ and DMA_WRITE messages.</summary>
    public required bool MessageOnly { get; init; }

    /// <summary>The pieces of the range mapped in the model's IOMMU (the parts inside its IOVA windows).</summary>
    public List<(ulong Iova, ulong Length)> IommuPieces { get; } = [];

    /// <summary>Set once the mapping left the table; a mirror fill that finishes later must not publish it.</summary>
    public bool Removed { get; set; }

    /// <summary>Where a message-only mapping's mirror stands (decision V3); <see cref="MirrorState.None"/> for an fd-backed one.</summary>
    public MirrorState Mirror { get; set; }

    /// <summary>The last byte's address.</summary>
    public ulong Last => Iova + Size - 1;
}

/// <summary>A message-only mapping's mirror: not copied yet, being copied (DMA_READ), or copied and device-readable.</summary>
internal enum MirrorState
{
    /// <summary>An fd-backed mapping (or one too large to mirror): no mirror.</summary>
    None,

    /// <summary>Waiting for a fill: bus mastering was off, or the last fill failed.</summary>
    Unfilled,

    /// <summary>A worker is copying it in.</summary>
    Filling,

    /// <summary>Copied; its pieces are in the model's IOMMU while bus mastering is on.</summary>
    Filled,
}

/// <summary>
/// The client's DMA mappings (the concern of libvfio-user's dma.c), feeding the model's platform IOMMU: a range that
/// came with an fd is mmapped shared and its IOVAs map to that memory, so the model's engines reach guest RAM
/// directly; a range without one is mirrored read-only from DMA_READ messages (decision V3).
/// </summary>
/// <remarks>
/// <para>The table keeps VFIO type1v2's rules for what the client maps (the model's IOMMU keeps them for the
/// pieces it holds): a map over an existing mapping is EEXIST; an unmap must not split a mapping (EINVAL); an unmap
/// that covers no mapping succeeds and removes nothing; removal waits for the device's in-flight accesses (the model
/// IOMMU's unmap does, decision D29) before the memory is unmapped from this process.</para>
/// <para>Only the parts of a range inside the model IOMMU's IOVA windows reach it (decision V4): QEMU also maps guest
/// RAM identity-mapped from IOVA 0 while the guest's IOMMU is off, and page 0 and the MSI window are not IOVAs the
/// model's platform takes.</para>
/// <para>Bus mastering gates the device's DMA (decision V6): the model's IOMMU holds the pieces only while the
/// function's command register has bus master set, as a real function issues no request without it. The table keeps
/// the mappings meanwhile and maps them again when it is set.</para>
/// <para>Threads: the session's receiving thread maps, unmaps and clears; a mirror fill finishes on a worker.
/// <see cref="_lock"/> orders them: a mapping is published to the IOMMU only while it is still in the table.</para>
/// </remarks>
internal sealed class DmaMapTable
{
    private const ulong PageSize = 4096;

    private readonly ModelIommu _iommu;
    private readonly int _maxMappings;
    private readonly Lock _lock = new();

    // Sorted by IOVA; mappings never overlap.
    private readonly List<ClientMapping> _mappings = [];
    private bool _deviceAccess;

    public DmaMapTable(ModelIommu iommu, int maxMappings)
    {
        _iommu = iommu;
        _maxMappings = maxMappings;
    }

    /// <summary>Mappings in the table.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _mappings.Count;
            }
        }
    }

    /// <summary>Bytes the table's mappings cover.</summary>
    public ulong Bytes
    {
        get
        {
            lock (_lock)
            {
                var total = 0UL;
                foreach (var m in _mappings)
                {
                    total += m.Size;
                }

                return total;
            }
        }
    }

    /// <summary>
    /// DMA_MAP: adds [<paramref name="iova"/>, +<paramref name="size"/>). With <paramref name="fd"/>, mmaps it shared
    /// at <paramref name="offset"/> and maps the model IOMMU's pieces at once; without, records a message-only range
    /// whose mirror the caller fills (<see cref="TryStartFill"/>, <see cref="FinishFill"/>). Throws <see cref="VfioUserException"/> with the
    /// errno type1 gives (EINVAL, EEXIST, ENOSPC) or mmap's.
    /// </summary>
    public ClientMapping Map(ulong iova, ulong size, ulong offset, VfioDmaMapFlags flags, SafeFileDescriptor? fd, ulong maxMirrorBytes)
    {
        if ((flags & ~(VfioDmaMapFlags.Read | VfioDmaMapFlags.Write)) != 0 || flags == VfioDmaMapFlags.None)
        {
            throw new VfioUserException(Errno.EINVAL, $"DMA_MAP flags 0x{(uint)flags:X}: a mapping is readable, writable or both (VFIO_DMA_MAP_FLAG_READ/WRITE) and has no other flag");
        }

        if (size == 0 || iova % PageSize != 0 || size % PageSize != 0 || (fd is not null && offset % PageSize != 0))
        {
            throw new VfioUserException(Errno.EINVAL, $"DMA_MAP of IOVA 0x{iova:X} size 0x{size:X} offset 0x{offset:X}: IOVA, size and fd offset must be multiples of 4 KiB (pgsizes), the size non-zero");
        }

        if (iova + size - 1 < iova || (fd is not null && offset + size - 1 < offset))
        {
            throw new VfioUserException(Errno.EINVAL, $"DMA_MAP of IOVA 0x{iova:X} size 0x{size:X} wraps around the address space");
        }

        var access = ((flags & VfioDmaMapFlags.Read) != 0 ? DmaAccess.DeviceRead : DmaAccess.None)
            | ((flags & VfioDmaMapFlags.Write) != 0 ? DmaAccess.DeviceWrite : DmaAccess.None);
        var mapping = new ClientMapping { Iova = iova, Size = size, Access = access, MessageOnly = fd is null };
        lock (_lock)
        {
            var at = FindInsertion(iova);
            if ((at > 0 && _mappings[at - 1].Last >= iova) || (at < _mappings.Count && _mappings[at].Iova <= mapping.Last))
            {
                var other = at > 0 && _mappings[at - 1].Last >= iova ? _mappings[at - 1] : _mappings[at];
                throw new VfioUserException(Errno.EEXIST, $"DMA_MAP of IOVA 0x{iova:X}..0x{mapping.Last:X} overlaps the mapping 0x{other.Iova:X}..0x{other.Last:X}; unmap it first");
            }

            if (_mappings.Count >= _maxMappings)
            {
                throw new VfioUserException(Errno.ENOSPC, $"DMA_MAP: {_mappings.Count} mappings are the most this server holds (max_dma_maps)");
            }

            if (fd is not null)
            {
                CheckInsideFile(fd, iova, size, offset);
                var protection = ((flags & VfioDmaMapFlags.Read) != 0 ? MemoryProtection.Read : MemoryProtection.None)
                    | ((flags & VfioDmaMapFlags.Write) != 0 ? MemoryProtection.Write : MemoryProtection.None);
                try
                {
                    mapping.Memory = MemoryMapping.Shared(fd, size, (long)offset, protection);
                }
                catch (SystemCallException ex)
                {
                    throw new VfioUserException(ex.Errno, $"DMA_MAP of IOVA 0x{iova:X} size 0x{size:X}: mmap of the passed fd at offset 0x{offset:X} failed: {ex.Message}");
                }

                try
                {
                    if (_deviceAccess)
                    {
                        MapPieces(mapping, access);
                    }
                }
                catch
                {
                    mapping.Memory.Dispose();
                    throw;
                }
            }
            else if (size <= maxMirrorBytes)
            {
                // Filled from DMA_READ messages after the reply (decision V3); published read-only once full.
                mapping.Memory = MemoryMapping.Anonymous(size);
                mapping.Mirror = MirrorState.Unfilled;
            }

            _mappings.Insert(at, mapping);
            return mapping;
        }
    }

    /// <summary>
    /// Claims <paramref name="mapping"/>'s mirror for a fill: true when it is in the table, unfilled, and the device
    /// may reach client memory now (QEMU answers DMA_READ only while bus mastering is on).
    /// </summary>
    public bool TryStartFill(ClientMapping mapping)
    {
        lock (_lock)
        {
            if (mapping.Removed || mapping.Mirror != MirrorState.Unfilled || !_deviceAccess)
            {
                return false;
            }

            mapping.Mirror = MirrorState.Filling;
            return true;
        }
    }

    /// <summary>
    /// A fill ended: when <paramref name="filled"/>, the mirror's pieces enter the model's IOMMU read-only (decision V3)
    /// unless the client unmapped it meanwhile (then false); a failed fill is tried again when bus mastering is next set.
    /// </summary>
    public bool FinishFill(ClientMapping mapping, bool filled)
    {
        lock (_lock)
        {
            if (mapping.Removed)
            {
                return false;
            }

            mapping.Mirror = filled ? MirrorState.Filled : MirrorState.Unfilled;
            if (filled && _deviceAccess)
            {
                MapPieces(mapping, mapping.Access & DmaAccess.DeviceRead);
            }

            return filled;
        }
    }

    /// <summary>
    /// The function's bus master bit changed (decision V6). Off: every piece leaves the model's IOMMU (waiting for
    /// in-flight accesses) while the mappings stay. On: they come back. Returns the mirrors that wait for a fill.
    /// A mapping the model's IOMMU refuses now (over its locked-memory limit) stays in the table, unreachable, and is
    /// named in <paramref name="refused"/>.
    /// </summary>
    public List<ClientMapping> SetDeviceAccess(bool enabled, List<string> refused)
    {
        var unfilled = new List<ClientMapping>();
        List<ClientMapping> withdrawn = [];
        lock (_lock)
        {
            if (_deviceAccess == enabled)
            {
                return unfilled;
            }

            _deviceAccess = enabled;
            foreach (var m in _mappings)
            {
                if (!enabled)
                {
                    withdrawn.Add(m);
                }
                else if (m.Mirror == MirrorState.Unfilled)
                {
                    unfilled.Add(m);
                }
                else if (m.Mirror is MirrorState.None or MirrorState.Filled && m.Memory is not null)
                {
                    try
                    {
                        MapPieces(m, m.Mirror == MirrorState.Filled ? m.Access & DmaAccess.DeviceRead : m.Access);
                    }
                    catch (VfioUserException ex)
                    {
                        refused.Add(ex.Message);
                    }
                }
            }

            // Withdrawn under the lock, so a fill finishing meanwhile sees the new state; the IOMMU's unmap waits for
            // device accesses only, which never take this lock.
            foreach (var m in withdrawn)
            {
                UnmapPieces(m);
            }
        }

        return unfilled;
    }

    /// <summary>
    /// DMA_UNMAP: removes every mapping inside [<paramref name="iova"/>, +<paramref name="size"/>), or every mapping
    /// with <paramref name="all"/>; returns the bytes removed (0 when the range covers none). A mapping the range
    /// covers only in part is EINVAL (type1v2 does not split mappings) and nothing is removed.
    /// </summary>
    public ulong Unmap(ulong iova, ulong size, bool all)
    {
        List<ClientMapping> removed;
        lock (_lock)
        {
            if (all)
            {
                removed = [.. _mappings];
                _mappings.Clear();
            }
            else
            {
                if (size == 0 || iova % PageSize != 0 || size % PageSize != 0 || iova + size - 1 < iova)
                {
                    throw new VfioUserException(Errno.EINVAL, $"DMA_UNMAP of IOVA 0x{iova:X} size 0x{size:X}: both must be multiples of 4 KiB, the size non-zero, the range inside the address space");
                }

                var last = iova + size - 1;
                var first = FindInsertion(iova);
                if (first > 0 && _mappings[first - 1].Last >= iova)
                {
                    first--;
                }

                var end = first;
                while (end < _mappings.Count && _mappings[end].Iova <= last)
                {
                    var m = _mappings[end];
                    if (m.Iova < iova || m.Last > last)
                    {
                        throw new VfioUserException(Errno.EINVAL, $"DMA_UNMAP of 0x{iova:X}..0x{last:X} would split the mapping 0x{m.Iova:X}..0x{m.Last:X}; unmap whole mappings (type1v2)");
                    }

                    end++;
                }

                removed = _mappings.GetRange(first, end - first);
                _mappings.RemoveRange(first, end - first);
            }

            foreach (var m in removed)
            {
                m.Removed = true;
            }
        }

        var bytes = 0UL;
        foreach (var m in removed)
        {
            Release(m);
            bytes += m.Size;
        }

        return bytes;
    }

    /// <summary>The session ended: every mapping is removed and its memory unmapped.</summary>
    public void Clear() => Unmap(0, 0, all: true);

    // A shared mapping past the end of its file maps, but touching it is SIGBUS, which would end this process: the
    // range must lie inside the file as it is now. (A client that shrinks its file afterwards can still do that;
    // QEMU never does.)
    private static void CheckInsideFile(SafeFileDescriptor fd, ulong iova, ulong size, ulong offset)
    {
        long length;
        var added = false;
        fd.DangerousAddRef(ref added);
        try
        {
            using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd.DangerousGetHandle(), ownsHandle: false);
            length = RandomAccess.GetLength(handle);
        }
        catch (IOException ex)
        {
            throw new VfioUserException(Errno.EINVAL, $"DMA_MAP of IOVA 0x{iova:X}: the passed fd's size cannot be read ({ex.Message}); pass a memfd or a regular file");
        }
        finally
        {
            if (added)
            {
                fd.DangerousRelease();
            }
        }

        if (offset > (ulong)length || size > (ulong)length - offset)
        {
            throw new VfioUserException(Errno.EINVAL,
                $"DMA_MAP of IOVA 0x{iova:X} size 0x{size:X} at fd offset 0x{offset:X} runs past the end of the file (0x{length:X} bytes)");
        }
    }

    // With _lock held. Maps the parts of the range inside the model IOMMU's windows; undoes them all if one fails.
    private void MapPieces(ClientMapping mapping, DmaAccess access)
    {
        if (access == DmaAccess.None)
        {
            return;
        }

        try
        {
            foreach (var window in _iommu.Windows)
            {
                var start = Math.Max(window.Start, mapping.Iova);
                var end = Math.Min(window.End, mapping.Last);
                if (start > end)
                {
                    continue;
                }

                var length = end - start + 1;
                _iommu.Map(start, mapping.Memory!.Address + (nint)(start - mapping.Iova), length, access);
                mapping.IommuPieces.Add((start, length));
            }
        }
        catch (IommuMappingException ex)
        {
            UnmapPieces(mapping);
            throw new VfioUserException(Enum.TryParse<Errno>(ex.ErrnoName, out var errno) ? errno : Errno.EINVAL, $"DMA_MAP: the model's IOMMU refused: {ex.Message}");
        }
    }

    private void UnmapPieces(ClientMapping mapping)
    {
        foreach (var (iova, length) in mapping.IommuPieces)
        {
            // Returns once no device access still uses the pages (decision D29).
            _iommu.Unmap(iova, length);
        }

        mapping.IommuPieces.Clear();
    }

    // Outside _lock: the IOMMU unmap waits for in-flight device accesses, which never wait for this table.
    // The model's IOMMU holds the server's view of the client's file for as long as it maps a piece of it (D32, as
    // pin_user_pages holds guest pages): the view is disposed only after its pieces are unmapped, and should a hold
    // still be taken (the model disposed first unmapped them already), the munmap waits for it rather than pull the
    // memory from under the device.
    private void Release(ClientMapping mapping)
    {
        UnmapPieces(mapping);
        mapping.Memory?.Dispose();
    }

    // The index of the first mapping whose IOVA is at or above iova.
    private int FindInsertion(ulong iova)
    {
        int low = 0, high = _mappings.Count;
        while (low < high)
        {
            var mid = (low + high) / 2;
            if (_mappings[mid].Iova < iova)
            {
                low = mid + 1;
            }
            else
            {
                high = mid;
            }
        }

        return low;
    }
}
