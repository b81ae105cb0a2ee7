using System.Collections.Concurrent;
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
/// Issue 15, batched eviction between watermarks (decision F3): past the high watermark, pages are evicted down to the
/// low one in one batch with one invalidation and one fence, counted by the model (INV_CMD writes); the fault service
/// runs the batch after answering, so no fault waits for an eviction fence in steady state.
/// </summary>
[NonParallelizable] // the schedule hooks are process-wide
public class BatchedEvictionTests
{
    private const ulong Page = PageTableFormat.PageSize;
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(30);

    [Test]
    public async Task EvictionsCostOneFencePerBatchNotPerPage()
    {
        var backend = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 32, FaultAroundPages = 1 });
        device.StartFaultService();
        using var buffer = HostBuffer.Allocate(128 * Page);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();
        Assert.That((device.OnDemandStatistics.HighWatermark, device.OnDemandStatistics.LowWatermark), Is.EqualTo((28, 24)));

        var invalidationsBefore = backend.Model.InvalidationsIssued;
        var before = device.OnDemandStatistics;
        for (var round = 0; round < 4; round++)
        {
            var fill = await queue.FillAsync(context, (ulong)buffer.Address, 128 * Page, (ulong)round).AsTask().WaitAsync(s_bound);
            Assert.That(fill.Status, Is.EqualTo(CompletionStatus.Ok));
        }

        var after = device.OnDemandStatistics;
        var evictions = after.Evictions - before.Evictions;
        var fences = after.EvictionFences - before.EvictionFences;
        var invalidations = backend.Model.InvalidationsIssued - invalidationsBefore;
        TestContext.Out.WriteLine($"{evictions} pages evicted in {after.EvictionBatches - before.EvictionBatches} batches, {fences} fences, {invalidations} INV_CMD writes (model)");
        Assert.That(evictions, Is.GreaterThanOrEqualTo(400), "4 rounds over 128 pages through a budget of 32");
        Assert.That(invalidations, Is.EqualTo(fences), "the model saw one invalidation per fence: nothing per page");
        Assert.That(fences, Is.EqualTo(after.EvictionBatches - before.EvictionBatches), "one fence per batch");
        Assert.That(evictions, Is.GreaterThanOrEqualTo(4 * fences), "a batch takes the pager from above 28 down to 24 pages: at least 4 pages");
        Assert.That(device.OnDemand.Pinned, Is.LessThanOrEqualTo(32));
        Assert.That(device.Oracle!.Read().StaleAccesses, Is.Zero, "every batch fenced before it unpinned");
    }

    [Test]
    public async Task NoFaultWaitsForAnEvictionFenceInSteadyState()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 128 });
        device.StartFaultService();
        using var src = HostBuffer.Allocate(128 * Page);
        using var dst = HostBuffer.Allocate(128 * Page);
        using var context = device.CreateContext();
        using var a = context.RegisterOnDemand(src, DmaAccess.DeviceRead);
        using var b = context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();

        // Warm up to the steady state (the budget full, pages evicted), then watch the fault path.
        for (var i = 0; i < 64; i++)
        {
            await Copy(queue, context, src, dst, i);
        }

        var recorder = new FaultPathRecorder();
        var previous = ScheduleHooks.Install(recorder);
        var stats = device.OnDemandStatistics;
        try
        {
            for (var i = 64; i < 256; i++)
            {
                Assert.That((await Copy(queue, context, src, dst, i)).Status, Is.EqualTo(CompletionStatus.Ok));
            }
        }
        finally
        {
            ScheduleHooks.Install(previous);
        }

        var after = device.OnDemandStatistics;
        Assert.That(after.Evictions - stats.Evictions, Is.GreaterThan(100), "the run evicted");
        Assert.That(recorder.Faults, Is.GreaterThan(50), "the run faulted");
        Assert.That(recorder.FencesInsideAFault, Is.Zero, "a fault waited for an eviction fence between its lookup and its answer");
        Assert.That(recorder.FencesOutsideFaults, Is.EqualTo(after.EvictionFences - stats.EvictionFences), "the batches fenced after the answers");
        Assert.That(after.DirectReclaims, Is.Zero);
    }

    [Test]
    public void ABatchOverSeveralContextsIssuesEveryInvalidationBeforeItWaitsOnce()
    {
        var backend = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 8, FaultAroundPages = 1 });
        using var buffer = HostBuffer.Allocate(64 * Page);
        using var first = device.CreateContext();
        using var second = device.CreateContext();
        using var r1 = first.RegisterOnDemand(buffer.Address, 32 * Page, DmaAccess.ReadWrite);
        using var r2 = second.RegisterOnDemand(buffer.Address + (nint)(32 * Page), 32 * Page, DmaAccess.ReadWrite);
        for (var p = 0; p < 8; p++)
        {
            var context = p % 2 == 0 ? first : second;
            Assert.That(context.ServiceFault((ulong)buffer.Address + ((ulong)(p + (p % 2 * 32)) * Page), true, 0, out _, out _), Is.EqualTo(FaultOutcome.Resolved));
        }

        var recorder = new FaultPathRecorder();
        var previous = ScheduleHooks.Install(recorder);
        var invalidations = backend.Model.InvalidationsIssued;
        try
        {
            // The budget is full: this fault reclaims down to the low watermark (6) on its own path, from both contexts.
            first.ServiceFault((ulong)buffer.Address + (20 * Page), true, 0, out _, out _);
        }
        finally
        {
            ScheduleHooks.Install(previous);
        }

        Assert.That(device.OnDemandStatistics.DirectReclaims, Is.EqualTo(1));
        Assert.That(backend.Model.InvalidationsIssued - invalidations, Is.EqualTo(2), "one range invalidation per context");
        Assert.That(recorder.Sequence, Is.EqualTo(new[] { SchedulePoint.InvalidationIssued, SchedulePoint.InvalidationIssued, SchedulePoint.FenceWaiting }),
            "both invalidations are issued before the one fence wait (HMM's order)");
        Assert.That(first.PresentOnDemandPages + second.PresentOnDemandPages, Is.LessThanOrEqualTo(8));
        Assert.That(device.Oracle!.Audit(), Is.Empty);
    }

    private static Task<CommandResult> Copy(CommandQueue queue, DeviceContext context, HostBuffer src, HostBuffer dst, int i)
    {
        var offset = (ulong)(i % 32) * 4 * Page;
        return queue.CopyAsync(context, (ulong)src.Address + offset, (ulong)dst.Address + offset, 4 * Page).AsTask().WaitAsync(s_bound);
    }

    /// <summary>Counts fence waits and invalidations inside a fault's service (lookup to answer) and outside it.</summary>
    private sealed class FaultPathRecorder : IScheduleExplorer
    {
        [ThreadStatic]
        private static bool s_inFault;

        private readonly ConcurrentQueue<SchedulePoint> _sequence = new();
        private int _faults;
        private int _inside;
        private int _outside;

        public int Faults => _faults;

        public int FencesInsideAFault => _inside;

        public int FencesOutsideFaults => _outside;

        public SchedulePoint[] Sequence => [.. _sequence.Where(p => p is SchedulePoint.InvalidationIssued or SchedulePoint.FenceWaiting)];

        public void Reached(SchedulePoint point)
        {
            _sequence.Enqueue(point);
            switch (point)
            {
                case SchedulePoint.FaultLookedUp:
                    if (!s_inFault)
                    {
                        Interlocked.Increment(ref _faults);
                    }

                    s_inFault = true;
                    break;
                case SchedulePoint.FaultAnswering:
                    s_inFault = false;
                    break;
                case SchedulePoint.FenceWaiting:
                    Interlocked.Increment(ref s_inFault ? ref _inside : ref _outside);
                    break;
            }
        }
    }
}
