using FpgaAccel.HwSim;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>
/// The device TLB's range invalidation and the oracle's retire mark: the narrow scan (only the sets a short range's
/// pages map to, when no 2 MiB leaf is cached) must drop and mark exactly what a scan of every entry would.
/// </summary>
public class TlbTests
{
    private const ulong PagesPerHugePage = 512;

    [TestCase(1, false)]
    [TestCase(2, false)]
    [TestCase(3, true)]
    [TestCase(4, true)]
    public void RangeInvalidationDropsExactlyTheCoveredEntries(int seed, bool withHugeLeaves)
    {
        var random = new Random(seed);
        for (var round = 0; round < 200; round++)
        {
            var tlb = Fill(random, withHugeLeaves, out _);
            var before = Snapshot(tlb);
            var (context, first, end) = RandomRange(random);
            var dropped = tlb.Invalidate(context, first, end);

            var expected = before.Where(e => !Covered(e, context, first, end)).ToHashSet();
            var after = Snapshot(tlb);
            Assert.That(after.Count == expected.Count && expected.SetEquals(after), Is.True,
                $"round {round}: ctx {context}, pages [{first:X}, {end:X}): {after.Count} entries left, {expected.Count} expected");
            Assert.That(dropped, Is.EqualTo(before.Count - expected.Count));
        }
    }

    [TestCase(5, false)]
    [TestCase(6, true)]
    public void RetireMarksExactlyTheCoveredEntriesFilledBeforeTheEpoch(int seed, bool withHugeLeaves)
    {
        var random = new Random(seed);
        for (var round = 0; round < 200; round++)
        {
            var tlb = Fill(random, withHugeLeaves, out var maxEpoch);
            var before = Snapshot(tlb);
            var (context, first, end) = RandomRange(random);
            var epoch = random.NextInt64(1, maxEpoch + 2);
            var marked = tlb.MarkRetired(context, first, end, epoch);

            var expected = before.Where(e => Covered(e, context, first, end) && e.Translation.FillEpoch < epoch).ToHashSet();
            Assert.That(marked, Is.EqualTo(expected.Count), $"round {round}: ctx {context}, pages [{first:X}, {end:X}), epoch {epoch}");
            foreach (var e in before)
            {
                Assert.That(tlb.TryLookup(e.Context, e.Page, out var t), Is.True);
                Assert.That(t.Retired, Is.EqualTo(expected.Contains(e)), $"round {round}: entry ctx {e.Context} page {e.Page:X} huge {e.Huge}");
            }
        }
    }

    [Test]
    public void AHugeLeafOutsideTheRangeButCoveringItIsDropped()
    {
        // The 2 MiB leaf is held under the 4 KiB page that filled it (page 0x205): an invalidation of page 0x3F0 alone
        // lies in its span though not in its set; it must go all the same.
        var tlb = new Tlb(8, 7);
        tlb.Insert(1, 0x205, new TlbTranslation(0x8000_0000, 0x8000_0000, 1, 1), huge: true);
        tlb.Insert(1, 0x3F0, new TlbTranslation(0x9000_0000, 0x9000_0000, 1, 1), huge: false);
        Assert.That(tlb.Invalidate(1, 0x3F0, 0x3F1), Is.EqualTo(2));
        Assert.That(tlb.Count, Is.Zero);

        // With it gone, a 4 KiB-only TLB takes the narrow path and still finds its entries.
        tlb.Insert(1, 0x3F0, new TlbTranslation(0x9000_0000, 0x9000_0000, 1, 1), huge: false);
        tlb.Insert(2, 0x3F0, new TlbTranslation(0xA000_0000, 0xA000_0000, 1, 1), huge: false);
        Assert.That(tlb.Invalidate(1, 0x3F0, 0x3F1), Is.EqualTo(1));
        Assert.That(tlb.TryLookup(2, 0x3F0, out _), Is.True, "another context's entry for the same page stays");
    }

    private static Tlb Fill(Random random, bool withHugeLeaves, out long maxEpoch)
    {
        var tlb = new Tlb(8, 7); // 1024 entries, CAPS' default geometry
        maxEpoch = 0;
        var inserts = random.Next(50, 1500);
        for (var i = 0; i < inserts; i++)
        {
            var context = (byte)random.Next(0, 4);
            var huge = withHugeLeaves && random.Next(0, 20) == 0;
            var page = (ulong)random.Next(0, 4096);
            var epoch = random.NextInt64(1, 100);
            maxEpoch = Math.Max(maxEpoch, epoch);
            tlb.Insert(context, page, new TlbTranslation((ulong)i << 12, (ulong)i << 12, epoch, i + 1), huge);
        }

        return tlb;
    }

    private static (int? Context, ulong First, ulong End) RandomRange(Random random)
    {
        int? context = random.Next(0, 10) == 0 ? null : random.Next(0, 4);
        var first = (ulong)random.Next(0, 4096);
        var length = random.Next(0, 4) switch
        {
            0 => 1UL,
            1 => (ulong)random.Next(2, 65),
            2 => (ulong)random.Next(65, 200),
            _ => PagesPerHugePage,
        };
        return (context, first, first + length);
    }

    private static List<TlbEntryView> Snapshot(Tlb tlb)
    {
        var list = new List<TlbEntryView>();
        tlb.Snapshot(list);
        return list;
    }

    private static bool Covered(TlbEntryView e, int? context, ulong first, ulong end)
    {
        var spanStart = e.Huge ? e.Page & ~(PagesPerHugePage - 1) : e.Page;
        var spanEnd = spanStart + (e.Huge ? PagesPerHugePage : 1);
        return (context is null || e.Context == context) && spanStart < end && first < spanEnd;
    }
}
