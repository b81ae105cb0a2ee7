using System.Runtime.CompilerServices;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver.Faults;

/// <summary>How a mirrored page may be used and whether it is backed now.</summary>
[Flags]
internal enum MirrorFlags : ulong
{
    None = 0,

    /// <summary>The page belongs to a registered region or pin.</summary>
    Valid = 1 << 0,

    /// <summary>The device may read it.</summary>
    Read = 1 << 1,

    /// <summary>The device may write it.</summary>
    Write = 1 << 2,

    /// <summary>Pinned on first touch (IOPF) rather than long-term.</summary>
    OnDemand = 1 << 3,

    /// <summary>Pinned in the IOMMU and translated in the device page table now.</summary>
    Present = 1 << 4,
}

/// <summary>
/// One mirrored page: flags in [7:0], log2 of the region's fault-around window in [11:8] (on-demand pages; decision F2),
/// the owning region's id in [63:32].
/// </summary>
internal readonly record struct MirrorEntry(ulong Raw)
{
    private const int FaultAroundShift = 8;

    public MirrorFlags Flags => (MirrorFlags)(Raw & 0xFF);

    /// <summary>Pages the fault path maps around a fault in this page (1: only the page). A power of two.</summary>
    public int FaultAroundPages => 1 << (int)((Raw >> FaultAroundShift) & 0xF);

    public bool Valid => (Raw & (ulong)MirrorFlags.Valid) != 0;

    public bool OnDemand => (Raw & (ulong)MirrorFlags.OnDemand) != 0;

    public bool Present => (Raw & (ulong)MirrorFlags.Present) != 0;

    /// <summary>The region this page belongs to (0 for none).</summary>
    public uint Region => (uint)(Raw >> 32);

    /// <summary>True when an access (a write when <paramref name="write"/>) is allowed.</summary>
    public bool Allows(bool write) => Valid && (Raw & (ulong)(write ? MirrorFlags.Write : MirrorFlags.Read)) != 0;

    public static MirrorEntry Create(uint region, MirrorFlags flags) => new(((ulong)region << 32) | (ulong)flags);

    /// <summary>An on-demand page's entry: <paramref name="faultAroundLog2"/> is log2 of its region's fault-around window (0..6).</summary>
    public static MirrorEntry Create(uint region, MirrorFlags flags, int faultAroundLog2) =>
        new(((ulong)region << 32) | ((ulong)(faultAroundLog2 & 0xF) << FaultAroundShift) | (ulong)flags);
}

/// <summary>
/// A software page table saying, for one context, which pages the device may touch, with which access,
/// and whether each is pinned long-term or on demand: the driver's mirror of the process's address
/// space, walked by the fault service without a lock.
/// </summary>
/// <remarks>
/// Layout: four levels indexed like the device table (spec 4.1): three levels of child arrays, then
/// leaves of 512 64-bit entries.
///
/// Why a lock-free reader never sees a freed table: tables are managed arrays, never returned to a
/// pool or reused. A reader that loaded a reference keeps the array alive (the GC will not collect
/// it) even if a writer unlinks it meanwhile; the reader then sees stale but well-formed data, and
/// staleness is the sequence count's job (<see cref="FaultService"/>: a translation looked up before
/// an invalidation that has since started is never installed).
/// Why a reader never sees a torn entry or a half-built table: entries are aligned 64-bit values read
/// with one <see cref="Volatile.Read(ref readonly ulong)"/> and written with one
/// <see cref="Volatile.Write(ref ulong, ulong)"/> (atomic on 64-bit); a new table is filled before the
/// reference to it is published with a release store, and the reader's acquire load of the reference
/// orders its reads of the contents after it.
/// Writers serialize on the owning context's lock (<see cref="Lock"/>), so no two writers race.
/// Lookups allocate nothing and take no lock.
/// </remarks>
internal sealed class AddressMirror
{
    private const int Fanout = PageTableFormat.EntriesPerTable;
    private readonly object?[] _root = new object?[Fanout];

    /// <summary>The writers' lock (the owning context's).</summary>
    public Lock Lock { get; } = new();

    /// <summary>Looks up the page holding <paramref name="dva"/>. Lock-free, allocation-free.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public MirrorEntry Lookup(ulong dva)
    {
        if (dva >= 1UL << PageTableFormat.VaBits)
        {
            return default;
        }

        // No `as` casts here: `as object?[]` and `as ulong[]` compile to calls into the runtime's cast
        // helpers (array covariance needs the general check), a call on every lookup. The types are
        // known instead: Leaf is the only writer of these tables, and it stores object?[] in the root and
        // level-1 tables and ulong[] in level-2 tables, so the reinterpretations below are exact.
        // tests/MachineCode checks this method's optimized code makes no call and takes no lock.
        var l1 = Volatile.Read(ref _root[PageTableFormat.Index(dva, 0)]);
        if (l1 is null)
        {
            return default;
        }

        var l2 = Volatile.Read(ref Unsafe.As<object?[]>(l1)[PageTableFormat.Index(dva, 1)]);
        if (l2 is null)
        {
            return default;
        }

        var leaf = Volatile.Read(ref Unsafe.As<object?[]>(l2)[PageTableFormat.Index(dva, 2)]);
        return leaf is null ? default : new MirrorEntry(Volatile.Read(ref Unsafe.As<ulong[]>(leaf)[PageTableFormat.Index(dva, 3)]));
    }

    /// <summary>Sets the entry of the page holding <paramref name="dva"/>. Hold <see cref="Lock"/>.</summary>
    public void Set(ulong dva, MirrorEntry entry)
    {
        var leaf = Leaf(dva, create: entry.Raw != 0);
        if (leaf is not null)
        {
            Volatile.Write(ref leaf[PageTableFormat.Index(dva, 3)], entry.Raw);
        }
    }

    /// <summary>
    /// Replaces the entry of <paramref name="dva"/> only if it still is <paramref name="expected"/>.
    /// Hold <see cref="Lock"/>. Returns whether it was replaced.
    /// </summary>
    public bool Replace(ulong dva, MirrorEntry expected, MirrorEntry next)
    {
        var leaf = Leaf(dva, create: false);
        if (leaf is null)
        {
            return expected.Raw == 0 && next.Raw == 0;
        }

        ref var slot = ref leaf[PageTableFormat.Index(dva, 3)];
        if (Volatile.Read(ref slot) != expected.Raw)
        {
            return false;
        }

        Volatile.Write(ref slot, next.Raw);
        return true;
    }

    private ulong[]? Leaf(ulong dva, bool create)
    {
        var l1 = Child<object?[]>(_root, PageTableFormat.Index(dva, 0), create, () => new object?[Fanout]);
        if (l1 is null)
        {
            return null;
        }

        var l2 = Child<object?[]>(l1, PageTableFormat.Index(dva, 1), create, () => new object?[Fanout]);
        return l2 is null ? null : Child<ulong[]>(l2, PageTableFormat.Index(dva, 2), create, () => new ulong[Fanout]);
    }

    private static T? Child<T>(object?[] table, int index, bool create, Func<T> make)
        where T : class
    {
        if (Volatile.Read(ref table[index]) is T existing)
        {
            return existing;
        }

        if (!create)
        {
            return null;
        }

        // Built (zeroed) before it is published with a release store.
        var child = make();
        Volatile.Write(ref table[index], child);
        return child;
    }
}
