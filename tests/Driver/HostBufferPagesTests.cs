using System.Globalization;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver;

/// <summary>
/// Issue 15, item 5: the pages under DMA memory (decision F9). A buffer of 2 MiB or more comes from the reserved
/// hugetlbfs pool when it has enough pages, else transparent huge pages, else 4 KiB; a caller may insist on one kind;
/// <see cref="HostBuffer.PageKind"/> says which, and the kernel's own view (smaps VmFlags: ht = hugetlb, hg =
/// MADV_HUGEPAGE, nh = MADV_NOHUGEPAGE) agrees. The pool is reserved here, as root, only for the tests that need it,
/// and put back as it was.
/// </summary>
[NonParallelizable] // the hugetlbfs pool is process-wide state these tests change
public class HostBufferPagesTests
{
    private const string NrHugePages = "/proc/sys/vm/nr_hugepages";
    private const ulong TwoMiB = 2UL << 20;

    private static bool TransparentHugePagesOn =>
        File.Exists("/sys/kernel/mm/transparent_hugepage/enabled") && !File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Contains("[never]", StringComparison.Ordinal);

    [Test]
    public void SmallIsFourKibPagesEvenForALargeBuffer()
    {
        using var buffer = HostBuffer.Allocate(4 * TwoMiB, HostBufferPages.Small);
        Assert.That(buffer.PageKind, Is.EqualTo(HostBufferPageKind.Small));
        Assert.That((ulong)buffer.Address % TwoMiB, Is.Zero, "still 2 MiB aligned for the device's 2 MiB leaves");
        if (File.Exists("/sys/kernel/mm/transparent_hugepage/enabled"))
        {
            Assert.That(VmFlags(buffer.Address), Does.Contain(" nh "), "advised MADV_NOHUGEPAGE");
        }
    }

    [Test]
    public void ABufferUnderTwoMibIsSmallUnderAuto()
    {
        using var buffer = HostBuffer.Allocate(64 * 1024);
        Assert.That(buffer.PageKind, Is.EqualTo(HostBufferPageKind.Small));
        Assert.That(VmFlags(buffer.Address), Does.Not.Contain(" hg ").And.Not.Contain(" ht "));
    }

    [Test]
    public void TransparentHugeIsAdvisedWhenTheKernelHasThemOn()
    {
        using var buffer = HostBuffer.Allocate(TwoMiB, HostBufferPages.TransparentHuge);
        if (!TransparentHugePagesOn)
        {
            Assert.That(buffer.PageKind, Is.EqualTo(HostBufferPageKind.Small), "transparent huge pages are off: 4 KiB");
            return;
        }

        Assert.That(buffer.PageKind, Is.EqualTo(HostBufferPageKind.TransparentHuge));
        Assert.That(VmFlags(buffer.Address), Does.Contain(" hg "), "advised MADV_HUGEPAGE");
        buffer.Span.Fill(0x5A);
        Assert.That(buffer.Span[^1], Is.EqualTo(0x5A));
    }

    [Test]
    public void AutoFallsBackToTransparentHugePagesWhenThePoolIsEmpty()
    {
        WithPool(0, () =>
        {
            using var buffer = HostBuffer.Allocate(3 * TwoMiB);
            Assert.That(buffer.PageKind, Is.EqualTo(TransparentHugePagesOn ? HostBufferPageKind.TransparentHuge : HostBufferPageKind.Small));
            Assert.That(VmFlags(buffer.Address), Does.Not.Contain(" ht "));
        });
    }

    [Test]
    public void HugeFromAnEmptyPoolIsATypedErrorWithTheFixAndLeaksNoMapping()
    {
        WithPool(0, () =>
        {
            var before = File.ReadAllLines("/proc/self/maps").Length;
            var ex = Assert.Throws<HugePagesUnavailableException>(() => HostBuffer.Allocate(3 * TwoMiB + 1, HostBufferPages.Huge))!;
            Assert.That(ex.Needed, Is.EqualTo(4), "3 MiB and a byte rounds up to four 2 MiB pages");
            Assert.That(ex.Message, Does.Contain("6291457 bytes").And.Contain("needs 4 free pages").And.Contain("/proc/sys/vm/nr_hugepages").And.Contain("HostBufferPages.Auto"));
            Assert.That(File.ReadAllLines("/proc/self/maps").Length, Is.LessThanOrEqualTo(before + 2), "no mapping left behind (the runtime may map a little meanwhile)");
        });
    }

    [Test]
    public void AnUndefinedPageChoiceIsRefused()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => HostBuffer.Allocate(4096, (HostBufferPages)9))!;
        Assert.That(ex.Message, Does.Contain("HostBufferPages 9").And.Contain("Auto, Huge, TransparentHuge or Small"));
    }

    [Test]
    public void WithReservedPagesAutoAndHugeComeFromThePoolAndPinAsOneMapCallPerHugePage()
    {
        WithPool(3, () =>
        {
            using var auto = HostBuffer.Allocate(TwoMiB);
            Assert.That(auto.PageKind, Is.EqualTo(HostBufferPageKind.Huge));
            Assert.That(VmFlags(auto.Address), Does.Contain(" ht "), "a hugetlb mapping");
            Assert.That((ulong)auto.Address % TwoMiB, Is.Zero);

            using var huge = HostBuffer.Allocate(TwoMiB + 4096, HostBufferPages.Huge);
            Assert.That(huge.PageKind, Is.EqualTo(HostBufferPageKind.Huge));
            Assert.That(HostBuffer.FreeHugePages(), Is.Zero, "one page for the first buffer, two for the second");

            // A pinned 2 MiB huge page is one IOMMU map call (issue 15: one DMA_MAP, not 512); the second buffer's two
            // pages are two.
            var backend = new CountingBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
            using (var device = FpgaDevice.Open(backend, new FpgaDeviceOptions()))
            {
                using var context = device.CreateContext(new ContextOptions { NoFault = true });
                using (context.Pin(auto, DmaAccess.ReadWrite))
                {
                    Assert.That(backend.Over(auto.Address, TwoMiB), Is.EqualTo(new[] { (auto.Address, TwoMiB) }), "one call for the whole huge page");
                }

                using (context.Pin(huge, DmaAccess.DeviceRead))
                {
                    Assert.That(backend.Over(huge.Address, 2 * TwoMiB).Select(c => c.Length), Is.EqualTo(new[] { TwoMiB, 4096UL }), "a 2 MiB page and the first 4 KiB of the next");
                }
            }

            huge.Span.Fill(0xA5);
            Assert.That(huge.Span[(int)TwoMiB], Is.EqualTo(0xA5), "the memory is usable across its huge pages");
        });
    }

    // Sets the default pool to `pages` (as root) for the body and puts back what was there. Without root the pool cannot
    // be changed: a test that needs pages is skipped, one that needs none runs only when the pool is already empty.
    private static void WithPool(int pages, Action body)
    {
        var original = File.Exists(NrHugePages) ? int.Parse(File.ReadAllText(NrHugePages).Trim(), CultureInfo.InvariantCulture) : -1;
        if (original < 0)
        {
            Assert.Ignore("this kernel has no hugetlbfs pool (/proc/sys/vm/nr_hugepages)");
        }

        if (original != pages || HostBuffer.FreeHugePages() != pages)
        {
            try
            {
                File.WriteAllText(NrHugePages, pages.ToString(CultureInfo.InvariantCulture));
            }
            catch (UnauthorizedAccessException)
            {
                Assert.Ignore($"the hugetlbfs pool holds {original} pages and only root can make it {pages}");
            }
        }

        try
        {
            if (HostBuffer.FreeHugePages() < pages)
            {
                Assert.Ignore($"the kernel found only {HostBuffer.FreeHugePages()} free 2 MiB pages for a pool of {pages} (memory too fragmented)");
            }

            body();
        }
        finally
        {
            if (original != pages)
            {
                File.WriteAllText(NrHugePages, original.ToString(CultureInfo.InvariantCulture));
            }
        }
    }

    // proc(5): the VmFlags line of the smaps entry that holds the address, with a space either side of each flag.
    private static string VmFlags(nint address)
    {
        var inRange = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            var dash = line.IndexOf('-', StringComparison.Ordinal);
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            if (dash > 0 && space > dash && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var start)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var end))
            {
                inRange = (ulong)address >= start && (ulong)address < end;
            }
            else if (inRange && line.StartsWith("VmFlags:", StringComparison.Ordinal))
            {
                return line["VmFlags:".Length..] + " ";
            }
        }

        throw new InvalidOperationException($"0x{address:X} is in no mapping of /proc/self/smaps");
    }

    private sealed class CountingBackend(IDeviceBackend inner) : DelegatingBackend(inner)
    {
        public readonly List<(nint Host, ulong Length)> Calls = [];

        // Map calls over [start, start + length): the buffer's own, not the page tables' the pin may add.
        public (nint Host, ulong Length)[] Over(nint start, ulong length)
        {
            lock (Calls)
            {
                return Calls.Where(c => c.Host >= start && (ulong)(c.Host - start) < length).ToArray();
            }
        }

        public override void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
        {
            base.MapDma(iova, hostAddress, length, access);
            lock (Calls)
            {
                Calls.Add((hostAddress, length));
            }
        }
    }
}
