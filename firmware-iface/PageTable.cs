using System.Runtime.InteropServices;

namespace FpgaAccel.FirmwareInterface;

/// <summary>Geometry of the device page table (spec 4.1).</summary>
public static class PageTableFormat
{
    public const int Levels = 4;
    public const int PageShift = 12;
    public const ulong PageSize = 1UL << PageShift;
    public const int EntriesPerTable = 512;
    public const int IndexBits = 9;
    public const int HugePageShift = 21;
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
    None = 0,
    Valid = 1 << 0,
    Read = 1 << 1,
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

    public static PageTableEntry Invalid => default;

    public PteFlags Flags => (PteFlags)(Raw & 0xF);

    public bool Valid => (Raw & (ulong)PteFlags.Valid) != 0;

    public bool Readable => (Raw & (ulong)PteFlags.Read) != 0;

    public bool Writable => (Raw & (ulong)PteFlags.Write) != 0;

    public bool IsLeafBit => (Raw & (ulong)PteFlags.Leaf) != 0;

    /// <summary>W without R is malformed and faults like a missing entry (spec 4.1).</summary>
    public bool Malformed => Writable && !Readable;

    public ulong Address => Raw & AddressMask;

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

    public static PageTableEntry Create(ulong address, PteFlags flags, ulong software = 0) =>
        new((address & AddressMask) | ((ulong)flags & 0xF) | (software & SoftwareMask));
}
