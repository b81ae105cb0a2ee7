using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Driver;

/// <summary>
/// Page-aligned native memory for DMA buffers: it never moves (unlike a managed array) and is
/// zeroed when allocated. Pin it into a context to let the device use it.
/// </summary>
public sealed unsafe class HostBuffer : IDisposable
{
    private readonly MemoryMapping _mapping;
    private readonly nint _address;

    private HostBuffer(MemoryMapping mapping, nint address, ulong length)
    {
        _mapping = mapping;
        _address = address;
        Length = length;
    }

    /// <summary>First byte; 4 KiB aligned, and 2 MiB aligned when the length is at least 2 MiB.</summary>
    public nint Address => IsDisposed ? throw new ObjectDisposedException(nameof(HostBuffer), "The host buffer was freed.") : _address;

    /// <summary>Bytes asked for.</summary>
    public ulong Length { get; }

    /// <summary>True once freed; pinning a freed buffer is refused.</summary>
    public bool IsDisposed => _mapping.IsClosed;

    /// <summary>The bytes, as a span (buffers up to 2 GiB).</summary>
    public Span<byte> Span => new((void*)Address, checked((int)Length));

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
            var small = MemoryMapping.Anonymous(rounded);
            return new HostBuffer(small, small.Address, length);
        }

        // Over-allocate by 2 MiB and use the aligned window inside; the mapping is freed whole.
        var mapping = MemoryMapping.Anonymous(rounded + huge);
        var aligned = ((ulong)mapping.Address + huge - 1) & ~(huge - 1);
        return new HostBuffer(mapping, (nint)aligned, length);
    }

    /// <summary>Frees the memory. Unpin it first: a pinned buffer's pages stay pinned until unpinned.</summary>
    public void Dispose() => _mapping.Dispose();
}
