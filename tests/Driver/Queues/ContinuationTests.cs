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

    [TestCase(CompletionMode.Interrupt, ContinuationMode.Inline)]
    [TestCase(CompletionMode.Poll, ContinuationMode.Inline)]
    [TestCase(CompletionMode.Interrupt, ContinuationMode.ThreadPool)]
    [TestCase(CompletionMode.Poll, ContinuationMode.ThreadPool)]
    public async Task TheContinuationRunsWhereTheQueueSays(CompletionMode mode, ContinuationMode continuations)
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var buffer = HostBuffer.Allocate(PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var pin = context.Pin(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue(0, 16, mode, continuations);
        Assert.That(queue.Continuations, Is.EqualTo(continuations));

        // A result already there when the await looks is taken on the awaiting thread in either mode (no hop at all); one
        // that comes later runs its continuation where the mode says. One that lands between the await's look and its
        // registration is the exception: the awaitable finds it completed on registering and queues the continuation to the
        // pool, as Task does in the same race. Fifty commands see all three kinds.
        var seen = await Task.Run(async () =>
        {
            var where = new List<(bool Pool, string? Name, bool SameThread)>();
            for (var i = 0; i < 50; i++)
            {
                var before = Environment.CurrentManagedThreadId;
                var result = await queue.FillAsync(context, (ulong)buffer.Address, 64, (ulong)i);
                Assert.That(result.Status, Is.EqualTo(CompletionStatus.Ok));
                where.Add((Thread.CurrentThread.IsThreadPoolThread, Thread.CurrentThread.Name, Environment.CurrentManagedThreadId == before));
                await Task.Yield(); // back to the pool before the next submission
            }

            return where;
        }).WaitAsync(s_bound);

        var resumed = seen.Where(w => !w.SameThread).ToList();
        var harvester = resumed.Count(w => !w.Pool && w.Name?.StartsWith("fpgaaccel-", StringComparison.Ordinal) == true);
        var pool = resumed.Count(w => w.Pool);
        TestContext.Out.WriteLine($"{continuations}: {seen.Count - resumed.Count} on the awaiting thread, {harvester} on the harvester, {pool} on the pool");
        Assert.That(resumed.Where(w => !w.Pool && w.Name?.StartsWith("fpgaaccel-", StringComparison.Ordinal) != true).Select(w => w.Name), Is.Empty,
            "a continuation ran on a thread that is neither the pool nor the driver's");
        if (continuations == ContinuationMode.Inline)
        {
            Assert.That(harvester, Is.GreaterThan(0), "no continuation ran after its command completed: the test proves nothing");
            Assert.That(pool, Is.LessThan(harvester),
                "inline: continuations went to the pool more often than the registration race explains; they belong on the harvesting thread (interrupt dispatcher or poller)");
        }
        else
        {
            Assert.That(seen.Where(w => !w.Pool).Select(w => w.Name), Is.Empty, "thread pool: a continuation ran off the pool");
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

        // Only a continuation that waited runs on the harvesting thread (a result already there is taken on the awaiting
        // thread): submit until one does, then try to dispose from there.
        var (queueError, deviceError) = await Task.Run(async () =>
        {
            for (var i = 0; i < 200; i++)
            {
                var before = Environment.CurrentManagedThreadId;
                await queue.FillAsync(context, (ulong)buffer.Address, 64, (ulong)i);
                if (Environment.CurrentManagedThreadId != before && Thread.CurrentThread.Name?.StartsWith("fpgaaccel-", StringComparison.Ordinal) == true)
                {
                    var q = Assert.Throws<InvalidOperationException>(queue.Dispose);
                    var d = Assert.Throws<InvalidOperationException>(device.Dispose);
                    await Task.Yield();
                    return (q, d);
                }

                await Task.Yield();
            }

            Assert.Fail("no continuation ran on the harvesting thread in 200 commands");
            return default;
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
