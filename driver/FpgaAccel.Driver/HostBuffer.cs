using System.Runtime.CompilerServices;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Driver;

/// <summary>
/// Page-aligned native memory for DMA buffers: it never moves (unlike a managed array) and is
/// zeroed when allocated. Pin it into a context to let the device use it.
/// </summary>
/// <remarks>
/// Lifetime (issue 11, defect 7): a buffer knows the pins and on-demand regions over its memory (made from the buffer
/// or from an address inside it). <see cref="Dispose"/> first unpins and unregisters every one of them, each with its
/// invalidation fence, so the device can no longer reach the memory, and only then frees it. Dispose never throws: if
/// a device cannot be fenced (hung or gone), that pin stays, and the IOMMU mapping under it keeps holding the memory
/// (<see cref="Dma.IommuMappings"/>), so the address cannot be handed to a new allocation while the IOMMU maps it.
/// Pinning or registering a disposed buffer is refused. Users are added and the buffer disposed under one lock, so a
/// pin racing the dispose is either released by it or refused.
/// </remarks>
public sealed unsafe class HostBuffer : IDisposable
{
    // The buffer that owns each mapping, for pins made from a raw address (MemoryMapping.Find is the address lookup).
    private static readonly ConditionalWeakTable<MemoryMapping, HostBuffer> s_owners = new();

    private readonly MemoryMapping _mapping;
    private readonly nint _address;
    private readonly List<IDisposable> _users = [];
    private bool _disposed;

    private HostBuffer(MemoryMapping mapping, nint address, ulong length)
    {
        _mapping = mapping;
        _address = address;
        Length = length;
        s_owners.AddOrUpdate(mapping, this);
    }

    /// <summary>First byte; 4 KiB aligned, and 2 MiB aligned when the length is at least 2 MiB.</summary>
    public nint Address => IsDisposed ? throw new ObjectDisposedException(nameof(HostBuffer), "The host buffer was freed.") : _address;

    /// <summary>Bytes asked for.</summary>
    public ulong Length { get; }

    /// <summary>True once freed (or being freed); pinning a freed buffer is refused.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed);

    /// <summary>The bytes, as a span (buffers up to 2 GiB).</summary>
    public Span<byte> Span => new((void*)Address, checked((int)Length));

    /// <summary>The first byte, readable after dispose (to name the buffer in a refusal).</summary>
    internal nint Start => _address;

    /// <summary>Pins and regions over this buffer now (for tests and reports).</summary>
    internal int Users
    {
        get
        {
            lock (_users)
            {
                return _users.Count;
            }
        }
    }

    /// <summary>
    /// Allocates <paramref name="length"/> bytes. Buffers of 2 MiB or more start on a 2 MiB boundary,
    /// so the device can translate them with 2 MiB leaves (spec 4.1).
    /// </summary>
    public static HostBuffer Allocate(ulong length)
    {
        if (length == 0 || length > (1UL << 40))
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"A host buffer of {length} bytes is out of range: ask for 1 byte to 1 TiB.");
        }

        const ulong huge = PageTableFormat.HugePageSize;
        var rounded = (length + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1);
        if (rounded < huge)
        {
            var small = ForDma(MemoryMapping.Anonymous(rounded));
            return new HostBuffer(small, small.Address, length);
        }

        // Over-allocate by 2 MiB and use the aligned window inside; the mapping is freed whole.
        var mapping = ForDma(MemoryMapping.Anonymous(rounded + huge));
        var aligned = ((ulong)mapping.Address + huge - 1) & ~(huge - 1);
        return new HostBuffer(mapping, (nint)aligned, length);
    }

    /// <summary>
    /// Frees the memory after unpinning and unregistering everything over it (each with its fence: see the remarks).
    /// Never throws; a second call does nothing.
    /// </summary>
    public void Dispose()
    {
        IDisposable[] users;
        lock (_users)
        {
            if (_disposed)
            {
                return;
            }

            Volatile.Write(ref _disposed, true);
            users = [.. _users];
        }

        ScheduleHooks.At(SchedulePoint.BufferReleasing);
        foreach (var user in users)
        {
            try
            {
                // PinnedBuffer.Dispose unpins and OnDemandRegion.Dispose unregisters, each once, with its fence.
                user.Dispose();
            }
            catch (FpgaAccelException)
            {
                // The device could not be fenced: the pin stays, and its IOMMU mapping holds the memory (remarks).
            }
        }

        _mapping.Dispose();
    }

    /// <summary>
    /// Marks fresh memory for DMA: not inherited by a forked child (MADV_DONTFORK, issue 11 defect 14), so a fork
    /// neither copies it nor, on kernels before 5.9, lets the parent's next write leave the device's page behind.
    /// Frees the mapping if the kernel refuses.
    /// </summary>
    internal static MemoryMapping ForDma(MemoryMapping mapping)
    {
        try
        {
            return MemoryAdvice.ExcludeFromFork(mapping);
        }
        catch
        {
            mapping.Dispose();
            throw;
        }
    }

    /// <summary>The buffer whose memory holds <paramref name="address"/> (disposed or not), or null for memory of another origin.</summary>
    internal static HostBuffer? Owning(nint address)
    {
        var mapping = MemoryMapping.Find(address);
        return mapping is not null && s_owners.TryGetValue(mapping, out var buffer) ? buffer : null;
    }

    /// <summary>
    /// Runs <paramref name="create"/> (a pin or a registration over this buffer) and records its result as a user, under
    /// the lock <see cref="Dispose"/> takes: a buffer being disposed refuses it instead.
    /// </summary>
    internal T AddUser<T>(nint address, ulong length, Func<T> create)
        where T : class, IDisposable
    {
        lock (_users)
        {
            if (_disposed)
            {
                throw new PinRejectedException(address, length, "the host buffer was already freed (disposed)", "Pin or register a live buffer.");
            }

            var user = create();
            _users.Add(user);
            return user;
        }
    }

    /// <summary>A pin or region over this buffer is gone (unpinned, unregistered, or its context disposed).</summary>
    internal void RemoveUser(IDisposable user)
    {
        lock (_users)
        {
            _users.Remove(user);
        }
    }
}
