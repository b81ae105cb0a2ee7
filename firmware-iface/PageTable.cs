using System.Runtime.InteropServices;

namespace FpgaAccel.FirmwareInterface;

/// <summary>Geometry of the device page table (spec 4.1).</summary>
public static class PageTableFormat
{
    /// <summary>Levels of tables from the root to a 4 KiB leaf.</summary>
    public const int Levels = 4;

    /// <summary>log2 of <see cref="PageSize"/>.</summary>
    public const int PageShift = 12;

    /// <summary>A page, and a table: 4 KiB.</summary>
    public const ulong PageSize = 1UL << PageShift;

    /// <summary>8-byte entries per 4 KiB table.</summary>
    public const int EntriesPerTable = 512;

    /// <summary>DVA bits that index one table.</summary>
    public const int IndexBits = 9;

    /// <summary>log2 of <see cref="HugePageSize"/>.</summary>
    public const int HugePageShift = 21;

    /// <summary>A level-2 leaf's page: 2 MiB (CAPS.HUGE_2M).</summary>
    public const ulong HugePageSize = 1UL << HugePageShift;

    /// <summary>The level whose leaves are 2 MiB pages.</summary>
    public const int HugeLeafLevel = 2;

    /// <summary>DVA bits the table translates.</summary>
    public const int VaBits = 48;

    /// <summary>Lowest DVA bit of the level-<paramref name="level"/> index: 39, 30, 21, 12.</summary>
    public static int LevelShift(int level) => PageShift + (IndexBits * (Levels - 1 - level));

    /// <summary>Index into the level-<paramref name="level"/> table: DVA[47:39], [38:30], [29:21], [20:12].</summary>
    public static int Index(ulong dva, int level) =>
        (int)((dva >> LevelShift(level)) & (EntriesPerTable - 1));
}

/// <summary>Permission and type bits of a page-table entry (spec 4.1).</summary>
[Flags]
public enum PteFlags : ulong
{
    /// <summary>An invalid entry.</summary>
    None = 0,

    /// <summary>[0] V: the entry is valid.</summary>
    Valid = 1 << 0,

    /// <summary>[1] R: the leaf's page may be read.</summary>
    Read = 1 << 1,

    /// <summary>[2] W: the leaf's page may be written (needs R too).</summary>
    Write = 1 << 2,

    /// <summary>At level 2, a 2 MiB page; at level 3 implied for every valid entry.</summary>
    Leaf = 1 << 3,
}

/// <summary>
/// One 8-byte page-table entry (spec 4.1): [0] V, [1] R, [2] W, [3] LEAF, [11:4] software,
/// [51:12] IOVA of the next table or page, [63:52] software. Written with a single 8-byte store.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 8)]
public readonly record struct PageTableEntry(ulong Raw)
{
    /// <summary>Mask of the address field [51:12].</summary>
    public const ulong AddressMask = 0x000F_FFFF_FFFF_F000;

    /// <summary>Mask of the software bits the device ignores: [11:4] and [63:52].</summary>
    public const ulong SoftwareMask = 0xFFF0_0000_0000_0FF0;

    /// <summary>The all-zero entry: not valid.</summary>
    public static PageTableEntry Invalid => default;

    /// <summary>Bits [3:0]: V, R, W, LEAF.</summary>
    public PteFlags Flags => (PteFlags)(Raw & 0xF);

    /// <summary>V: the entry is valid.</summary>
    public bool Valid => (Raw & (ulong)PteFlags.Valid) != 0;

    /// <summary>R: a leaf grants reads.</summary>
    public bool Readable => (Raw & (ulong)PteFlags.Read) != 0;

    /// <summary>W: a leaf grants writes (with R).</summary>
    public bool Writable => (Raw & (ulong)PteFlags.Write) != 0;

    /// <summary>The LEAF bit as stored; whether it makes a leaf depends on the level (spec 4.1).</summary>
    public bool IsLeafBit => (Raw & (ulong)PteFlags.Leaf) != 0;

    /// <summary>W without R is malformed and faults like a missing entry (spec 4.1).</summary>
    public bool Malformed => Writable && !Readable;

    /// <summary>[51:12]: IOVA of the next table, or of the page.</summary>
    public ulong Address => Raw & AddressMask;

    /// <summary>The software bits, in place.</summary>
    public ulong Software => Raw & SoftwareMask;

    /// <summary>
    /// For a leaf, the IOVA of the 4 KiB page <paramref name="dva"/> falls in: <see cref="Address"/> for a
    /// 4 KiB leaf; for a 2 MiB leaf (<paramref name="hugeLeaf"/>, spec 4.1) the 2 MiB-aligned address
    /// (bits [20:12] of the entry are ignored, decision D11) plus DVA[20:12].
    /// </summary>
    public ulong LeafPageAddress(ulong dva, bool hugeLeaf) =>
        hugeLeaf
            ? (Address & ~(PageTableFormat.HugePageSize - 1)) | (dva & (PageTableFormat.HugePageSize - 1) & ~(PageTableFormat.PageSize - 1))
            : Address;

    /// <summary>An entry with the address, flags and software bits given (each masked to its field).</summary>
    public static PageTableEntry Create(ulong address, PteFlags flags, ulong software = 0) =>
        new((address & AddressMask) | ((ulong)flags & 0xF) | (software & SoftwareMask));
}
