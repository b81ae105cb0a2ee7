using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>
/// The device TLB (spec 4.1): set-associative, <c>ways x 2^setsLog2</c> entries as CAPS reports, least
/// recently used replacement within a set, tagged by (context, DVA 4 KiB page). A 2 MiB leaf is held
/// as the 4 KiB page that was used, marked huge so that an invalidation of any page of the 2 MiB
/// span drops it. Only valid leaves are inserted (spec 4.1: the device never caches an invalid entry).
/// Not thread-safe: the MMU's lock guards it.
/// </summary>
internal sealed class Tlb
{
    private const ulong PagesPerHugePage = PageTableFormat.HugePageSize / PageTableFormat.PageSize;

    // A range of at most this many pages is looked for in its pages' sets only (when the narrow scan applies).
    private const ulong NarrowScanPages = 64;

    private readonly Entry[] _entries;
    private readonly int _ways;
    private readonly ulong _setMask;
    private ulong _useStamp;

    // Valid entries that are 2 MiB leaves: while there are none, every entry of a page sits in that page's own set.
    private int _hugeEntries;

    public Tlb(int ways, int setsLog2)
    {
        _ways = ways;
        _setMask = (1UL << setsLog2) - 1;
        _entries = new Entry[ways << setsLog2];
    }

    /// <summary>Valid entries now.</summary>
    public int Count => _entries.Count(e => e.Valid);

    /// <summary>
    /// Looks up (context, page); a hit becomes the most recently used way of its set. The translation carries
    /// <see cref="TlbTranslation.Retired"/> when the oracle marked the entry (<see cref="MarkRetired"/>).
    /// </summary>
    public bool TryLookup(byte context, ulong page, out TlbTranslation translation)
    {
        var set = SetOf(context, page);
        for (var way = 0; way < _ways; way++)
        {
            ref var e = ref _entries[set + way];
            if (e.Valid && e.Context == context && e.Page == page)
            {
                e.LastUse = ++_useStamp;
                translation = e.Retired ? e.Translation with { Retired = true } : e.Translation;
                return true;
            }
        }

        translation = default;
        return false;
    }

    /// <summary>
    /// Inserts a valid leaf translation, replacing the same tag, else a free way, else the LRU way. Returns the
    /// translation of another tag it pushed out for room (a capacity eviction), if any.
    /// </summary>
    public TlbTranslation? Insert(byte context, ulong page, TlbTranslation translation, bool huge)
    {
        var set = SetOf(context, page);
        var victim = set;
        var oldest = ulong.MaxValue;
        for (var way = 0; way < _ways; way++)
        {
            ref var e = ref _entries[set + way];
            if (e.Valid && e.Context == context && e.Page == page)
            {
                victim = set + way;
                break;
            }

            var age = e.Valid ? e.LastUse : 0;
            if (age < oldest)
            {
                oldest = age;
                victim = set + way;
            }
        }

        ref var old = ref _entries[victim];
        TlbTranslation? evicted = old.Valid && (old.Context != context || old.Page != page) ? old.Translation : null;
        _hugeEntries += (huge ? 1 : 0) - (old.Valid && old.Huge ? 1 : 0);
        old = new Entry
        {
            Valid = true,
            Context = context,
            Page = page,
            Translation = translation,
            Huge = huge,
            LastUse = ++_useStamp,
        };
        return evicted;
    }

    /// <summary>
    /// The oracle's mark (exact staleness, no history): every entry of <paramref name="context"/> (every context
    /// when null) overlapping the pages and filled before <paramref name="epoch"/> is marked retired. An
    /// invalidation drops its entries when issued, so a completed one finds none unless the MMU failed to.
    /// </summary>
    public int MarkRetired(int? context, ulong firstPage, ulong endPage, long epoch)
    {
        var marked = 0;
        if (NarrowScan(context, firstPage, endPage))
        {
            for (var page = firstPage; page < endPage; page++)
            {
                var set = SetOf((byte)context!.Value, page);
                for (var way = 0; way < _ways; way++)
                {
                    marked += MarkIfCovered(ref _entries[set + way], context, firstPage, endPage, epoch);
                }
            }

            return marked;
        }

        for (var i = 0; i < _entries.Length; i++)
        {
            marked += MarkIfCovered(ref _entries[i], context, firstPage, endPage, epoch);
        }

        return marked;
    }

    /// <summary>Copies every valid entry, for the oracle's audit.</summary>
    public void Snapshot(List<TlbEntryView> into)
    {
        foreach (var e in _entries)
        {
            if (e.Valid)
            {
                into.Add(new TlbEntryView(e.Context, e.Page, e.Huge, e.Translation));
            }
        }
    }

    /// <summary>The entry for (context, page), still an unverified DROPIN, is judged: its mark is cleared. True if it was there.</summary>
    public bool ClearUnverifiedDropin(byte context, ulong page)
    {
        var set = SetOf(context, page);
        for (var way = 0; way < _ways; way++)
        {
            ref var e = ref _entries[set + way];
            if (e.Valid && e.Context == context && e.Page == page && e.Translation.UnverifiedDropin)
            {
                e.Translation = e.Translation with { UnverifiedDropin = false };
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Drops every entry of <paramref name="context"/> (or of every context when null) whose leaf
    /// overlaps pages [<paramref name="firstPage"/>, <paramref name="endPage"/>). Returns how many.
    /// </summary>
    public int Invalidate(int? context, ulong firstPage, ulong endPage)
    {
        var dropped = 0;
        if (NarrowScan(context, firstPage, endPage))
        {
            for (var page = firstPage; page < endPage; page++)
            {
                var set = SetOf((byte)context!.Value, page);
                for (var way = 0; way < _ways; way++)
                {
                    dropped += DropIfCovered(ref _entries[set + way], context, firstPage, endPage);
                }
            }

            return dropped;
        }

        for (var i = 0; i < _entries.Length; i++)
        {
            dropped += DropIfCovered(ref _entries[i], context, firstPage, endPage);
        }

        return dropped;
    }

    public void Clear()
    {
        Array.Clear(_entries);
        _hugeEntries = 0;
    }

    // A hardware TLB matches a range in all its entries at once; the model looks only where the range's entries can be
    // when that is cheaper: one context, a short range, and no 2 MiB leaf anywhere (a 2 MiB leaf is kept under the 4 KiB
    // page that filled it, which may lie outside the range, in another set). Entries are tagged (context, page) and a
    // 4 KiB entry of page p is always in set SetOf(context, p), so the narrow scan finds every entry the full one would;
    // and since SetOf is a bijection on the page's low bits, a range no longer than the set count visits each set once.
    private bool NarrowScan(int? context, ulong firstPage, ulong endPage) =>
        context is >= 0 and <= byte.MaxValue && _hugeEntries == 0 && endPage > firstPage
        && endPage - firstPage <= Math.Min(NarrowScanPages, _setMask + 1);

    private int DropIfCovered(ref Entry e, int? context, ulong firstPage, ulong endPage)
    {
        if (!e.Valid || (context is { } c && e.Context != c) || !Overlaps(e, firstPage, endPage))
        {
            return 0;
        }

        _hugeEntries -= e.Huge ? 1 : 0;
        e = default;
        return 1;
    }

    private static int MarkIfCovered(ref Entry e, int? context, ulong firstPage, ulong endPage, long epoch)
    {
        if (e.Valid && (context is not { } c || e.Context == c) && e.Translation.FillEpoch < epoch && Overlaps(e, firstPage, endPage))
        {
            e.Retired = true;
            return 1;
        }

        return 0;
    }

    // A 2 MiB leaf counts as its whole span, so that an invalidation of any page of it drops it.
    private static bool Overlaps(in Entry e, ulong firstPage, ulong endPage)
    {
        var spanStart = e.Huge ? e.Page & ~(PagesPerHugePage - 1) : e.Page;
        var spanEnd = spanStart + (e.Huge ? PagesPerHugePage : 1);
        return spanStart < endPage && firstPage < spanEnd;
    }

    private int SetOf(byte context, ulong page) =>
        (int)((page ^ ((ulong)context * 0x9E37_79B9UL)) & _setMask) * _ways;

    private struct Entry
    {
        public bool Valid;
        public bool Huge;
        public bool Retired;
        public byte Context;
        public ulong Page;
        public TlbTranslation Translation;
        public ulong LastUse;
    }
}

/// <summary>A cached leaf translation.</summary>
/// <param name="Leaf">The leaf entry (its permissions are checked on every hit).</param>
/// <param name="PageIova">IOVA of the 4 KiB page the DVA page maps to.</param>
/// <param name="FillEpoch">MMU epoch when the walk that found it began (or the DROPIN was installed).</param>
/// <param name="Generation">IOMMU generation of that IOVA page when cached (0 if unmapped then): the oracle's reference.</param>
/// <param name="UnverifiedDropin">
/// Installed by a DROPIN that granted more than the page table did at that moment; the oracle's verdict waits
/// for how the entry leaves (see <see cref="TranslationOracle"/>).
/// </param>
/// <param name="Retired">Returned by a lookup only: a completed invalidation covered the entry after it was filled.</param>
internal readonly record struct TlbTranslation(ulong Leaf, ulong PageIova, long FillEpoch, long Generation, bool UnverifiedDropin = false, bool Retired = false);

/// <summary>One TLB entry as the oracle's audit sees it.</summary>
internal readonly record struct TlbEntryView(byte Context, ulong Page, bool Huge, TlbTranslation Translation);

/// <summary>One walk-cache entry as the oracle's audit sees it: the non-leaf entry at <paramref name="Level"/> for DVAs starting at <paramref name="Dva"/>.</summary>
internal readonly record struct WalkCacheEntryView(byte Context, int Level, ulong Dva, ulong Raw);

/// <summary>
/// The walk cache (spec 4.1): non-leaf entries, tagged by (context, level, the DVA bits above that
/// level's <see cref="PageTableFormat.LevelShift"/>, which index down to it). Fully associative, least
/// recently used replacement. Only valid entries are inserted. Not thread-safe: the MMU's lock guards it.
/// </summary>
internal sealed class WalkCache
{
    private readonly Entry[] _entries;
    private ulong _useStamp;

    public WalkCache(int capacity) => _entries = new Entry[capacity];

    public bool TryGet(byte context, int level, ulong dva, out ulong entry)
    {
        var prefix = dva >> PageTableFormat.LevelShift(level);
        for (var i = 0; i < _entries.Length; i++)
        {
            ref var e = ref _entries[i];
            if (e.Valid && e.Context == context && e.Level == level && e.Prefix == prefix)
            {
                e.LastUse = ++_useStamp;
                entry = e.Raw;
                return true;
            }
        }

        entry = 0;
        return false;
    }

    public void Insert(byte context, int level, ulong dva, ulong entry)
    {
        if (_entries.Length == 0)
        {
            return;
        }

        var prefix = dva >> PageTableFormat.LevelShift(level);
        var victim = 0;
        var oldest = ulong.MaxValue;
        for (var i = 0; i < _entries.Length; i++)
        {
            ref var e = ref _entries[i];
            if (e.Valid && e.Context == context && e.Level == level && e.Prefix == prefix)
            {
                victim = i;
                break;
            }

            var age = e.Valid ? e.LastUse : 0;
            if (age < oldest)
            {
                oldest = age;
                victim = i;
            }
        }

        _entries[victim] = new Entry { Valid = true, Context = context, Level = level, Prefix = prefix, Raw = entry, LastUse = ++_useStamp };
    }

    /// <summary>Drops every entry of <paramref name="context"/> (every context when null) whose span overlaps the pages.</summary>
    public int Invalidate(int? context, ulong firstPage, ulong endPage)
    {
        var dropped = 0;
        for (var i = 0; i < _entries.Length; i++)
        {
            ref var e = ref _entries[i];
            if (!e.Valid || (context is { } c && e.Context != c))
            {
                continue;
            }

            var pagesShift = PageTableFormat.LevelShift(e.Level) - PageTableFormat.PageShift;
            var spanStart = e.Prefix << pagesShift;
            var spanEnd = (e.Prefix + 1) << pagesShift;
            if (spanStart < endPage && firstPage < spanEnd)
            {
                e = default;
                dropped++;
            }
        }

        return dropped;
    }

    public void Clear() => Array.Clear(_entries);

    /// <summary>Copies every valid entry, for the oracle's audit.</summary>
    public void Snapshot(List<WalkCacheEntryView> into)
    {
        foreach (var e in _entries)
        {
            if (e.Valid)
            {
                into.Add(new WalkCacheEntryView(e.Context, e.Level, e.Prefix << PageTableFormat.LevelShift(e.Level), e.Raw));
            }
        }
    }

    private struct Entry
    {
        public bool Valid;
        public byte Context;
        public int Level;
        public ulong Prefix;
        public ulong Raw;
        public ulong LastUse;
    }
}
