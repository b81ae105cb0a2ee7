using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Queues;

/// <summary>
/// Issue 11, defect 9: closing a queue while it is used. Submitters waiting for a credit are released with a typed
/// error, commands in flight end (bounded by the device timeout), nothing touches the rings once they are freed, and
/// every call after dispose is a typed error, never an access violation.
/// </summary>
[TestFixture(CompletionMode.Interrupt)]
[TestFixture(CompletionMode.Poll)]
public class QueueCloseTests(CompletionMode mode)
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    [Test]
    public async Task DisposeReleasesCreditWaitersAndEndsCommandsInFlight()
    {
        var backend = new SwallowingDoorbellBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = TimeSpan.FromMilliseconds(300) });
        using var context = device.CreateContext();
        var queue = device.OpenQueue(0, 2, mode);
        backend.Swallow = true; // the device never sees these commands: they stay in flight

        var inFlight = Enumerable.Range(0, 2).Select(_ => queue.NopAsync(context).AsTask()).ToArray();
        var waiting = Enumerable.Range(0, 3).Select(_ => queue.NopAsync(context).AsTask()).ToArray();
        Assert.That(waiting.Any(t => t.IsCompleted), Is.False, "two credits, five submissions: three wait");

        var dispose = Task.Run(queue.Dispose);
        Assert.That(await Task.WhenAny(dispose, Task.Delay(s_bound)), Is.SameAs(dispose), "dispose did not return");
        var all = Task.WhenAll(inFlight.Concat(waiting).Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        Assert.That(await Task.WhenAny(all, Task.Delay(s_bound)), Is.SameAs(all), "a submitter was never released");
        foreach (var t in inFlight)
        {
            Assert.That(t.Exception?.InnerException, Is.TypeOf<DeviceTimeoutException>());
        }

        foreach (var t in waiting)
        {
            Assert.That(t.Exception?.InnerException, Is.TypeOf<DisposedResourceException>(), "a credit waiter ends with the queue's typed disposed error");
        }

        Assert.That(device.FatalError, Is.Null);
    }

    [Test]
    public void CallsAfterDisposeAreTypedErrors()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var context = device.CreateContext();
        var queue = device.OpenQueue(0, 4, mode);
        queue.Dispose();
        Assert.Throws<DisposedResourceException>(() => queue.Poll(), "Poll after dispose read the freed ring");
        Assert.ThrowsAsync<DisposedResourceException>(async () => await queue.NopAsync(context));
        queue.Dispose();
    }

    // Submitters, the completion path and dispose at once: every submission ends (a result, or a typed error), the
    // process survives, and the device never writes into a freed ring.
    [Test]
    public async Task DisposeRacingSubmittersAndCompletionsEndsEverySubmission()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { DeviceTimeout = TimeSpan.FromSeconds(2) });
        using var context = device.CreateContext();
        for (var round = 0; round < 20; round++)
        {
            var queue = device.OpenQueue(0, 4, mode);
            var submissions = new List<Task>();
            var submitters = Enumerable.Range(0, 3).Select(_ => Task.Run(async () =>
            {
                for (var i = 0; i < 50; i++)
                {
                    var t = queue.NopAsync(context).AsTask();
                    lock (submissions)
                    {
                        submissions.Add(t);
                    }

                    try
                    {
                        await t;
                    }
                    catch (DisposedResourceException)
                    {
                        return;
                    }
                    catch (DeviceTimeoutException)
                    {
                        return;
                    }
                }
            })).ToArray();
            await Task.Delay(round % 3);
            queue.Dispose();
            var all = Task.WhenAll(submitters);
            Assert.That(await Task.WhenAny(all, Task.Delay(s_bound)), Is.SameAs(all), $"round {round}: a submitter never ended");
            Task[] ended;
            lock (submissions)
            {
                ended = [.. submissions];
            }

            foreach (var t in ended)
            {
                Assert.That(t.IsCompleted, Is.True);
                Assert.That(t.Exception?.InnerException, Is.Null.Or.TypeOf<DisposedResourceException>().Or.TypeOf<DeviceTimeoutException>());
            }
        }

        Assert.That(device.FatalError, Is.Null, "the device wrote into a freed ring");
    }

    /// <summary>Drops SQ_TAIL doorbells while asked to: commands the driver posted that the device never sees.</summary>
    private sealed class SwallowingDoorbellBackend(IDeviceBackend inner) : DelegatingBackend(inner)
    {
        public bool Swallow { get; set; }

        public override void Write64(uint offset, ulong value)
        {
            if (Swallow && offset == Fa1Registers.Queue(0, Fa1Registers.SqTail))
            {
                return;
            }

            base.Write64(offset, value);
        }
    }
}
