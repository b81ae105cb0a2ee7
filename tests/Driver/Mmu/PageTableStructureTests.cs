using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Mmu;

/// <summary>
/// Structural changes the device may cache (issue 11, defects 1 and 4): a level-3 table unlinked by a 2 MiB
/// promotion is invalidated and fenced before it is relied on or freed, and only by the operation that unlinked it.
/// </summary>
public class PageTableStructureTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    // Defect 1: in a NOFAULT context, pin half a chunk, walk it (the walk cache keeps the level-3 table),
    // pin the other half (the chunk becomes a 2 MiB leaf): the new half must translate.
    [Test]
    public async Task PinThatCompletesAChunkIsReachableThroughTheWalkCache()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var buffer = HostBuffer.Allocate(PageTableFormat.HugePageSize);
        new Random(1).NextBytes(buffer.Span);
        using var context = device.CreateContext(new ContextOptions { NoFault = true });
        using var queue = device.OpenQueue();
        const ulong half = PageTableFormat.HugePageSize / 2;
        var start = (ulong)buffer.Address;

        using var first = context.Pin(buffer.Address, half, DmaAccess.DeviceRead);
        var crcFirst = await queue.Crc32CAsync(context, start, half).AsTask().WaitAsync(s_bound);
        Assert.That(crcFirst.Status, Is.EqualTo(CompletionStatus.Ok));

        using var second = context.Pin(buffer.Address + (nint)half, half, DmaAccess.DeviceRead);
        Assert.That(context.Translation(start, out var level).Valid && level == PageTableFormat.HugeLeafLevel, Is.True, "the chunk became one 2 MiB leaf");
        Assert.That(device.Oracle!.Audit(context.Index), Is.Empty, "after the promotion the walk cache still points at the unlinked level-3 table");
        var crcSecond = await queue.Crc32CAsync(context, start + half, half).AsTask().WaitAsync(s_bound);
        Assert.That(crcSecond.Status, Is.EqualTo(CompletionStatus.Ok), "the second half is pinned: the device must reach it");
        Assert.That(crcSecond.Result, Is.EqualTo((ulong)Crc32C.Compute(buffer.Span[(int)half..])));
    }

    // Defect 1, with faults serviced by RETRY: the on-demand install that fills a chunk must not leave the
    // device walking a table that lacks the new page (a fault/RETRY livelock).
    [Test]
    public async Task OnDemandInstallThatFillsAChunkDoesNotLivelock()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 1024 });
        var service = device.StartFaultService(new FaultServiceOptions { UseDropin = false });
        using var buffer = HostBuffer.Allocate(PageTableFormat.HugePageSize);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();
        var start = (ulong)buffer.Address;
        const ulong allButLast = PageTableFormat.HugePageSize - PageTableFormat.PageSize;

        Assert.That((await queue.FillAsync(context, start, allButLast, 0x1111).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That((await queue.Crc32CAsync(context, start, allButLast).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        var faults = service.Metrics.Faults;

        var last = await queue.FillAsync(context, start + allButLast, PageTableFormat.PageSize, 0x2222).AsTask().WaitAsync(s_bound);
        Assert.That(last.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(service.Metrics.Faults - faults, Is.LessThan(8), "one page faults in once, not over and over");
        Assert.That((await queue.Crc32CAsync(context, start, PageTableFormat.HugePageSize).AsTask().WaitAsync(s_bound)).Result,
            Is.EqualTo((ulong)Crc32C.Compute(buffer.Span)));
    }

    // A removal invalidates the pages whose translation changed, not their whole 2 MiB chunk: dropping the cached
    // translations of unrelated neighbours made the device's work depend on where buffers happened to lie (jitter on the
    // virtual clock differed from run to run) and costs a walk per neighbour after every eviction.
    [Test]
    public void RemovalInvalidatesOnlyThePagesThatChanged()
    {
        var backend = new InvalidationRecorder(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend);
        using var buffer = HostBuffer.Allocate(8 * PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var kept = context.Pin(buffer.Address, 4 * PageTableFormat.PageSize, DmaAccess.ReadWrite);
        var removed = context.Pin(buffer.Address + (nint)(5 * PageTableFormat.PageSize), PageTableFormat.PageSize, DmaAccess.ReadWrite);
        backend.Ranges.Clear();

        context.Unpin(removed);

        Assert.That(backend.Ranges, Is.EqualTo(new[] { ((ulong)buffer.Address + (5 * PageTableFormat.PageSize), 1UL) }),
            "one invalidation, of the one page unpinned");
    }

    // Defect 4: a removal frees only what it unlinked itself. A pin promotes a chunk (unlinking its level-3
    // table, which the walk cache holds) while an unpin elsewhere waits for its own fence: that fence was issued
    // before the unlink, so the unpin must not free the table; the device walks through it until the pin's own
    // invalidation has passed.
    [Test]
    public async Task RemovalDoesNotFreeATableUnlinkedAfterItsInvalidation()
    {
        var backend = new InterleavingBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend);
        using var big = HostBuffer.Allocate(PageTableFormat.HugePageSize);
        using var small = HostBuffer.Allocate(PageTableFormat.PageSize);
        new Random(2).NextBytes(big.Span);
        using var context = device.CreateContext(new ContextOptions { NoFault = true });
        using var queue = device.OpenQueue();
        const ulong half = PageTableFormat.HugePageSize / 2;
        var start = (ulong)big.Address;
        using var first = context.Pin(big.Address, half, DmaAccess.DeviceRead);
        var other = context.Pin(small, DmaAccess.DeviceRead);

        // The device walks the first half: its walk cache now points at the chunk's level-3 table.
        Assert.That((await queue.Crc32CAsync(context, start, half).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));

        PinnedBuffer? second = null;
        var pinner = new Thread(() => second = context.Pin(big.Address + (nint)half, half, DmaAccess.DeviceRead)) { IsBackground = true };
        backend.DuringNextFenceWait = () =>
        {
            // The unpin's invalidation is issued; while it waits for the fence, another thread promotes the chunk.
            // If the pin issues an invalidation of its own, it is held at INV_ADDR until the unpin has returned.
            backend.HoldInvalidationsOf = pinner;
            pinner.Start();
            Assert.That(backend.HeldOrDone(pinner, s_bound), Is.True, "the pinning thread neither returned nor reached an invalidation");
        };

        context.Unpin(other);
        Assert.That(backend.DuringNextFenceWait, Is.Null, "the interleaving ran");

        // The second half was never touched: its translation is walked, through the cached pointer to the level-3 table.
        var pending = queue.Crc32CAsync(context, start + half, half).AsTask();
        await Task.WhenAny(pending, Task.Delay(s_bound));
        Assert.That(device.FatalError, Is.Null, "the device walked into a freed table");
        Assert.That(pending.IsCompleted, Is.True, "the command did not complete");
        var crc = await pending;
        Assert.That(crc.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(crc.Result, Is.EqualTo((ulong)Crc32C.Compute(big.Span[(int)half..])));

        backend.ReleaseHeld();
        Assert.That(pinner.Join(s_bound), Is.True);
        Assert.That(second, Is.Not.Null);
        var whole = await queue.Crc32CAsync(context, start, PageTableFormat.HugePageSize).AsTask().WaitAsync(s_bound);
        Assert.That(whole.Result, Is.EqualTo((ulong)Crc32C.Compute(big.Span)));
        second!.Dispose();
    }

    /// <summary>
    /// Runs a callback inside the next INV_DONE read (a removal waiting for its fence, outside the context lock), and
    /// holds a chosen thread at its next INV_ADDR write (the start of an invalidation) until released.
    /// </summary>
    private sealed class InterleavingBackend(IDeviceBackend inner) : DelegatingBackend(inner)
    {
        private readonly ManualResetEventSlim _release = new(false);
        private readonly ManualResetEventSlim _held = new(false);

        public Action? DuringNextFenceWait { get; set; }

        public Thread? HoldInvalidationsOf { get; set; }

        public bool HeldOrDone(Thread thread, TimeSpan bound)
        {
            var deadline = DateTime.UtcNow + bound;
            while (DateTime.UtcNow < deadline)
            {
                if (_held.IsSet || !thread.IsAlive)
                {
                    return true;
                }

                Thread.Sleep(1);
            }

            return false;
        }

        public void ReleaseHeld() => _release.Set();

        public override ulong Read64(uint offset)
        {
            if (offset == Fa1Registers.InvDone && DuringNextFenceWait is { } run && Thread.CurrentThread != HoldInvalidationsOf)
            {
                DuringNextFenceWait = null;
                run();
            }

            return base.Read64(offset);
        }

        public override void Write64(uint offset, ulong value)
        {
            if (offset == Fa1Registers.InvAddr && HoldInvalidationsOf == Thread.CurrentThread && !_held.IsSet)
            {
                _held.Set();
                _release.Wait(TimeSpan.FromSeconds(30));
            }

            base.Write64(offset, value);
        }
    }

    // Records the range of every INV_CMD: INV_ADDR and INV_PAGES as they were when the command was written.
    private sealed class InvalidationRecorder(IDeviceBackend inner) : DelegatingBackend(inner)
    {
        private ulong _addr;
        private ulong _pages;

        public List<(ulong Address, ulong Pages)> Ranges { get; } = [];

        public override void Write64(uint offset, ulong value)
        {
            switch (offset)
            {
                case Fa1Registers.InvAddr: _addr = value; break;
                case Fa1Registers.InvPages: _pages = value; break;
                case Fa1Registers.InvCmd: lock (Ranges) { Ranges.Add((_addr, _pages)); } break;
            }

            base.Write64(offset, value);
        }
    }
}
