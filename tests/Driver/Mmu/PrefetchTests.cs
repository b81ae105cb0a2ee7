using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Mmu;

/// <summary>
/// Issue 15, <see cref="OnDemandRegion.Prefetch"/> (ibv_advise_mr's prefetch): a range mapped ahead of the DMA that
/// uses it, counted against the budget, refused with a typed error naming the value, the rule and the fix.
/// </summary>
public class PrefetchTests
{
    private const ulong Page = PageTableFormat.PageSize;
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(30);

    [Test]
    public async Task APrefetchedRangeIsCopiedWithoutAFault()
    {
        using var device = Open(budget: 64);
        device.StartFaultService();
        using var src = HostBuffer.Allocate(32 * Page);
        using var dst = HostBuffer.Allocate(32 * Page);
        new Random(9).NextBytes(src.Span);
        using var context = device.CreateContext();
        using var a = context.RegisterOnDemand(src, DmaAccess.DeviceRead);
        using var b = context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();

        Assert.That(a.Prefetch(4 * Page, 8 * Page), Is.EqualTo(8));
        Assert.That(b.Prefetch((4 * Page) + 100, 8 * Page), Is.EqualTo(9), "an unaligned range maps every page it touches");
        Assert.That(a.Prefetch(4 * Page, 8 * Page), Is.Zero, "present pages are not mapped twice");
        Assert.That(device.OnDemandStatistics.PrefetchedPages, Is.EqualTo(17));
        Assert.That(device.OnDemand.Pinned, Is.EqualTo(17), "prefetched pages count against the budget");

        var copy = await queue.CopyAsync(context, (ulong)src.Address + (4 * Page), (ulong)dst.Address + (4 * Page), 8 * Page).AsTask().WaitAsync(s_bound);
        Assert.That(copy.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(copy.Faults, Is.Zero);
        Assert.That(dst.Span.Slice(4 * 4096, 8 * 4096).SequenceEqual(src.Span.Slice(4 * 4096, 8 * 4096)), Is.True);
    }

    [Test]
    public void PrefetchingBeyondTheBudgetEvictsTheOldestPagesInBatches()
    {
        using var device = Open(budget: 16);
        using var buffer = HostBuffer.Allocate(64 * Page);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);

        Assert.That(region.Prefetch(0, 12 * Page), Is.EqualTo(12));
        Assert.That(region.Prefetch(32 * Page, 12 * Page), Is.EqualTo(12));
        var stats = device.OnDemandStatistics;
        Assert.That(stats.PresentPages, Is.LessThanOrEqualTo(16));
        Assert.That(stats.Evictions, Is.GreaterThanOrEqualTo(8));
        Assert.That(stats.EvictionFences, Is.LessThanOrEqualTo(2), "the room was made in batches, not a fence per page");
        for (var p = 32; p < 44; p++)
        {
            Assert.That(context.Mirror.Lookup((ulong)buffer.Address + ((ulong)p * Page)).Present, Is.True, $"page {p} of the latest prefetch");
        }

        Assert.That(device.Oracle!.Audit(), Is.Empty);
    }

    [TestCase(64UL * 4096, 1UL, "inside the region")]
    [TestCase(0UL, 0UL, "inside the region")]
    [TestCase(60UL * 4096, 8UL * 4096, "inside the region")]
    [TestCase(0UL, 17UL * 4096, "budget holds 16")]
    public void ARangeThatCannotBePrefetchedIsRefusedNamingTheRuleAndTheFix(ulong offset, ulong length, string rule)
    {
        using var device = Open(budget: 16);
        using var buffer = HostBuffer.Allocate(64 * Page);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);

        var ex = Assert.Throws<PrefetchRejectedException>(() => region.Prefetch(offset, length))!;
        Assert.That(ex.Message, Does.Contain($"offset {offset}").And.Contain($"+{length} bytes").And.Contain(rule));
        Assert.That(ex.Message, Does.Contain("Prefetch").And.Contain("at "), "the message says what to do");
        Assert.That(device.OnDemand.Pinned, Is.Zero, "nothing was mapped");
    }

    [Test]
    public void PrefetchingAnUnregisteredRegionIsATypedError()
    {
        using var device = Open(budget: 16);
        using var buffer = HostBuffer.Allocate(8 * Page);
        using var context = device.CreateContext();
        var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        region.Dispose();
        var ex = Assert.Throws<InvalidPinHandleException>(() => region.Prefetch(0, Page))!;
        Assert.That(ex.Message, Does.Contain("unregistered"));
    }

    private static FpgaDevice Open(int budget) =>
        FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = budget });
}
