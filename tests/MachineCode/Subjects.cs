using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace FpgaAccel.Tests.MachineCode;

/// <summary>
/// A register window shaped like the board's BAR accessor (a base pointer, a length, a bounds check that
/// throws from a helper), with the right accessors and deliberately wrong ones, so the checks are shown
/// to pass on correct code and to fail on a torn access.
/// </summary>
internal sealed unsafe class WindowSubject
{
    private readonly byte* _base;
    private readonly ulong _length;

    public WindowSubject(byte* @base, ulong length)
    {
        _base = @base;
        _length = length;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Read64(ulong offset)
    {
        Check(offset, 8);
        return Volatile.Read(ref *(ulong*)(_base + offset));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write64(ulong offset, ulong value)
    {
        Check(offset, 8);
        Volatile.Write(ref *(ulong*)(_base + offset), value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Read32(ulong offset)
    {
        Check(offset, 4);
        return Volatile.Read(ref *(uint*)(_base + offset));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write32(ulong offset, uint value)
    {
        Check(offset, 4);
        Volatile.Write(ref *(uint*)(_base + offset), value);
    }

    /// <summary>Wrong on purpose: a doorbell written as two 32-bit stores (the device may see half of it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void TornWrite64(ulong offset, ulong value)
    {
        Check(offset, 8);
        Volatile.Write(ref *(uint*)(_base + offset), (uint)value);
        Volatile.Write(ref *(uint*)(_base + offset + 4), (uint)(value >> 32));
    }

    /// <summary>Wrong on purpose: a 64-bit register read as two 32-bit loads.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong TornRead64(ulong offset)
    {
        Check(offset, 8);
        var low = Volatile.Read(ref *(uint*)(_base + offset));
        var high = Volatile.Read(ref *(uint*)(_base + offset + 4));
        return low | ((ulong)high << 32);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Check(ulong offset, uint width)
    {
        if (offset >= _length || _length - offset < width || (offset & (width - 1)) != 0)
        {
            ThrowBadAccess(offset);
        }
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowBadAccess(ulong offset) =>
        throw new ArgumentOutOfRangeException(nameof(offset), offset, "outside the window");
}

/// <summary>
/// Lookups that synchronize, which the lock-free check must flag. A method with a lock is never inlined,
/// so its own body is decoded; AggressiveOptimization makes that body optimized from the first compile.
/// </summary>
internal sealed class SynchronizedSubject
{
    private readonly object _gate = new();
    private readonly Lock _lock = new();
    private long _count;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long WithMonitor()
    {
        lock (_gate)
        {
            return ++_count;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long WithLock()
    {
        lock (_lock)
        {
            return ++_count;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long WithInterlocked() => Interlocked.Increment(ref _count);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long WithExchange() => Interlocked.Exchange(ref _count, 0);

    /// <summary>A plain lock-free read, which must pass.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long Plain() => Volatile.Read(ref _count);
}
