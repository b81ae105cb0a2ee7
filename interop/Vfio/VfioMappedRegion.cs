using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace FpgaAccel.Interop.Vfio;

/// <summary>
/// An mmapped window of a device region (a BAR). Every access is exactly one naturally aligned volatile load
/// or store of its width, never split, as device registers need. The bounds check throws from a helper so
/// the accessors inline to a compare and a mov.
/// </summary>
/// <remarks>Dispose must not race with accesses: the owner stops using the window before disposing it.</remarks>
public sealed unsafe class VfioMappedRegion : IDisposable
{
    private readonly MemoryMapping _mapping;
    private readonly byte* _base;
    private ulong _length;

    internal VfioMappedRegion(MemoryMapping mapping, uint regionIndex, ulong regionOffset)
    {
        _mapping = mapping;
        _base = (byte*)mapping.Address;
        _length = mapping.Length;
        RegionIndex = regionIndex;
        RegionOffset = regionOffset;
    }

    /// <summary>Creates a window over memory the caller owns (tests, or a region mapped another way).</summary>
    internal static VfioMappedRegion Over(MemoryMapping mapping) => new(mapping, uint.MaxValue, 0);

    /// <summary>Which region this maps.</summary>
    public uint RegionIndex { get; }

    /// <summary>Where in the region the window starts.</summary>
    public ulong RegionOffset { get; }

    /// <summary>Bytes mapped; 0 once disposed.</summary>
    public ulong Length => Volatile.Read(ref _length);

    /// <summary>Address of the first byte.</summary>
    public nint Address => (nint)_base;

    /// <summary>Reads the 32-bit register at <paramref name="offset"/> (4-byte aligned, inside the window): one volatile load.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Read32(ulong offset)
    {
        if (offset >= _length || _length - offset < 4 || (offset & 3) != 0)
        {
            ThrowBadAccess(offset, 4);
        }

        return Volatile.Read(ref *(uint*)(_base + offset));
    }

    /// <summary>Writes the 32-bit register at <paramref name="offset"/> (4-byte aligned, inside the window): one volatile store.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write32(ulong offset, uint value)
    {
        if (offset >= _length || _length - offset < 4 || (offset & 3) != 0)
        {
            ThrowBadAccess(offset, 4);
        }

        Volatile.Write(ref *(uint*)(_base + offset), value);
    }

    /// <summary>Reads the 64-bit register at <paramref name="offset"/> (8-byte aligned, inside the window): one volatile load, never split.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Read64(ulong offset)
    {
        if (offset >= _length || _length - offset < 8 || (offset & 7) != 0)
        {
            ThrowBadAccess(offset, 8);
        }

        return Volatile.Read(ref *(ulong*)(_base + offset));
    }

    /// <summary>Writes the 64-bit register at <paramref name="offset"/> (8-byte aligned, inside the window): one volatile store, never split.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write64(ulong offset, ulong value)
    {
        if (offset >= _length || _length - offset < 8 || (offset & 7) != 0)
        {
            ThrowBadAccess(offset, 8);
        }

        Volatile.Write(ref *(ulong*)(_base + offset), value);
    }

    /// <summary>Unmaps the window; later accesses throw <see cref="ObjectDisposedException"/>. Not while another thread accesses it.</summary>
    public void Dispose()
    {
        Volatile.Write(ref _length, 0);
        _mapping.Dispose();
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBadAccess(ulong offset, int width)
    {
        ObjectDisposedException.ThrowIf(_mapping.IsClosed, this);
        throw new ArgumentOutOfRangeException(
            nameof(offset), offset,
            $"A {width * 8}-bit access at 0x{offset:X} is outside the mapped 0x{_mapping.Length:X} bytes of region {RegionIndex} " +
            $"or not {width}-byte aligned; registers are accessed naturally aligned, inside the window.");
    }
}
