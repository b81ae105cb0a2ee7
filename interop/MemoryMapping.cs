using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

/// <summary>Page protection for <see cref="MemoryMapping"/>.</summary>
[Flags]
public enum MemoryProtection
{
    /// <summary>No access: any touch faults (PROT_NONE).</summary>
    None = 0,

    /// <summary>The pages may be read (PROT_READ).</summary>
    Read = 1,

    /// <summary>The pages may be written (PROT_WRITE; on x86-64 this implies read).</summary>
    Write = 2,

    /// <summary>The pages may be read and written.</summary>
    ReadWrite = Read | Write,
}

/// <summary>
/// One mmap'ed range, unmapped exactly once when released. Lengths and offsets are 64-bit.
/// </summary>
public sealed class MemoryMapping : SafeHandle
{
    private MemoryMapping(nint address, ulong length)
        : base(Interop.Libc.MAP_FAILED, ownsHandle: true)
    {
        SetHandle(address);
        Length = length;
    }

    /// <summary>Length of the mapping in bytes.</summary>
    public ulong Length { get; }

    /// <summary>First byte of the mapping.</summary>
    public nint Address => handle;

    /// <summary>True for MAP_FAILED (what a failed mmap returns) and for null.</summary>
    public override bool IsInvalid => handle == Interop.Libc.MAP_FAILED || handle == 0;

    /// <summary>Maps <paramref name="length"/> bytes of zeroed anonymous private memory.</summary>
    public static MemoryMapping Anonymous(ulong length, MemoryProtection protection = MemoryProtection.ReadWrite, bool populate = false)
    {
        ArgumentOutOfRangeException.ThrowIfZero(length);
        var flags = Interop.Libc.MAP_PRIVATE | Interop.Libc.MAP_ANONYMOUS | (populate ? Interop.Libc.MAP_POPULATE : 0);
        // mmap(2): MAP_ANONYMOUS takes fd -1, which is what an invalid descriptor passes.
        using var noFile = new SafeFileDescriptor();
        return Map(length, protection, flags, noFile, 0);
    }

    /// <summary>
    /// Maps <paramref name="length"/> bytes (a multiple of 2 MiB) of zeroed anonymous memory in the system's default huge
    /// pages (MAP_HUGETLB), populated at once: the pages come from the pool an administrator reserved
    /// (/proc/sys/vm/nr_hugepages), and mmap fails with ENOMEM when it has too few.
    /// </summary>
    public static MemoryMapping AnonymousHugePages(ulong length)
    {
        ArgumentOutOfRangeException.ThrowIfZero(length);
        using var noFile = new SafeFileDescriptor();
        return Map(length, MemoryProtection.ReadWrite, Interop.Libc.MAP_PRIVATE | Interop.Libc.MAP_ANONYMOUS | Interop.Libc.MAP_HUGETLB | Interop.Libc.MAP_POPULATE, noFile, 0);
    }

    /// <summary>
    /// Maps <paramref name="length"/> bytes of <paramref name="fd"/> at <paramref name="offset"/> (a multiple of the
    /// page size), shared: stores reach the file and every other mapping of it (a memfd another process passed).
    /// The mapping keeps the file alive; the descriptor may be closed once this returns.
    /// </summary>
    /// <exception cref="SystemCallException">mmap refused (EINVAL for a misaligned offset, EACCES for a protection the descriptor's mode does not allow, ENODEV for a file that cannot be mapped).</exception>
    public static MemoryMapping Shared(SafeFileDescriptor fd, ulong length, long offset, MemoryProtection protection)
    {
        ArgumentNullException.ThrowIfNull(fd);
        ArgumentOutOfRangeException.ThrowIfZero(length);
        return Map(length, protection, Interop.Libc.MAP_SHARED, fd, offset);
    }

    private static MemoryMapping Map(ulong length, MemoryProtection protection, int flags, SafeFileDescriptor fd, long offset)
    {
        var address = Interop.Libc.mmap(0, (nuint)length, ToProt(protection), flags, fd, offset);
        if (address == Interop.Libc.MAP_FAILED)
        {
            throw Interop.Libc.Error("mmap");
        }

        return new MemoryMapping(address, length);
    }

    /// <summary>mmap's PROT_* bits for <paramref name="protection"/>, bit by bit (pinned against sys/mman.h by VfioLayoutTests).</summary>
    internal static int ToProt(MemoryProtection protection) =>
        ((protection & MemoryProtection.Read) != 0 ? Interop.Libc.PROT_READ : Interop.Libc.PROT_NONE)
        | ((protection & MemoryProtection.Write) != 0 ? Interop.Libc.PROT_WRITE : Interop.Libc.PROT_NONE);

    /// <summary>Unmaps the range (munmap(2)); runs once, when the last reference is released.</summary>
    protected override bool ReleaseHandle() => Interop.Libc.munmap(handle, (nuint)Length) == 0;
}
