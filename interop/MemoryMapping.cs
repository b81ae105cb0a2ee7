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
/// <remarks>
/// <para>Holds (what a page reference is to the kernel): something outside the owner that needs the memory
/// to stay put, such as an IOMMU that pinned it for a device (pin_user_pages), takes a hold with
/// <see cref="TryHold"/> and gives it back with <see cref="ReleaseHold"/>. While any hold is taken,
/// <see cref="SafeHandle.Dispose()"/> by the owner is recorded (<see cref="IsReleasedByOwner"/>) but the
/// munmap is deferred until the last hold is released, as a pinned page stays allocated after its process
/// unmapped it. The deferral rides on the SafeHandle reference count (each hold is one
/// DangerousAddRef), so the release runs exactly once, on whichever thread drops the last reference.</para>
/// <para>Finding mappings by address (the kernel's find_vma): every mapping is listed in a process-wide
/// registry from creation until it is released by its owner with no hold left, so that <see cref="Find"/>
/// answers which mapping covers an address. A mapping released by its owner but still held stays listed,
/// marked released, so a new pin of that range is refused as the kernel refuses to pin an address its
/// process unmapped. The registry holds mappings weakly: an undisposed, unheld mapping is still finalized.
/// Memory not mapped through this type (NativeMemory, the GC heap, mappings made by native code) is not in
/// the registry and cannot be held: see <see cref="ProcessLimits.IsAccessible"/> for checking it.</para>
/// <para>Invariant: a range is listed only while it is mapped in this process, and at most one listed
/// mapping covers an address. Argument: a mapping is listed right after mmap returned it and unlisted
/// (under the registry lock) before its munmap can run (ReleaseHandle runs only once the owner released it
/// and no hold is left, both of which unlist it first); the kernel never hands out a mapped address again.</para>
/// </remarks>
public sealed class MemoryMapping : SafeHandle
{
    private static readonly Lock s_registryLock = new();
    private static RegistryEntry[] s_registry = new RegistryEntry[64];
    private static int s_registered;

    // Guarded by s_registryLock.
    private int _holds;
    private bool _listed;
    private volatile bool _releasedByOwner;

    private MemoryMapping(nint address, ulong length, MemoryProtection protection)
        : base(Interop.Libc.MAP_FAILED, ownsHandle: true)
    {
        SetHandle(address);
        Length = length;
        Protection = protection;
        List(this);
    }

    /// <summary>Length of the mapping in bytes.</summary>
    public ulong Length { get; }

    /// <summary>First byte of the mapping.</summary>
    public nint Address => handle;

    /// <summary>The protection the range was mapped with.</summary>
    public MemoryProtection Protection { get; }

    /// <summary>True for MAP_FAILED (what a failed mmap returns) and for null.</summary>
    public override bool IsInvalid => handle == Interop.Libc.MAP_FAILED || handle == 0;

    /// <summary>
    /// True once the owner disposed the mapping. While holds remain the memory is still mapped (the holders
    /// may still use it), but it belongs to nobody: a use of it now is a use after free.
    /// </summary>
    public bool IsReleasedByOwner => _releasedByOwner;

    /// <summary>Holds taken now (see the remarks).</summary>
    public int Holds
    {
        get
        {
            lock (s_registryLock)
            {
                return _holds;
            }
        }
    }

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

    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="fd"/> at <paramref name="offset"/>, shared.</summary>
    internal static MemoryMapping Shared(SafeFileDescriptor fd, ulong length, long offset, MemoryProtection protection)
    {
        ArgumentNullException.ThrowIfNull(fd);
        ArgumentOutOfRangeException.ThrowIfZero(length);
        return Map(length, protection, Interop.Libc.MAP_SHARED, fd, offset);
    }

    /// <summary>
    /// The listed mapping that covers <paramref name="address"/>, or null when no <see cref="MemoryMapping"/>
    /// does (the address is unmapped, or mapped by something else). A mapping its owner released while held
    /// is still found: check <see cref="IsReleasedByOwner"/>. Allocation-free.
    /// </summary>
    public static MemoryMapping? Find(nint address)
    {
        lock (s_registryLock)
        {
            var i = IndexAtOrBefore(address);
            if (i >= 0)
            {
                ref var entry = ref s_registry[i];
                if ((nuint)address - (nuint)entry.Start < entry.Length && entry.Mapping.TryGetTarget(out var mapping))
                {
                    return mapping;
                }
            }

            return null;
        }
    }

    /// <summary>
    /// The listed mapping with the lowest start at or above <paramref name="address"/>, or null: where the
    /// next mapping this registry knows begins (memory below it, down to <paramref name="address"/>, is not
    /// a <see cref="MemoryMapping"/>'s unless <see cref="Find"/> says so). Allocation-free.
    /// </summary>
    public static MemoryMapping? FindNext(nint address)
    {
        lock (s_registryLock)
        {
            for (var i = IndexAtOrBefore(address) + 1; i < s_registered; i++)
            {
                if (s_registry[i].Mapping.TryGetTarget(out var mapping))
                {
                    return mapping;
                }
            }

            return null;
        }
    }

    /// <summary>
    /// Takes a hold (see the remarks): until <see cref="ReleaseHold"/>, the range stays mapped even if the owner
    /// disposes it. False, with nothing taken, when the owner has already released the mapping.
    /// </summary>
    public bool TryHold()
    {
        lock (s_registryLock)
        {
            if (_releasedByOwner)
            {
                return false;
            }

            var added = false;
            DangerousAddRef(ref added);
            _holds++;
            return true;
        }
    }

    /// <summary>
    /// Gives back a hold taken with <see cref="TryHold"/>. The last one, after the owner released the
    /// mapping, unmaps it (on this thread).
    /// </summary>
    /// <exception cref="InvalidOperationException">No hold is taken: a release without its hold.</exception>
    public void ReleaseHold()
    {
        lock (s_registryLock)
        {
            if (_holds == 0)
            {
                throw new InvalidOperationException($"Memory mapping at 0x{handle:X} ({Length} bytes): a hold was released that was never taken; release exactly the holds TryHold gave.");
            }

            if (--_holds == 0 && _releasedByOwner)
            {
                Unlist(this);
            }
        }

        // Outside the lock: this may run ReleaseHandle (munmap), after the range was unlisted.
        DangerousRelease();
    }

    /// <summary>mmap's PROT_* bits for <paramref name="protection"/>, bit by bit (pinned against sys/mman.h by VfioLayoutTests).</summary>
    internal static int ToProt(MemoryProtection protection) =>
        ((protection & MemoryProtection.Read) != 0 ? Interop.Libc.PROT_READ : Interop.Libc.PROT_NONE)
        | ((protection & MemoryProtection.Write) != 0 ? Interop.Libc.PROT_WRITE : Interop.Libc.PROT_NONE);

    /// <summary>The owner releases the mapping: recorded at once; the munmap waits for the last hold (remarks).</summary>
    protected override void Dispose(bool disposing)
    {
        lock (s_registryLock)
        {
            if (!_releasedByOwner)
            {
                _releasedByOwner = true;
                if (_holds == 0)
                {
                    Unlist(this);
                }
            }
        }

        base.Dispose(disposing);
    }

    /// <summary>Unmaps the range (munmap(2)); runs once, when the owner released it and no hold is left.</summary>
    protected override bool ReleaseHandle() => Interop.Libc.munmap(handle, (nuint)Length) == 0;

    private static MemoryMapping Map(ulong length, MemoryProtection protection, int flags, SafeFileDescriptor fd, long offset)
    {
        var address = Interop.Libc.mmap(0, (nuint)length, ToProt(protection), flags, fd, offset);
        if (address == Interop.Libc.MAP_FAILED)
        {
            throw Interop.Libc.Error("mmap");
        }

        return new MemoryMapping(address, length, protection);
    }

    // Registry lock held: the index of the last entry starting at or below address, or -1.
    private static int IndexAtOrBefore(nint address)
    {
        int lo = 0, hi = s_registered - 1, found = -1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            if ((nuint)s_registry[mid].Start <= (nuint)address)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return found;
    }

    private static void List(MemoryMapping mapping)
    {
        lock (s_registryLock)
        {
            if (s_registered == s_registry.Length)
            {
                Array.Resize(ref s_registry, s_registry.Length * 2);
            }

            var at = IndexAtOrBefore(mapping.handle) + 1;
            Array.Copy(s_registry, at, s_registry, at + 1, s_registered - at);
            s_registry[at] = new RegistryEntry(mapping.handle, (nuint)mapping.Length, new WeakReference<MemoryMapping>(mapping));
            s_registered++;
            mapping._listed = true;
        }
    }

    // Registry lock held.
    private static void Unlist(MemoryMapping mapping)
    {
        if (!mapping._listed)
        {
            return;
        }

        mapping._listed = false;
        var at = IndexAtOrBefore(mapping.handle);
        if (at >= 0 && s_registry[at].Start == mapping.handle)
        {
            Array.Copy(s_registry, at + 1, s_registry, at, s_registered - at - 1);
            s_registry[--s_registered] = default;
        }
    }

    private readonly record struct RegistryEntry(nint Start, nuint Length, WeakReference<MemoryMapping> Mapping);
}
