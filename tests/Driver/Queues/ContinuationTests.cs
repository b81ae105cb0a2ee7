using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Queues;

/// <summary>
/// Decision F25: where the code after an await of a command's result runs. ThreadPool (the default) hops to a pool
/// thread; Inline runs it on the thread that harvested the completion, after the harvest's lock is released, so a
/// run-to-completion loop (await, submit the next) works and never waits for the pool; disposing the queue or the device
/// from there is refused, with the fix.
/// </summary>
public class ContinuationTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(20);

    [TestCase(CompletionMode.Interrupt, ContinuationMode.Inline, false)]
    [TestCase(CompletionMode.Poll, ContinuationMode.Inline, false)]
    [TestCase(CompletionMode.Interrupt, ContinuationMode.ThreadPool, true)]
    [TestCase(CompletionMode.Poll, ContinuationMode.ThreadPool, true)]
    public async Task TheContinuationRunsWhereTheQueueSays(CompletionMode mode, ContinuationMode continuations, bool onPool)
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var buffer = HostBuffer.Allocate(PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var pin = context.Pin(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue(0, 16, mode, continuations);
        Assert.That(queue.Continuations, Is.EqualTo(continuations));

        var seen = await Task.Run(async () =>
        {
            var result = await queue.FillAsync(context, (ulong)buffer.Address, 64, 0x5A);
            var where = (result.Status, Thread.CurrentThread.IsThreadPoolThread, Thread.CurrentThread.Name);
            await Task.Yield(); // leave the harvesting thread before the test disposes anything
            return where;
        }).WaitAsync(s_bound);

        Assert.That(seen.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(seen.IsThreadPoolThread, Is.EqualTo(onPool), $"the continuation ran on '{seen.Name}'");
        if (!onPool)
        {
            Assert.That(seen.Name, Does.StartWith("fpgaaccel-"), "inline: the driver's harvesting thread (interrupt dispatcher or poller)");
        }
    }

    [TestCase(CompletionMode.Interrupt)]
    [TestCase(CompletionMode.Poll)]
    public async Task ARunToCompletionLoopSubmitsFromTheHarvestingThread(CompletionMode mode)
    {
        // Each continuation submits the next command from the thread that harvested the last one: the harvest lock and
        // the command's credit must both be free by then (a 2-entry ring has one credit to spare), or this deadlocks.
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var buffer = HostBuffer.Allocate(PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var pin = context.Pin(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue(0, 2, mode, ContinuationMode.Inline);

        var done = await Task.Run(async () =>
        {
            var ok = 0;
            for (var i = 0; i < 300; i++)
            {
                var result = await queue.FillAsync(context, (ulong)buffer.Address, 64, (ulong)i);
                ok += result.Status == CompletionStatus.Ok ? 1 : 0;
            }

            await Task.Yield();
            return ok;
        }).WaitAsync(s_bound);

        Assert.That(done, Is.EqualTo(300));
        Assert.That(System.Runtime.InteropServices.MemoryMarshal.Read<ulong>(buffer.Span), Is.EqualTo(299UL), "the last FILL's pattern");
    }

    [Test]
    public async Task DisposingFromAnInlineContinuationIsRefusedWithTheFix()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var buffer = HostBuffer.Allocate(PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var pin = context.Pin(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue(0, 16, CompletionMode.Interrupt, ContinuationMode.Inline);

        var (queueError, deviceError) = await Task.Run(async () =>
        {
            await queue.FillAsync(context, (ulong)buffer.Address, 64, 1);
            var q = Assert.Throws<InvalidOperationException>(queue.Dispose);
            var d = Assert.Throws<InvalidOperationException>(device.Dispose);
            await Task.Yield();
            return (q, d);
        }).WaitAsync(s_bound);

        Assert.That(queueError!.Message, Does.Contain("inline continuation").And.Contain("await Task.Yield()"));
        Assert.That(deviceError!.Message, Does.Contain("the device"));

        // Refused before anything changed: the queue still works, and disposes from elsewhere.
        Assert.That((await queue.FillAsync(context, (ulong)buffer.Address, 64, 2).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        await Task.Yield();
        Assert.That(queue.IsDisposed, Is.False);
    }

    [Test]
    public void AnUndefinedContinuationModeIsRefused()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        var ex = Assert.Throws<InvalidDeviceOptionException>(() => device.OpenQueue(0, 16, CompletionMode.Interrupt, (ContinuationMode)7))!;
        Assert.That(ex.Message, Does.Contain("continuations"));
    }
}
