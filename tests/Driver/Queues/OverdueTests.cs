using System.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Queues;

/// <summary>
/// Issue 12: hung means no progress, not slow progress. A command past the deadline makes its queue overdue only while
/// the queue has also completed nothing for a deadline, or once the command is past HardLimitFactor deadlines: a
/// command stuck behind others that keep completing is found, a loaded host that only slows them is not.
/// </summary>
public class OverdueTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    [Test]
    public async Task AStalledCommandIsOverdueOnlyWhenItsQueueIsQuietOrPastTheHardLimit()
    {
        // The fault service never sees its record (FQ_TAIL hidden), so the on-demand FILL stays stalled in its lane while
        // pinned FILLs complete on the queue's other lanes (D35). The health check's own deadline is far away.
        // Deadline 200 ms: the command is 1.5 deadlines old at the first check and 4.5 at the last.
        var model = new ModelBackend(new ModelOptions { Clock = ClockMode.Wall, CommandsInFlight = 4 });
        var backend = new TailHidingBackend(model, hideTail: true);
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 16, DeviceTimeout = TimeSpan.FromMinutes(1) });
        using var onDemand = HostBuffer.Allocate(PageTableFormat.PageSize);
        using var pinnedBuffer = HostBuffer.Allocate(PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(onDemand, DmaAccess.ReadWrite);
        using var pin = context.Pin(pinnedBuffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();
        using var service = device.StartFaultService();

        var stalled = queue.FillAsync(context, (ulong)onDemand.Address, 64, 1).AsTask();
        var stalledAt = Stopwatch.GetTimestamp();
        var limit = (long)(0.2 * Stopwatch.Frequency); // 200 ms
        Assert.That(queue.FindOverdue(Stopwatch.GetTimestamp(), limit, out _, out _), Is.False, "younger than the deadline");

        // Past one deadline, but the queue has just completed another command: slow, not hung.
        await CompleteOneAt(queue, context, pinnedBuffer, stalledAt + (3 * limit / 2), pattern: 2);
        Assert.That(stalled.IsCompleted, Is.False, "the on-demand FILL must still be stalled for this test to mean anything");
        Assert.That(queue.FindOverdue(Stopwatch.GetTimestamp(), limit, out _, out _), Is.False,
            "a command past the deadline made its queue overdue although the queue completed work within the deadline");

        // The same command with nothing completing for a deadline: hung.
        Assert.That(queue.FindOverdue(Stopwatch.GetTimestamp() + (2 * limit), limit, out var tag, out var age), Is.True,
            "a command past the deadline in a queue quiet for a deadline was not found");
        Assert.That(age, Is.GreaterThan(TimeSpan.FromMilliseconds(600)));
        var quietTag = tag;

        // Past HardLimitFactor deadlines although another command has just completed: overdue all the same.
        await CompleteOneAt(queue, context, pinnedBuffer, stalledAt + ((2 * CommandQueue.HardLimitFactor + 1) * limit / 2), pattern: 3);
        Assert.That(stalled.IsCompleted, Is.False);
        Assert.That(queue.FindOverdue(Stopwatch.GetTimestamp(), limit, out tag, out age), Is.True,
            $"a command {CommandQueue.HardLimitFactor + 0.5} deadlines old was not found because another command had just completed");
        Assert.That(tag, Is.EqualTo(quietTag), "the stalled command is the one named");
        Assert.That(age, Is.GreaterThan(TimeSpan.FromSeconds(CommandQueue.HardLimitFactor * 0.2)));

        // Stopping the service answers the stranded record ABORT: nothing stays stalled.
        backend.HideTail = false;
        service.Dispose();
        Assert.That((await stalled.WaitAsync(s_bound)).Status, Is.AnyOf(CompletionStatus.Fault, CompletionStatus.Ok));
    }

    // Waits until `at` (a Stopwatch timestamp), then runs one FILL to the pinned page to completion. The queue's window
    // (D35: command N starts once command N - 4 has ended) lets at most three commands pass the stalled one.
    private static async Task CompleteOneAt(CommandQueue queue, DeviceContext context, HostBuffer buffer, long at, ulong pattern)
    {
        var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), at);
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait);
        }

        var result = await queue.FillAsync(context, (ulong)buffer.Address, 64, pattern).AsTask().WaitAsync(s_bound);
        Assert.That(result.Status, Is.EqualTo(CompletionStatus.Ok));
    }
}
