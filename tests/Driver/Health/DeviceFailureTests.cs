using System.Diagnostics;
using System.Diagnostics.Metrics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Health;

/// <summary>
/// Issue 12: a device that falls off the bus, goes FATAL or hangs releases every waiter with a typed exception (commands
/// in flight, submitters waiting for ring space, fence waiters, commands held on unanswered faults), in interrupt and in
/// poll mode; no thread spins afterwards; and Recover() brings it back with the driver's state restored.
/// The bounds here are generous (seconds, against a 30 s device timeout): they show the waiters are released by
/// detection, not by a deadline, without asserting speed. The 100 ms bound is checked by an [Explicit] test and by
/// `fpgaaccel stress --inject`.
/// </summary>
[TestFixture(CompletionMode.Interrupt)]
[TestFixture(CompletionMode.Poll)]
public class DeviceFailureTests(CompletionMode mode)
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan s_longTimeout = TimeSpan.FromSeconds(30);

    [Test]
    public async Task RemovalReleasesCommandsCreditWaitersFencesAndHeldFaults()
    {
        var backend = HoldingBackend.Create();
        var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = s_longTimeout, OnDemandBudgetPages = 64 });
        try
        {
            device.StartFaultService();
            using var context = device.CreateContext();
            using var onDemand = HostBuffer.Allocate(4096);
            using var region = context.RegisterOnDemand(onDemand, DmaAccess.ReadWrite);
            using var fenced = HostBuffer.Allocate(4096);
            var pin = context.Pin(fenced, DmaAccess.ReadWrite);
            var queue = device.OpenQueue(0, 4, mode);
            var faulting = device.OpenQueue(1, 4, mode);

            // Held fault: the device raises it, the service answers, the answer never arrives.
            backend.SwallowFaultResponses = true;
            var held = faulting.FillAsync(context, (ulong)onDemand.Address, 64, 7).AsTask();
            Assert.That(() => device.Faults!.Metrics.Faults, Is.GreaterThanOrEqualTo(1).After(5000, 5), "the fault was raised");

            // Commands in flight (the device never sees them) and submitters waiting for ring space.
            backend.SwallowDoorbells = true;
            var inFlight = Enumerable.Range(0, 4).Select(_ => queue.NopAsync(context).AsTask()).ToArray();
            var waiting = Enumerable.Range(0, 3).Select(_ => queue.NopAsync(context).AsTask()).ToArray();
            Assert.That(waiting.Any(t => t.IsCompleted), Is.False, "four credits, seven submissions: three wait");

            // A fence waiter: INV_DONE never reaches its fence.
            backend.SwallowInvalidations = true;
            var unpin = Task.Run(() => context.Unpin(pin));
            await Task.Delay(50);
            Assert.That(unpin.IsCompleted, Is.False, "the unpin waits for its fence");

            var mappedWithPin = device.IommuMappedPages;
            var watch = Stopwatch.StartNew();
            backend.Device.Inject.RemoveFromBus();
            var all = inFlight.Concat(waiting).Append(held).ToArray();
            var released = Task.WhenAll(all.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)).Append(unpin.ContinueWith(_ => { }, TaskScheduler.Default)));
            Assert.That(await Task.WhenAny(released, Task.Delay(s_bound)), Is.SameAs(released), "a waiter was not released after the removal");
            TestContext.Out.WriteLine($"released in {watch.Elapsed.TotalMilliseconds:0} ms");
            foreach (var t in all)
            {
                Assert.That(t.Exception?.InnerException, Is.TypeOf<DeviceLostException>());
            }

            Assert.That(unpin.Status, Is.EqualTo(TaskStatus.RanToCompletion), "the unpin ends: the handle is gone");
            Assert.That(device.State, Is.EqualTo(DeviceState.Lost));
            Assert.That(device.PagesAwaitingFence, Is.Zero, "a gone device can reach no page: the unfenced pin's pages are released");
            Assert.That(device.IommuMappedPages, Is.LessThan(mappedWithPin), "the pin's pages were unmapped");
            Assert.ThrowsAsync<DeviceLostException>(async () => await queue.NopAsync(context), "new commands fail at once");

            // Nothing spins on a lost device: the pollers (and the fault service, the health thread) block.
            var before = ThreadCpu.Ticks("fpgaaccel");
            await Task.Delay(500);
            var used = ThreadCpu.Ticks("fpgaaccel") - before;
            Assert.That(used, Is.LessThan(20), $"driver threads used {used} clock ticks in 500 ms after the loss");
        }
        finally
        {
            var dispose = Stopwatch.StartNew();
            device.Dispose();
            Assert.That(dispose.Elapsed, Is.LessThan(s_bound), "dispose of a lost device is not a device timeout per queue");
        }
    }

    [Test]
    public async Task RemovalWithNothingInFlightIsSeenByTheNextCommandAndDisposeIsQuick()
    {
        var backend = HoldingBackend.Create();
        var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = s_longTimeout });
        using var context = device.CreateContext();
        var queue = device.OpenQueue(0, 8, mode);
        Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        backend.Device.Inject.RemoveFromBus();
        var late = queue.NopAsync(context).AsTask();
        var ended = await Task.WhenAny(late, Task.Delay(s_bound));
        Assert.That(ended, Is.SameAs(late), "a command submitted to a removed device never ended");
        Assert.That(late.Exception?.InnerException, Is.TypeOf<DeviceLostException>());
        var watch = Stopwatch.StartNew();
        device.Dispose();
        Assert.That(watch.Elapsed, Is.LessThan(s_bound));
    }

    [Test]
    public async Task AReturnedDeviceRecoversWithPinsRegionsQueuesAndFaultServiceRestored()
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = s_longTimeout, OnDemandBudgetPages = 64, RecoverTimeout = TimeSpan.FromMilliseconds(300) });
        var service = device.StartFaultService();
        using var context = device.CreateContext();
        using var src = HostBuffer.Allocate(8192);
        using var dst = HostBuffer.Allocate(8192);
        using var onDemand = HostBuffer.Allocate(8192);
        using var srcPin = context.Pin(src, DmaAccess.DeviceRead);
        using var dstPin = context.Pin(dst, DmaAccess.DeviceWrite);
        using var region = context.RegisterOnDemand(onDemand, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue(0, 8, mode);
        backend.SwallowDoorbells = true;
        var lost = queue.NopAsync(context).AsTask();
        backend.SwallowDoorbells = false;

        var states = new List<DeviceState>();
        device.StateChanged += (_, e) =>
        {
            lock (states)
            {
                states.Add(e.State);
            }
        };
        backend.Device.Inject.RemoveFromBus();
        Assert.That(async () => await lost.WaitAsync(s_bound), Throws.TypeOf<DeviceLostException>());
        Assert.That(device.Recover, Throws.TypeOf<DeviceLostException>().With.Message.Contains("did not come back"), "Recover waits, bounded, for the device");

        backend.Device.Inject.ReturnToBus();
        Assert.That(device.Recover(), Is.True);
        Assert.That(device.State, Is.EqualTo(DeviceState.Ready));
        Assert.That(device.Recoveries, Is.EqualTo(1));
        Assert.That(device.Recover(), Is.False, "a ready device needs no recovery");

        src.Span.Fill(0x5A);
        var copy = await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 8192).AsTask().WaitAsync(s_bound);
        Assert.That(copy.Status, Is.EqualTo(CompletionStatus.Ok), "pins stay valid handles across the recovery");
        Assert.That(dst.Span.ToArray().All(b => b == 0x5A), Is.True);
        var fill = await queue.FillAsync(context, (ulong)onDemand.Address, 8192, 0x0101010101010101).AsTask().WaitAsync(s_bound);
        Assert.That(fill.Status, Is.EqualTo(CompletionStatus.Ok), "the fault service serves the restored fault ring");
        Assert.That(onDemand.Span.ToArray().All(b => b == 1), Is.True);
        Assert.That(service.IsRunning, Is.True);
        for (var i = 0; i < 20; i++)
        {
            Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok), $"command {i} after the recovery");
        }

        Assert.That(() =>
        {
            lock (states)
            {
                return states.ToArray();
            }
        }, Is.EqualTo(new[] { DeviceState.Lost, DeviceState.Recovering, DeviceState.Lost, DeviceState.Recovering, DeviceState.Ready }).After(5000, 5));
        Assert.That(device.FatalError, Is.Null);
    }

    // While Recover() waits for the device to come back, other threads still read it (the interrupt dispatcher reads
    // IRQ_STATUS when woken, the health check STATUS) and see all ones: that verdict belongs to the recovery, which must
    // then succeed once the device is back instead of being failed from outside (the stress run's unexpected loss).
    [Test]
    public async Task AnotherThreadSeeingAllOnesDoesNotFailARecoveryInProgress()
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = s_longTimeout, RecoverTimeout = TimeSpan.FromSeconds(10) });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 8, mode);
        backend.Device.Inject.RemoveFromBus();
        Assert.That(device.Health.ReportAllOnes("in STATUS (the test)"), Is.True);
        Assert.That(device.State, Is.EqualTo(DeviceState.Lost));

        var recovery = Task.Run(device.Recover);
        Assert.That(() => device.State, Is.EqualTo(DeviceState.Recovering).After(5000, 1));
        Assert.That(await Task.Run(() => device.Health.ReportAllOnes("in IRQ_STATUS (another thread)")), Is.True, "the device does read all ones");
        Assert.That(device.State, Is.EqualTo(DeviceState.Recovering), "only the recovery moves the state while it runs");

        backend.Device.Inject.ReturnToBus();
        Assert.That(await recovery.WaitAsync(s_bound), Is.True);
        Assert.That(device.State, Is.EqualTo(DeviceState.Ready));
        Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
    }

    // The thread that releases the waiters of a failure can lag behind a recovery those waiters started (the stress run:
    // a queue released after the recovery had reattached it stayed failed for good). A release of a failure the queue's
    // reattach came after changes nothing: the commands in flight by then are new ones.
    [Test]
    public async Task AReleaseThatLagsBehindTheRecoveryLeavesTheReattachedQueueAlone()
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = s_longTimeout });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 4, mode);
        backend.Device.InjectFatal(FatalCause.Internal, 1);
        Assert.That(() => device.State, Is.EqualTo(DeviceState.Fatal).After(5000, 1));
        var failure = device.Health.Failures;
        Assert.That(device.Recover(), Is.True);

        backend.SwallowDoorbells = true;
        var inFlight = queue.NopAsync(context).AsTask();
        queue.Fail(new DeviceFatalException(ErrorRegister.FromRaw(3)), failure); // the lagging release
        Assert.That(inFlight.IsCompleted, Is.False, "a command submitted after the recovery was failed by the old failure's release");
        backend.SwallowDoorbells = false;
        Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok), "the queue still accepts commands");

        Assert.That((await inFlight.WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok), "it went with the next doorbell");

        backend.SwallowDoorbells = true;
        var held = queue.NopAsync(context).AsTask();
        queue.Fail(new DeviceFatalException(ErrorRegister.FromRaw(3)), failure + 1); // a newer failure does release it
        Assert.That(async () => await held.WaitAsync(s_bound), Throws.TypeOf<DeviceFatalException>());
    }

    // An eviction batch whose fence never comes (INV_DONE stuck) cannot unpin its pages (spec 4.3), but must not keep
    // them for good either: they wait, quarantined (R14), for the device to be reset or gone, as a single removal's do.
    [Test]
    public async Task AnEvictionWhoseFenceFailedReleasesItsPagesAtTheReset()
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions
        {
            DeviceTimeout = TimeSpan.FromMilliseconds(300),
            OnDemandBudgetPages = 4,
            FaultAroundPages = 1,
        });
        device.StartFaultService();
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 8, mode);
        using (var buffer = HostBuffer.Allocate(16 * 4096))
        {
            using (var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite))
            {
                Assert.That((await queue.FillAsync(context, (ulong)buffer.Address, 4 * 4096, 1).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
                backend.SwallowInvalidations = true;
                // The reclaim runs on the fault path or after the answered batch (F3): the command may fail or complete.
                var evicting = queue.FillAsync(context, (ulong)buffer.Address + (8 * 4096), 4 * 4096, 2).AsTask();
                await evicting.ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(s_bound);
                Assert.That(() => device.State, Is.EqualTo(DeviceState.Hung).After(5000, 5), "the stuck eviction fence declares the device hung");
                var waiting = device.PagesAwaitingFence;
                var mapped = device.IommuMappedPages;
                Assert.That(waiting, Is.GreaterThan(0), "the evicted pages wait for the reset, still mapped");

                backend.SwallowInvalidations = false;
                Assert.That(device.Recover(), Is.True);
                Assert.That(device.PagesAwaitingFence, Is.Zero, "the reset released them");
                Assert.That(device.IommuMappedPages, Is.EqualTo(mapped - waiting), "and unmapped exactly those");
            }
        }
    }

    [TestCase(FatalCause.UnmappedIova)]
    [TestCase(FatalCause.BadRingConfiguration)]
    [TestCase(FatalCause.Internal)]
    public async Task FatalReleasesWaitersWithItsCauseAndRecovers(FatalCause cause)
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = s_longTimeout });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 4, mode);
        backend.SwallowDoorbells = true;
        var inFlight = Enumerable.Range(0, 6).Select(_ => queue.NopAsync(context).AsTask()).ToArray();
        backend.SwallowDoorbells = false;

        backend.Device.InjectFatal(cause, 0x1234);
        var all = Task.WhenAll(inFlight.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        Assert.That(await Task.WhenAny(all, Task.Delay(s_bound)), Is.SameAs(all), "a waiter was not released after FATAL");
        foreach (var t in inFlight)
        {
            var ex = t.Exception?.InnerException as DeviceFatalException;
            Assert.That(ex, Is.Not.Null, $"{t.Exception?.InnerException?.GetType().Name}");
            Assert.That(ex!.Cause, Is.EqualTo(cause));
            Assert.That(ex.Detail, Is.EqualTo(0x1234u));
            Assert.That(ex.Message, Does.Contain(cause.ToString()).And.Contain("0x00001234").And.Contain("Recover"));
        }

        Assert.That(device.State, Is.EqualTo(DeviceState.Fatal));
        Assert.That(device.Recover(), Is.True);
        Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(device.FatalError, Is.Null, "the recovery cleared the fatal error");
    }

    [Test]
    public async Task ASpuriousErrorInterruptIsIgnored()
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = s_longTimeout });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 4, mode);
        backend.Device.Inject.RaiseSpuriousError();
        Assert.That(() => device.SpuriousErrorInterrupts, Is.EqualTo(1).After(5000, 5));
        Assert.That(device.State, Is.EqualTo(DeviceState.Ready));
        Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
    }

    [Test]
    public async Task ACommandPastItsDeadlineDeclaresTheDeviceHungAndNamesIt()
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = TimeSpan.FromMilliseconds(300) });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 4, mode);
        backend.SwallowDoorbells = true;
        var stuck = queue.NopAsync(context).AsTask();
        Assert.That(async () => await stuck.WaitAsync(s_bound), Throws.TypeOf<DeviceHungException>()
            .With.Property(nameof(DeviceHungException.What)).Contains("queue 0").And.Message.Contains("300 ms"));
        Assert.That(device.State, Is.EqualTo(DeviceState.Hung));
        backend.SwallowDoorbells = false;
        Assert.That(device.Recover(), Is.True);
        Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
    }
}

/// <summary>Issue 12, the cases that do not depend on the completion mode.</summary>
public class DeviceFailureDetailTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(5);

    [Test]
    public async Task ALostCompletionInterruptIsFoundByTheHealthCheck()
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = TimeSpan.FromSeconds(30) });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 8, CompletionMode.Interrupt);

        // No COMPLETION message reaches the host (as if each were lost); IRQ_STATUS still latches.
        backend.Device.Write64(Fa1Registers.IrqMask, (ulong)InterruptCauses.Completion);
        var result = await queue.NopAsync(context).AsTask().WaitAsync(s_bound);
        Assert.That(result.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(() => device.CompletionsFoundByHealthCheck, Is.GreaterThanOrEqualTo(1).After(5000, 5));
        Assert.That(device.State, Is.EqualTo(DeviceState.Ready));
    }

    [Test]
    public async Task AFailedFenceKeepsThePagesUntilTheResetReleasesThem()
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = TimeSpan.FromMilliseconds(200) });
        using var context = device.CreateContext();
        using var buffer = HostBuffer.Allocate(4 * 4096);
        var pin = context.Pin(buffer, DmaAccess.ReadWrite);
        var mappedPinned = device.IommuMappedPages;
        var pinnedBytes = device.PinnedBytes;
        backend.SwallowInvalidations = true;
        context.Unpin(pin);
        Assert.That(device.State, Is.EqualTo(DeviceState.Hung), "a fence past its deadline declares the device hung");
        Assert.That(device.Failure, Is.TypeOf<DeviceHungException>().With.Property(nameof(DeviceHungException.What)).Contains("fence"));
        Assert.That(device.PagesAwaitingFence, Is.EqualTo(4), "the device may still reach them: kept mapped");
        Assert.That(device.IommuMappedPages, Is.EqualTo(mappedPinned));

        backend.SwallowInvalidations = false;
        Assert.That(device.Recover(), Is.True);
        Assert.That(device.PagesAwaitingFence, Is.Zero, "the reset dropped every translation: the pages are released");
        Assert.That(device.IommuMappedPages, Is.EqualTo(mappedPinned - 4));
        Assert.That(device.PinnedBytes, Is.EqualTo(pinnedBytes - (4 * 4096)), "the accounting is returned");
        await Task.CompletedTask;
    }

    [Test]
    public async Task AutoRecoverBringsTheDeviceBackWhenItReturns()
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions
        {
            AutoRecover = true,
            RecoverBackoff = TimeSpan.FromMilliseconds(20),
            RecoverBackoffMax = TimeSpan.FromMilliseconds(200),
            AutoRecoverAttempts = 50,
        });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 8, CompletionMode.Interrupt);
        backend.SwallowDoorbells = true;
        var lost = queue.NopAsync(context).AsTask();
        backend.SwallowDoorbells = false;
        backend.Device.Inject.RemoveFromBus();
        Assert.That(async () => await lost.WaitAsync(s_bound), Throws.TypeOf<DeviceLostException>());
        await Task.Delay(100);
        backend.Device.Inject.ReturnToBus();
        Assert.That(() => device.State, Is.EqualTo(DeviceState.Ready).After(10_000, 10));
        Assert.That(device.Recoveries, Is.EqualTo(1));
        Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
    }

    [Test]
    public async Task TransitionsAreLoggedOnceWithTheCauseAndCounted()
    {
        var logs = new CapturingLoggerFactory();
        var backend = HoldingBackend.Create();
        var counts = new Dictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == FaultMetrics.MeterName && instrument.Name == "fpgaaccel.device.state_transitions")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "state")
                {
                    lock (counts)
                    {
                        counts[(string)tag.Value!] = counts.GetValueOrDefault((string)tag.Value!) + value;
                    }
                }
            }
        });
        listener.Start();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { LoggerFactory = logs });
        backend.Device.InjectFatal(FatalCause.Internal, 7);
        Assert.That(() => device.State, Is.EqualTo(DeviceState.Fatal).After(5000, 5));
        Assert.That(device.Recover(), Is.True);
        var lines = logs.Entries.Where(e => e.EventId is 80 or 81).Select(e => e.Message).ToList();
        Assert.That(lines, Has.Count.EqualTo(3), string.Join("\n", lines));
        Assert.That(lines[0], Does.Contain("Ready -> Fatal").And.Contain("Internal").And.Contain("0x00000007"));
        Assert.That(lines[1], Does.Contain("Fatal -> Recovering"));
        Assert.That(lines[2], Does.Contain("Recovering -> Ready"));
        lock (counts)
        {
            Assert.That(counts, Is.EquivalentTo(new Dictionary<string, long> { ["Fatal"] = 1, ["Recovering"] = 1, ["Ready"] = 1 }));
        }

        await Task.CompletedTask;
    }

    [Test]
    public void TheHealthThreadSleepsWhileTheDeviceIsIdle()
    {
        var backend = HoldingBackend.Create();
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { HealthCheckInterval = TimeSpan.FromMilliseconds(1) });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 8, CompletionMode.Interrupt);
        queue.NopAsync(context).AsTask().Wait(s_bound);
        Thread.Sleep(50);
        var before = device.HealthChecks;
        Thread.Sleep(300);
        Assert.That(device.HealthChecks, Is.EqualTo(before), "the health check ran while nothing waited on the device");
    }
}
