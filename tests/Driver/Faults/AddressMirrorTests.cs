using FpgaAccel.Driver.Faults;
using FpgaAccel.FirmwareInterface;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Faults;

/// <summary>The lock-free mirror: lookups while a writer builds tables and flips entries.</summary>
public class AddressMirrorTests
{
    [Test]
    public void LookupSeesWhatWasSetAndNothingElsewhere()
    {
        var mirror = new AddressMirror();
        var e = MirrorEntry.Create(42, MirrorFlags.Valid | MirrorFlags.Read | MirrorFlags.OnDemand);
        lock (mirror.Lock)
        {
            mirror.Set(0x7F12_3456_7000, e);
        }

        Assert.That(mirror.Lookup(0x7F12_3456_7ABC), Is.EqualTo(e), "any address in the page");
        Assert.That(mirror.Lookup(0x7F12_3456_8000).Valid, Is.False, "the next page");
        Assert.That(mirror.Lookup(ulong.MaxValue).Valid, Is.False, "beyond 48 bits");
        Assert.That(e.Region, Is.EqualTo(42u));
        Assert.That(e.Allows(write: false), Is.True);
        Assert.That(e.Allows(write: true), Is.False);
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public void ConcurrentReadersNeverSeeATornOrForeignEntry(int seed)
    {
        // Invariant under test: a reader sees, for each page, 0 or one of the two values the writer
        // alternates between for that page; never a mix of two writes, never another page's value.
        var mirror = new AddressMirror();
        const int pages = 2048;
        var random = new Random(seed);
        var bases = Enumerable.Range(0, pages).Select(_ => (ulong)random.NextInt64(1, 1L << 35) << PageTableFormat.PageShift).Distinct().ToArray();
        MirrorEntry A(int i) => MirrorEntry.Create((uint)i + 1, MirrorFlags.Valid | MirrorFlags.Read);
        MirrorEntry B(int i) => MirrorEntry.Create(0xFFFF_0000u | (uint)i, MirrorFlags.Valid | MirrorFlags.Read | MirrorFlags.Write | MirrorFlags.Present);
        var stop = false;
        var violations = 0L;
        var reads = 0L;
        var readers = Enumerable.Range(0, 2).Select(r => new Thread(() =>
        {
            var rnd = new Random(seed * 10 + r);
            while (!Volatile.Read(ref stop))
            {
                var i = rnd.Next(bases.Length);
                var raw = mirror.Lookup(bases[i] + (ulong)rnd.Next(4096)).Raw;
                if (raw != 0 && raw != A(i).Raw && raw != B(i).Raw)
                {
                    Interlocked.Increment(ref violations);
                }

                Interlocked.Increment(ref reads);
            }
        })).ToArray();
        foreach (var t in readers)
        {
            t.Start();
        }

        // The writer builds tables for new regions of the address space and flips entries, as
        // registration, faults and eviction do, under the writers' lock.
        for (var round = 0; round < 40; round++)
        {
            for (var i = 0; i < bases.Length; i++)
            {
                lock (mirror.Lock)
                {
                    mirror.Set(bases[i], round % 3 == 2 ? default : (round + i) % 2 == 0 ? A(i) : B(i));
                }
            }
        }

        Volatile.Write(ref stop, true);
        foreach (var t in readers)
        {
            t.Join();
        }

        Assert.That(Interlocked.Read(ref reads), Is.GreaterThan(1000), "the readers ran during the writes");
        Assert.That(violations, Is.Zero);
    }

    [Test]
    public void ReplaceOnlyWhenUnchanged()
    {
        var mirror = new AddressMirror();
        var a = MirrorEntry.Create(1, MirrorFlags.Valid | MirrorFlags.OnDemand);
        var b = new MirrorEntry(a.Raw | (ulong)MirrorFlags.Present);
        lock (mirror.Lock)
        {
            mirror.Set(0x1000, a);
            Assert.That(mirror.Replace(0x1000, a, b), Is.True);
            Assert.That(mirror.Replace(0x1000, a, default), Is.False, "the entry changed since it was read: no replace");
        }

        Assert.That(mirror.Lookup(0x1000), Is.EqualTo(b));
    }
}
