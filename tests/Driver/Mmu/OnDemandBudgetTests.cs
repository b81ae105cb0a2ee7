using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Mmu;

/// <summary>
/// Issue 11, defect 12: the on-demand budget must let every command make progress. A stalled COPY needs its source and
/// its destination page at once, and each queue has one stalled access at a time, so the budget holds at least two
/// pages per open queue (refused with a typed error naming the minimum otherwise), and a fault never evicts the page
/// its own queue faulted in just before it (the other side of the same access), nor another queue's two latest.
/// </summary>
public class OnDemandBudgetTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(30);

    [Test]
    public void ABudgetBelowTwoPagesPerOpenQueueIsRefused()
    {
        var ex = Assert.Throws<InvalidDeviceOptionException>(() =>
            FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 1 }))!;
        Assert.That(ex.Message, Does.Contain("OnDemandBudgetPages = 1").And.Contain("2"));

        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 3 });
        using var first = device.OpenQueue(0);
        var second = Assert.Throws<InvalidDeviceOptionException>(() => device.OpenQueue(1))!;
        Assert.That(second.Message, Does.Contain("3").And.Contain("4"), "the message names the budget and the minimum for two queues");
    }

    [Test]
    public async Task CopyBetweenTwoOnDemandRegionsCompletesAtTheMinimumBudget()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 2 });
        device.StartFaultService();
        using var src = HostBuffer.Allocate(16 * PageTableFormat.PageSize);
        using var dst = HostBuffer.Allocate(16 * PageTableFormat.PageSize);
        new Random(5).NextBytes(src.Span);
        using var context = device.CreateContext();
        using var a = context.RegisterOnDemand(src, DmaAccess.DeviceRead);
        using var b = context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();

        var copy = await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 16 * PageTableFormat.PageSize).AsTask().WaitAsync(s_bound);
        Assert.That(copy.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(dst.Span.SequenceEqual(src.Span), Is.True);
        Assert.That(device.OnDemand.Pinned, Is.LessThanOrEqualTo(2));
    }

    // Decision D35: the device runs several commands of one queue at once, each with its own stalled access. The pager
    // protects as many recent pages of a queue as its commands in flight may need, going over the budget rather than
    // evicting a page a stalled access still needs.
    [Test]
    public async Task SeveralCommandsOfOneQueueAllProgressAtTheMinimumBudget()
    {
        const int copies = 4;
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 2 });
        device.StartFaultService();
        using var context = device.CreateContext();
        using var queue = device.OpenQueue();
        var buffers = new List<HostBuffer>();
        try
        {
            var work = new List<Task<CommandResult>>();
            for (var c = 0; c < copies; c++)
            {
                var src = HostBuffer.Allocate(16 * PageTableFormat.PageSize);
                var dst = HostBuffer.Allocate(16 * PageTableFormat.PageSize);
                buffers.Add(src);
                buffers.Add(dst);
                new Random(c).NextBytes(src.Span);
                context.RegisterOnDemand(src, DmaAccess.DeviceRead);
                context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
            }

            for (var c = 0; c < copies; c++)
            {
                work.Add(queue.CopyAsync(context, (ulong)buffers[2 * c].Address, (ulong)buffers[(2 * c) + 1].Address, 16 * PageTableFormat.PageSize).AsTask());
            }

            var all = Task.WhenAll(work);
            Assert.That(await Task.WhenAny(all, Task.Delay(s_bound)), Is.SameAs(all), "a copy made no progress");
            for (var c = 0; c < copies; c++)
            {
                Assert.That(work[c].Result.Status, Is.EqualTo(CompletionStatus.Ok));
                Assert.That(buffers[(2 * c) + 1].Span.SequenceEqual(buffers[2 * c].Span), Is.True);
            }
        }
        finally
        {
            buffers.ForEach(b => b.Dispose());
        }
    }

    [Test]
    public async Task CopiesOnSeveralQueuesAllProgressAtTheMinimumBudget()
    {
        const int queues = 3;
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 2 * queues });
        device.StartFaultService();
        using var context = device.CreateContext();
        var buffers = new List<HostBuffer>();
        var work = new List<Task<CommandResult>>();
        var opened = new List<CommandQueue>();
        try
        {
            for (var q = 0; q < queues; q++)
            {
                var src = HostBuffer.Allocate(32 * PageTableFormat.PageSize);
                var dst = HostBuffer.Allocate(32 * PageTableFormat.PageSize);
                buffers.Add(src);
                buffers.Add(dst);
                new Random(q).NextBytes(src.Span);
                context.RegisterOnDemand(src, DmaAccess.DeviceRead);
                context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
                var queue = device.OpenQueue(q);
                opened.Add(queue);
                work.Add(queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 32 * PageTableFormat.PageSize).AsTask());
            }

            var all = Task.WhenAll(work);
            Assert.That(await Task.WhenAny(all, Task.Delay(s_bound)), Is.SameAs(all), "a copy made no progress");
            for (var q = 0; q < queues; q++)
            {
                Assert.That(work[q].Result.Status, Is.EqualTo(CompletionStatus.Ok));
                Assert.That(buffers[(2 * q) + 1].Span.SequenceEqual(buffers[2 * q].Span), Is.True);
            }
        }
        finally
        {
            opened.ForEach(q => q.Dispose());
            buffers.ForEach(b => b.Dispose());
        }
    }
}
