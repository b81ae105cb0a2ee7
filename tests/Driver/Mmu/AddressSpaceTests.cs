using System.Collections.Concurrent;
using System.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Dma;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Mmu;

/// <summary>
/// Issue 15, item 4: one address space mirrored by two devices (decisions F20, F21). A pin or region registered once is
/// translated by both; a removal clears both, issues both TLB invalidations before it waits on either fence, and leaves
/// no device a stale translation (the oracles count none, the audits are clean, and a DMA after it faults on both).
/// </summary>
public class AddressSpaceTests
{
    private const ulong Page = PageTableFormat.PageSize;
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(30);

    [Test]
    public async Task APinRegisteredOnceIsTranslatedByBothDevicesAndItsRemovalLeavesNeitherAStaleTranslation()
    {
        using var a = OpenModel();
        using var b = OpenModel();
        using var space = new AddressSpace();
        var onA = space.Attach(a, new ContextOptions { NoFault = true });
        var onB = space.Attach(b, new ContextOptions { NoFault = true });
        using var src = HostBuffer.Allocate(16 * Page);
        using var dst = HostBuffer.Allocate(32 * Page);
        Fill(src.Span, 7);
        var srcPin = space.Pin(src, DmaAccess.DeviceRead);
        var dstPin = space.Pin(dst, DmaAccess.ReadWrite);
        Assert.That(srcPin.On(onA)!.Context, Is.SameAs(onA.Context));
        Assert.That(srcPin.On(onB)!.Context, Is.SameAs(onB.Context));
        using var qa = a.OpenQueue();
        using var qb = b.OpenQueue();

        // Both devices DMA through the one pin, at the same DVA (the process's address).
        var ra = await qa.CopyAsync(onA.Context, srcPin.Dva, dstPin.Dva, 16 * Page).AsTask().WaitAsync(s_bound);
        var rb = await qb.CopyAsync(onB.Context, srcPin.Dva, dstPin.Dva + (16 * Page), 16 * Page).AsTask().WaitAsync(s_bound);
        Assert.That((ra.Status, rb.Status), Is.EqualTo((CompletionStatus.Ok, CompletionStatus.Ok)));
        Assert.That(dst.Span[..(int)(16 * Page)].SequenceEqual(src.Span), "device A copied through the shared pin");
        Assert.That(dst.Span[(int)(16 * Page)..].SequenceEqual(src.Span), "device B copied through the shared pin");

        // Both TLBs now cache the pin's translations; the removal must drop them on both devices.
        var iommuA = a.IommuMappedPages;
        var iommuB = b.IommuMappedPages;
        space.Unpin(srcPin);
        Assert.That(srcPin.IsPinned, Is.False);
        Assert.That(a.IommuMappedPages, Is.LessThan(iommuA), "device A's IOMMU no longer maps the pin");
        Assert.That(b.IommuMappedPages, Is.LessThan(iommuB), "device B's IOMMU no longer maps the pin");

        ra = await qa.CopyAsync(onA.Context, srcPin.Dva, dstPin.Dva, Page).AsTask().WaitAsync(s_bound);
        rb = await qb.CopyAsync(onB.Context, srcPin.Dva, dstPin.Dva, Page).AsTask().WaitAsync(s_bound);
        Assert.That(ra.Status, Is.EqualTo(CompletionStatus.Fault), "device A walked the cleared table: no stale translation");
        Assert.That(rb.Status, Is.EqualTo(CompletionStatus.Fault), "device B walked the cleared table: no stale translation");
        AssertClean(a, "A");
        AssertClean(b, "B");
        Assert.That((space.Removals, space.UnfencedRemovals), Is.EqualTo((1, 0)));
    }

    [Test]
    public void ARemovalIssuesEveryDevicesInvalidationBeforeItWaitsOnAnyFence()
    {
        var log = new ConcurrentQueue<string>();
        using var a = FpgaDevice.Open(new RecordingBackend(new ModelBackend(new ModelOptions()), "A", log), new FpgaDeviceOptions());
        using var b = FpgaDevice.Open(new RecordingBackend(new ModelBackend(new ModelOptions()), "B", log), new FpgaDeviceOptions());
        using var space = new AddressSpace();
        space.Attach(a);
        space.Attach(b);
        using var buffer = HostBuffer.Allocate(8 * Page);
        var pin = space.Pin(buffer, DmaAccess.ReadWrite);

        log.Clear();
        RecordingBackend.Recording = true;
        try
        {
            space.Unpin(pin);
        }
        finally
        {
            RecordingBackend.Recording = false;
        }

        var events = log.ToList();
        TestContext.Out.WriteLine(string.Join(", ", events));
        var firstWait = events.FindIndex(e => e.StartsWith("INV_DONE", StringComparison.Ordinal));
        Assert.That(events, Does.Contain("INV_CMD A").And.Contain("INV_CMD B"), "both devices invalidated");
        Assert.That(firstWait, Is.GreaterThan(events.IndexOf("INV_CMD A")).And.GreaterThan(events.IndexOf("INV_CMD B")),
            "every device's TLB_INV is issued before the first fence is read (HMM's batching)");
        Assert.That(events.Count(e => e.StartsWith("INV_CMD", StringComparison.Ordinal)), Is.EqualTo(2), "one invalidation per device");
    }

    [Test]
    public async Task AnOnDemandRegionFaultsOnBothDevicesAndItsUnregistrationInvalidatesBoth()
    {
        using var a = OpenModel();
        using var b = OpenModel();
        a.StartFaultService();
        b.StartFaultService();
        using var space = new AddressSpace();
        var onA = space.Attach(a);
        var onB = space.Attach(b);
        using var src = HostBuffer.Allocate(16 * Page);
        using var dst = HostBuffer.Allocate(16 * Page);
        Fill(src.Span, 3);
        using var srcPin = space.Pin(src, DmaAccess.DeviceRead);
        var region = space.RegisterOnDemand(dst, DmaAccess.ReadWrite);
        region.FaultAroundPages = 1;
        using var qa = a.OpenQueue();
        using var qb = b.OpenQueue();

        var ra = await qa.CopyAsync(onA.Context, srcPin.Dva, (ulong)dst.Address, 8 * Page).AsTask().WaitAsync(s_bound);
        var rb = await qb.CopyAsync(onB.Context, srcPin.Dva + (8 * Page), (ulong)dst.Address + (8 * Page), 8 * Page).AsTask().WaitAsync(s_bound);
        Assert.That((ra.Status, rb.Status), Is.EqualTo((CompletionStatus.Ok, CompletionStatus.Ok)));
        Assert.That((ra.Faults, rb.Faults), Is.EqualTo(((ushort)8, (ushort)8)), "each device faulted its own pages in (fault-around off)");
        Assert.That(dst.Span.SequenceEqual(src.Span), "both halves arrived");
        Assert.That(region.On(onA)!.Context.PresentOnDemandPages, Is.EqualTo(8));
        Assert.That(region.On(onB)!.Context.PresentOnDemandPages, Is.EqualTo(8));

        space.Unregister(region);
        Assert.That(onA.Context.PresentOnDemandPages + onB.Context.PresentOnDemandPages, Is.Zero);
        ra = await qa.CopyAsync(onA.Context, srcPin.Dva, (ulong)dst.Address, Page).AsTask().WaitAsync(s_bound);
        rb = await qb.CopyAsync(onB.Context, srcPin.Dva, (ulong)dst.Address + (8 * Page), Page).AsTask().WaitAsync(s_bound);
        Assert.That((ra.Status, rb.Status), Is.EqualTo((CompletionStatus.Fault, CompletionStatus.Fault)), "no device reaches the unregistered region");
        AssertClean(a, "A");
        AssertClean(b, "B");
    }

    [Test]
    public void APinIsChargedOnceAgainstTheLockedMemoryLimitHoweverManyDevicesMapIt()
    {
        using var a = OpenModel();
        using var b = OpenModel();
        using var space = new AddressSpace();
        space.Attach(a);
        space.Attach(b);
        using var buffer = HostBuffer.Allocate(1 << 20);
        var (processBefore, aBefore, bBefore) = (ProcessPinLedger.Process.PinnedBytes, a.PinnedBytes, b.PinnedBytes);
        ulong charged;
        using (space.Pin(buffer, DmaAccess.ReadWrite))
        {
            var aMapped = a.PinnedBytes - aBefore;
            var bMapped = b.PinnedBytes - bBefore;
            charged = ProcessPinLedger.Process.PinnedBytes - processBefore;
            // Each device maps the megabyte and its own page-table pages for it in its own IOMMU.
            Assert.That(aMapped, Is.GreaterThanOrEqualTo(1UL << 20).And.LessThan((1UL << 20) + (16 * Page)));
            Assert.That(bMapped, Is.GreaterThanOrEqualTo(1UL << 20).And.LessThan((1UL << 20) + (16 * Page)));
            Assert.That(charged, Is.EqualTo(aMapped + bMapped - (1UL << 20)), "the megabyte both devices map is charged once (F21); each device's tables once each");
        }

        // The page-table pages stay until the contexts go (C1); the megabyte's one charge went back with the last device's unmap.
        Assert.That(ProcessPinLedger.Process.PinnedBytes, Is.EqualTo(processBefore + charged - (1UL << 20)));
    }

    [Test]
    public void OnePinOfTwoContainersIsChargedOncePerContainerAsType1ChargesIt()
    {
        // A backend that, like the board, opens one VFIO container per device: type1 pins and charges in each (F21).
        using var a = FpgaDevice.Open(new PerContainerBackend(new ModelBackend(new ModelOptions())), new FpgaDeviceOptions());
        using var b = FpgaDevice.Open(new PerContainerBackend(new ModelBackend(new ModelOptions())), new FpgaDeviceOptions());
        using var space = new AddressSpace();
        space.Attach(a);
        space.Attach(b);
        using var buffer = HostBuffer.Allocate(1 << 20);
        var (before, aBefore, bBefore) = (ProcessPinLedger.Process.PinnedBytes, a.PinnedBytes, b.PinnedBytes);
        ulong mapped;
        using (space.Pin(buffer, DmaAccess.ReadWrite))
        {
            mapped = a.PinnedBytes - aBefore + (b.PinnedBytes - bBefore);
            Assert.That(mapped, Is.GreaterThanOrEqualTo(2UL << 20));
            Assert.That(ProcessPinLedger.Process.PinnedBytes - before, Is.EqualTo(mapped), "every device's mapping charged, the megabyte twice");
        }

        Assert.That(ProcessPinLedger.Process.PinnedBytes, Is.EqualTo(before + mapped - (2UL << 20)), "both charges of the megabyte went back");
    }

    [TestCase(false, TestName = "AHungSecondDeviceDoesNotWedgeARemovalOnTheFirst")]
    [TestCase(true, TestName = "ALostSecondDeviceDoesNotWedgeARemovalOnTheFirst")]
    public async Task AFailedSecondDeviceDoesNotWedgeARemovalOnTheFirst(bool lost)
    {
        using var a = OpenModel();
        using var b = OpenModel(TimeSpan.FromMilliseconds(300));
        using var space = new AddressSpace();
        var onA = space.Attach(a, new ContextOptions { NoFault = true });
        var onB = space.Attach(b, new ContextOptions { NoFault = true });
        using var src = HostBuffer.Allocate(4 * Page);
        using var dst = HostBuffer.Allocate(4 * Page);
        var srcPin = space.Pin(src, DmaAccess.DeviceRead);
        using var dstPin = space.Pin(dst, DmaAccess.ReadWrite);
        using var qa = a.OpenQueue();
        Assert.That((await qa.CopyAsync(onA.Context, srcPin.Dva, dstPin.Dva, 4 * Page).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        var iommuA = a.IommuMappedPages;
        if (lost)
        {
            b.FaultInjection!.RemoveFromBus();
        }
        else
        {
            b.FaultInjection!.StickInvalidations();
        }

        var clock = Stopwatch.StartNew();
        var unpin = Task.Run(() => space.Unpin(srcPin));
        Assert.That(await Task.WhenAny(unpin, Task.Delay(s_bound)), Is.SameAs(unpin), "the removal returned (bounded by B's DeviceTimeout)");
        await unpin;
        TestContext.Out.WriteLine($"removal with B {(lost ? "lost" : "hung")}: {clock.Elapsed.TotalMilliseconds:0.0} ms; B {b.State}, {b.PagesAwaitingFence} pages awaiting a fence");

        Assert.That(space.UnfencedRemovals, Is.EqualTo(1), "B's part of the removal could not be fenced");
        Assert.That(a.IommuMappedPages, Is.LessThan(iommuA), "A's pages were unpinned after A's own fence");
        Assert.That(a.PagesAwaitingFence, Is.Zero);
        if (!lost)
        {
            Assert.That(b.PagesAwaitingFence, Is.EqualTo(4), "B's pages stay mapped until B is known gone or reset (R14)");
        }

        Assert.That((await qa.CopyAsync(onA.Context, srcPin.Dva, dstPin.Dva, Page).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Fault));
        AssertClean(a, "A");
        Assert.That(onB.Context.IsDisposed, Is.False);
    }

    [Test]
    public void ADeviceAttachedLaterMirrorsWhatIsRegisteredAndADetachedOneKeepsNothing()
    {
        using var a = OpenModel();
        using var b = OpenModel();
        using var space = new AddressSpace();
        space.Attach(a);
        using var buffer = HostBuffer.Allocate(4 * Page);
        using var pin = space.Pin(buffer, DmaAccess.ReadWrite);
        var mappedBefore = b.IommuMappedPages;
        var onB = space.Attach(b);
        Assert.That(pin.On(onB), Is.Not.Null);
        Assert.That(onB.Context.Translation(pin.Dva, out _).Valid, Is.True, "the later device translates the pin");
        Assert.That(b.IommuMappedPages, Is.GreaterThan(mappedBefore));

        var ex = Assert.Throws<InvalidDeviceOptionException>(() => new AddressSpace().Attach(b));
        Assert.That(ex!.Message, Does.Contain("another address space").And.Contain("detach"));

        onB.Dispose();
        Assert.That(onB.IsAttached, Is.False);
        Assert.That(pin.On(onB), Is.Null);
        Assert.That(space.Attachments, Has.Count.EqualTo(1));
        Assert.That(b.IommuMappedPages, Is.EqualTo(mappedBefore), "detaching released B's mappings of the pin and its table");
        using var other = new AddressSpace();
        Assert.That(other.Attach(b).IsAttached, Is.True, "a detached device may attach elsewhere");
    }

    [Test]
    [Explicit("timing: a removal's latency with two devices against one (issue 15 target: at most 1.3x); prints the ratio")]
    public void RemovalLatencyWithTwoDevicesAgainstOne()
    {
        var devices = Enumerable.Range(0, 3).Select(_ => OpenModel()).ToList();
        try
        {
            using var one = new AddressSpace();
            one.Attach(devices[0]);
            using var two = new AddressSpace();
            two.Attach(devices[1]);
            two.Attach(devices[2]);
            using var buffer = HostBuffer.Allocate(16 * Page);
            double Median(AddressSpace space)
            {
                var times = new List<double>();
                for (var i = 0; i < 3000; i++)
                {
                    var pin = space.Pin(buffer, DmaAccess.ReadWrite);
                    var start = Stopwatch.GetTimestamp();
                    space.Unpin(pin);
                    times.Add(Stopwatch.GetElapsedTime(start).TotalMicroseconds);
                }

                times.Sort();
                return times[times.Count / 2];
            }

            Median(one);
            Median(two);
            var (m1, m2) = (Median(one), Median(two));
            TestContext.Out.WriteLine($"removal p50: one device {m1:0.0} us, two devices {m2:0.0} us, ratio {m2 / m1:0.00}");
        }
        finally
        {
            devices.ForEach(d => d.Dispose());
        }
    }

    private static FpgaDevice OpenModel(TimeSpan? deviceTimeout = null) =>
        FpgaDevice.Open(new ModelBackend(new ModelOptions()), new FpgaDeviceOptions { DeviceTimeout = deviceTimeout ?? TimeSpan.FromSeconds(5) });

    private static void Fill(Span<byte> bytes, int seed)
    {
        for (var i = 0; i < bytes.Length; i++)
        {
            bytes[i] = (byte)((i * 31) + seed);
        }
    }

    private static void AssertClean(FpgaDevice device, string name)
    {
        var report = device.Oracle!.Read();
        Assert.That(report.StaleAccesses, Is.Zero, $"device {name}: stale accesses");
        Assert.That(report.FreedMemoryAccesses, Is.Zero, $"device {name}: freed-memory accesses");
        Assert.That(device.Oracle.Audit(), Is.Empty, $"device {name}: cached translations the tables do not have");
    }

    // Records the INV_CMD writes and INV_DONE reads of two devices in one log, in the order they happen.
    private sealed class RecordingBackend(IDeviceBackend inner, string name, ConcurrentQueue<string> log) : DelegatingBackend(inner)
    {
        public static volatile bool Recording;

        public override void Write64(uint offset, ulong value)
        {
            if (Recording && offset == Fa1Registers.InvCmd)
            {
                log.Enqueue("INV_CMD " + name);
            }

            base.Write64(offset, value);
        }

        public override ulong Read64(uint offset)
        {
            if (Recording && offset == Fa1Registers.InvDone)
            {
                log.Enqueue("INV_DONE " + name);
            }

            return base.Read64(offset);
        }
    }

    private sealed class PerContainerBackend(IDeviceBackend inner) : DelegatingBackend(inner)
    {
        public override bool PinsChargedOncePerAddressSpace => false;
    }
}
