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
    private const ulong Huge = PageTableFormat.HugePageSize;

    // The buffer that owns each mapping, for pins made from a raw address (MemoryMapping.Find is the address lookup).
    private static readonly ConditionalWeakTable<MemoryMapping, HostBuffer> s_owners = new();

    private readonly MemoryMapping _mapping;
    private readonly nint _address;
    private readonly List<IDisposable> _users = [];
    private bool _disposed;

    private HostBuffer(MemoryMapping mapping, nint address, ulong length, HostBufferPageKind pageKind)
    {
        _mapping = mapping;
        _address = address;
        Length = length;
        PageKind = pageKind;
        s_owners.AddOrUpdate(mapping, this);
    }

    /// <summary>First byte; 4 KiB aligned, and 2 MiB aligned when the length is at least 2 MiB.</summary>
    public nint Address => IsDisposed ? throw new ObjectDisposedException(nameof(HostBuffer), "The host buffer was freed.") : _address;

    /// <summary>Bytes asked for.</summary>
    public ulong Length { get; }

    /// <summary>
    /// The pages under the buffer: 4 KiB, transparent huge pages (advised with MADV_HUGEPAGE; the kernel backs 2 MiB
    /// ranges with huge pages where it can), or 2 MiB pages from the reserved hugetlbfs pool (decision F9).
    /// </summary>
    public HostBufferPageKind PageKind { get; }

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
    /// Allocates <paramref name="length"/> bytes in the best pages the host offers (<see cref="HostBufferPages.Auto"/>).
    /// Buffers of 2 MiB or more start on a 2 MiB boundary, so the device can translate them with 2 MiB leaves (spec 4.1).
    /// </summary>
    public static HostBuffer Allocate(ulong length) => Allocate(length, HostBufferPages.Auto);

    /// <summary>
    /// Allocates <paramref name="length"/> bytes in the pages <paramref name="pages"/> asks for (decision F9): a huge
    /// page is one IOMMU map call and one IOTLB entry where 4 KiB pages are 512 of each. Buffers of 2 MiB or more start
    /// on a 2 MiB boundary; <see cref="PageKind"/> says which pages it got.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is 0 or over 1 TiB, or <paramref name="pages"/> is not a defined value.</exception>
    /// <exception cref="HugePagesUnavailableException"><see cref="HostBufferPages.Huge"/> and the reserved pool has too few free pages.</exception>
    public static HostBuffer Allocate(ulong length, HostBufferPages pages)
    {
        if (length == 0 || length > (1UL << 40))
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"A host buffer of {length} bytes is out of range: ask for 1 byte to 1 TiB.");
        }

        if (!Enum.IsDefined(pages))
        {
            throw new ArgumentOutOfRangeException(nameof(pages), pages, $"HostBufferPages {(int)pages} is not a page choice: use Auto, Huge, TransparentHuge or Small.");
        }

        var rounded = (length + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1);
        var wholeHuge = (rounded + Huge - 1) & ~(Huge - 1);

        // hugetlbfs: asked for, or Auto for a buffer of at least one huge page (a smaller one would waste most of it).
        if (pages == HostBufferPages.Huge || (pages == HostBufferPages.Auto && rounded >= Huge))
        {
            try
            {
                var huge = ForDma(MemoryMapping.AnonymousHugePages(wholeHuge));
                return new HostBuffer(huge, huge.Address, length, HostBufferPageKind.Huge);
            }
            catch (SystemCallException) when (pages == HostBufferPages.Auto)
            {
                // The pool is empty or too small (ENOMEM), or the kernel has no hugetlbfs: fall back (F9).
            }
            catch (SystemCallException ex)
            {
                throw new HugePagesUnavailableException(length, wholeHuge / Huge, FreeHugePages(), ex);
            }
        }

        // Buffers under 2 MiB stay in 4 KiB pages; larger ones are aligned to 2 MiB by over-allocating 2 MiB and using the
        // aligned window inside (the mapping is freed whole), so transparent huge pages can back whole 2 MiB ranges.
        var mapping = ForDma(MemoryMapping.Anonymous(rounded < Huge ? rounded : rounded + Huge));
        var address = rounded < Huge ? mapping.Address : (nint)(((ulong)mapping.Address + Huge - 1) & ~(Huge - 1));
        var kind = HostBufferPageKind.Small;
        if (pages == HostBufferPages.Small)
        {
            // Even under transparent_hugepage=always: the caller asked for 4 KiB pages (to measure them, say).
            MemoryAdvice.AvoidTransparentHugePages(mapping);
        }
        else if ((pages == HostBufferPages.TransparentHuge || rounded >= Huge) && MemoryAdvice.UseTransparentHugePages(mapping))
        {
            kind = HostBufferPageKind.TransparentHuge;
        }

        return new HostBuffer(mapping, address, length, kind);
    }

    /// <summary>Free pages in the default (2 MiB) hugetlbfs pool, or 0 when the kernel has none.</summary>
    public static long FreeHugePages()
    {
        try
        {
            return long.Parse(File.ReadAllText("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
        {
            return 0;
        }
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

/// <summary>Which pages <see cref="HostBuffer.Allocate(ulong, HostBufferPages)"/> uses (decision F9).</summary>
public enum HostBufferPages
{
    /// <summary>
    /// For a buffer of 2 MiB or more: 2 MiB pages from the reserved hugetlbfs pool when it has enough, else transparent
    /// huge pages, else 4 KiB; a smaller buffer is 4 KiB pages.
    /// </summary>
    Auto,

    /// <summary>2 MiB pages from the reserved hugetlbfs pool (/proc/sys/vm/nr_hugepages), or <see cref="HugePagesUnavailableException"/>.</summary>
    Huge,

    /// <summary>Transparent huge pages (MADV_HUGEPAGE), 4 KiB when the kernel has them off.</summary>
    TransparentHuge,

    /// <summary>4 KiB pages (MADV_NOHUGEPAGE, so not even transparent_hugepage=always gives huge ones).</summary>
    Small,
}

/// <summary>The pages a <see cref="HostBuffer"/> got.</summary>
public enum HostBufferPageKind
{
    /// <summary>4 KiB pages.</summary>
    Small,

    /// <summary>Advised to use transparent huge pages (MADV_HUGEPAGE): 2 MiB where the kernel could, else 4 KiB.</summary>
    TransparentHuge,

    /// <summary>2 MiB pages from the hugetlbfs pool (MAP_HUGETLB): physically contiguous per 2 MiB, never split.</summary>
    Huge,
}

