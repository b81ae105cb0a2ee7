using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Mmu;

/// <summary>
/// Issue 15, fault-around (decision F1): a fault maps the absent pages of its region around it, inside a window aligned
/// to its size, within the budget, in one install; the faulting access is answered once, and the device's later
/// accesses to the neighbours hit without faulting.
/// </summary>
public class FaultAroundTests
{
    private const ulong Page = PageTableFormat.PageSize;
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(30);

    [Test]
    public async Task A16KiBCopyFaultsOncePerSideAndItsNeighboursHitWithoutFaulting()
    {
        using var device = Open(budget: 256);
        device.StartFaultService();
        using var src = HostBuffer.Allocate(2 << 20); // 2 MiB aligned, so the 64 KiB windows line up with the buffer
        using var dst = HostBuffer.Allocate(2 << 20);
        new Random(3).NextBytes(src.Span[..(64 * 1024)]);
        using var context = device.CreateContext();
        using var a = context.RegisterOnDemand(src, DmaAccess.DeviceRead);
        using var b = context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();
        Assert.That(a.FaultAroundPages, Is.EqualTo(16), "the default window is 16 pages (64 KiB), as the kernel's fault_around_bytes");

        var first = await Copy(queue, context, src, dst, 0);
        Assert.That(first.Faults, Is.EqualTo(2), "one fault for the source, one for the destination");
        Assert.That(context.PresentOnDemandPages, Is.EqualTo(32), "each fault mapped its whole 64 KiB window");
        Assert.That(device.OnDemandStatistics.FaultAroundPages, Is.EqualTo(30));

        for (var offset = 16 * 1024UL; offset < 64 * 1024; offset += 16 * 1024)
        {
            var next = await Copy(queue, context, src, dst, offset);
            Assert.That(next.Faults, Is.Zero, $"the page at +{offset} was mapped around the first fault");
        }

        Assert.That(dst.Span[..(64 * 1024)].SequenceEqual(src.Span[..(64 * 1024)]), Is.True);
        Assert.That((await Copy(queue, context, src, dst, 64 * 1024)).Faults, Is.EqualTo(2), "the next window faults again");
    }

    [Test]
    public async Task OnePageTurnsFaultAroundOffPerRegion()
    {
        using var device = Open(budget: 256);
        device.StartFaultService();
        using var src = HostBuffer.Allocate(2 << 20);
        using var dst = HostBuffer.Allocate(2 << 20);
        using var context = device.CreateContext();
        using var a = context.RegisterOnDemand(src, DmaAccess.DeviceRead);
        using var b = context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
        a.FaultAroundPages = 1;
        using var queue = device.OpenQueue();

        var copy = await Copy(queue, context, src, dst, 0);
        Assert.That(copy.Faults, Is.EqualTo(4 + 1), "four source faults, one destination fault (its region still maps around)");
        Assert.That(context.PresentOnDemandPages, Is.EqualTo(4 + 16));
    }

    [Test]
    public void TheWindowIsAlignedToItsSizeAndStaysInsideTheRegion()
    {
        using var device = Open(budget: 256);
        using var buffer = HostBuffer.Allocate(2 << 20);
        using var context = device.CreateContext();

        // Region [page 3, page 20): a fault at page 5 maps its window [0, 16) cut to the region: pages 3..15.
        using var region = context.RegisterOnDemand(buffer.Address + (nint)(3 * Page), 17 * Page, DmaAccess.ReadWrite);
        Assert.That(Fault(context, buffer, 5), Is.EqualTo(FaultOutcome.Resolved));
        Assert.That(context.PresentOnDemandPages, Is.EqualTo(13));
        for (var p = 0; p < 20; p++)
        {
            var present = context.Mirror.Lookup((ulong)buffer.Address + ((ulong)p * Page)).Present;
            Assert.That(present, Is.EqualTo(p is >= 3 and < 16), $"page {p}");
        }

        // Page 18: window [16, 32) cut to the region: pages 16..19; nothing outside the region is touched.
        Assert.That(Fault(context, buffer, 18), Is.EqualTo(FaultOutcome.Resolved));
        Assert.That(context.PresentOnDemandPages, Is.EqualTo(17));
        Assert.That(context.Mirror.Lookup((ulong)buffer.Address + (20 * Page)).Valid, Is.False);
        Assert.That(context.Translation((ulong)buffer.Address + (19 * Page), out _).Valid, Is.True, "one page-table update wrote the whole run");
    }

    [Test]
    public void FaultAroundTakesOnlyTheRoomTheBudgetHasAndNeverEvictsForIt()
    {
        using var device = Open(budget: 6);
        using var buffer = HostBuffer.Allocate(2 << 20);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);

        Assert.That(Fault(context, buffer, 0), Is.EqualTo(FaultOutcome.Resolved));
        Assert.That(context.PresentOnDemandPages, Is.EqualTo(6), "the window had 16 pages, the budget room for 6");
        Assert.That(device.OnDemand.Evictions, Is.Zero, "fault-around never evicts");

        // The next window's fault needs its own page: the budget is full, so it reclaims (a batch), then maps.
        Assert.That(Fault(context, buffer, 16), Is.EqualTo(FaultOutcome.Resolved));
        Assert.That(device.OnDemand.Pinned, Is.LessThanOrEqualTo(6));
        Assert.That(context.Mirror.Lookup((ulong)buffer.Address + (16 * Page)).Present, Is.True);
        Assert.That(device.OnDemandOverBudget, Is.Zero);
    }

    [Test]
    public void ANeighbourTheIommuRefusesDoesNotFailTheFault()
    {
        var backend = new RefusingBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 64 });
        using var buffer = HostBuffer.Allocate(2 << 20);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        backend.RefuseHost = (ulong)buffer.Address + (7 * Page);

        Assert.That(Fault(context, buffer, 2), Is.EqualTo(FaultOutcome.Resolved));
        Assert.That(context.PresentOnDemandPages, Is.EqualTo(1), "the run was refused, so the faulting page was mapped alone");
        Assert.That(device.OnDemand.Pinned, Is.EqualTo(1), "the neighbours' places were given back");
    }

    [TestCase(0)]
    [TestCase(3)]
    [TestCase(128)]
    public void AWindowThatIsNotAPowerOfTwoUpTo64IsRefused(int pages)
    {
        using var device = Open(budget: 64);
        using var buffer = HostBuffer.Allocate(16 * Page);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        var ex = Assert.Throws<InvalidDeviceOptionException>(() => region.FaultAroundPages = pages)!;
        Assert.That(ex.Message, Does.Contain($"FaultAroundPages = {pages}").And.Contain("power of two").And.Contain("Prefetch"));
        Assert.That(region.FaultAroundPages, Is.EqualTo(16), "a refused value changes nothing");

        var open = Assert.Throws<InvalidDeviceOptionException>(() =>
            FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { FaultAroundPages = pages }))!;
        Assert.That(open.Message, Does.Contain($"FaultAroundPages = {pages}"));
    }

    private static FpgaDevice Open(int budget) =>
        FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = budget });

    private static FaultOutcome Fault(DeviceContext context, HostBuffer buffer, int page) =>
        context.ServiceFault((ulong)buffer.Address + ((ulong)page * Page), write: true, queue: 0, out _, out _);

    private static Task<CommandResult> Copy(CommandQueue queue, DeviceContext context, HostBuffer src, HostBuffer dst, ulong offset) =>
        queue.CopyAsync(context, (ulong)src.Address + offset, (ulong)dst.Address + offset, 16 * 1024).AsTask().WaitAsync(s_bound);

    /// <summary>Refuses the IOMMU map of any range holding one host page, as the kernel refuses a page it cannot pin.</summary>
    private sealed class RefusingBackend(IDeviceBackend inner) : DelegatingBackend(inner)
    {
        public ulong? RefuseHost { get; set; }

        public override void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
        {
            if (RefuseHost is { } refuse && refuse >= (ulong)hostAddress && refuse < (ulong)hostAddress + length)
            {
                throw new DmaMappingException(iova, length, "EFAULT", "refused for the test.");
            }

            base.MapDma(iova, hostAddress, length, access);
        }
    }
}
