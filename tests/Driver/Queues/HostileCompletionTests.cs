using System.Runtime.InteropServices;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Queues;

/// <summary>
/// Issue 11, defect 10: a completion ring the device does not write as the spec says. A slot whose PHASE flips
/// without the device having produced it (a glitch) must not be consumed: the driver never writes CQ_HEAD past
/// CQ_TAIL (the device would then hold its completions, decision D22, and the queue would deadlock); it is counted and
/// logged, and the queue goes on.
/// </summary>
[TestFixture(CompletionMode.Interrupt)]
[TestFixture(CompletionMode.Poll)]
public class HostileCompletionTests(CompletionMode mode)
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    [Test]
    public async Task APhaseGlitchIsNotConsumedAndTheQueueGoesOn()
    {
        var backend = new CompletionRingBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = TimeSpan.FromSeconds(2) });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 8, mode);
        for (var i = 0; i < 3; i++)
        {
            Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        }

        // The slot at CQ_TAIL shows this lap's PHASE with a tag nobody submitted, and CQ_TAIL does not move.
        backend.ForgeAtTail(tag: 0xDEAD_0007);
        queue.Poll();
        Assert.That(backend.HeadPastTail, Is.False, "the driver wrote CQ_HEAD past CQ_TAIL");
        Assert.That(queue.PhaseGlitches, Is.GreaterThanOrEqualTo(1));

        for (var i = 0; i < 12; i++)
        {
            var result = await queue.NopAsync(context).AsTask().WaitAsync(s_bound);
            Assert.That(result.Status, Is.EqualTo(CompletionStatus.Ok), $"command {i} after the glitch");
        }

        Assert.That(backend.HeadPastTail, Is.False);
    }

    // The device really produced a record (CQ_TAIL passed it) whose tag names no command: consumed, counted, and the
    // queue goes on.
    [Test]
    public async Task AProducedRecordWithABadTagIsConsumedAndCounted()
    {
        var model = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        using var device = FpgaDevice.Open(model);
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 8, mode);
        Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        var tail = model.Model.Read64(Fa1Registers.Queue(0, Fa1Registers.CqTail));
        Assert.That(model.Model.InjectCompletion(0, CompletionRecord.Create(0xBEEF_0003, CompletionStatus.Ok, CompletionRecord.PhaseOf(tail, 3), 0, 0, 0, 0)), Is.True);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (queue.BadCompletions == 0 && watch.Elapsed < s_bound)
        {
            queue.Poll();
            Thread.Sleep(1);
        }

        Assert.That(queue.BadCompletions, Is.EqualTo(1));
        for (var i = 0; i < 10; i++)
        {
            Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        }

        Assert.That(model.Model.Read64(Fa1Registers.Queue(0, Fa1Registers.CqHead)), Is.EqualTo(model.Model.Read64(Fa1Registers.Queue(0, Fa1Registers.CqTail))));
    }

    // A completion for a command in flight with a status spec 5 does not have: the command fails with a typed error
    // rather than hand the caller an undefined status.
    [Test]
    public async Task ALiveTagWithAStatusSpecFiveDoesNotAllowFailsItsCommand()
    {
        var model = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        var backend = new CompletionRingBackend(model) { SwallowDoorbells = true };
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = TimeSpan.FromSeconds(2) });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 8, mode);
        var command = queue.NopAsync(context).AsTask();
        var tag = backend.LastDescriptorTag();
        var tail = model.Model.Read64(Fa1Registers.Queue(0, Fa1Registers.CqTail));
        Assert.That(model.Model.InjectCompletion(0, CompletionRecord.Create(tag, (CompletionStatus)0x55, CompletionRecord.PhaseOf(tail, 3), 0, 0, 0, 0)), Is.True);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!command.IsCompleted && watch.Elapsed < s_bound)
        {
            queue.Poll();
            Thread.Sleep(1);
        }

        var ex = Assert.ThrowsAsync<DeviceProtocolException>(async () => await command)!;
        Assert.That(ex.Message, Does.Contain("status 85"));
        Assert.That(queue.BadCompletions, Is.EqualTo(1));
    }

    /// <summary>Writes forged records into queue 0's completion ring and watches every CQ_HEAD the driver writes.</summary>
    private sealed class CompletionRingBackend(IDeviceBackend inner) : DelegatingBackend(inner)
    {
        private ulong _cqBase;
        private int _cqLog2;

        // With the queue idle, CQ_HEAD may not be ahead of CQ_TAIL. (While a completion is being posted it may be for a
        // moment: the device writes the record before it advances CQ_TAIL, and the driver may harvest in between.)
        public bool HeadPastTail => Inner.Read64(Fa1Registers.Queue(0, Fa1Registers.CqHead)) > Inner.Read64(Fa1Registers.Queue(0, Fa1Registers.CqTail));

        private ulong _sqBase;
        private ulong _sqTail;

        public bool SwallowDoorbells { get; init; }

        // The tag the driver gave its last descriptor, read from the submission ring.
        public unsafe uint LastDescriptorTag()
        {
            var ring = (SubmissionDescriptor*)(nint)(_sqBase - FpgaAccel.Driver.Dma.IovaLayout.HighDelta);
            return ring[(int)((_sqTail - 1) & 7)].Tag;
        }

        public unsafe void ForgeAtTail(uint tag)
        {
            var tail = Inner.Read64(Fa1Registers.Queue(0, Fa1Registers.CqTail));
            var slot = (CompletionRecord*)(nint)(_cqBase - FpgaAccel.Driver.Dma.IovaLayout.HighDelta) + (int)(tail & ((1UL << _cqLog2) - 1));
            var record = CompletionRecord.Create(tag, CompletionStatus.Ok, CompletionRecord.PhaseOf(tail, _cqLog2), 0, 0, 0, 0);
            CompletionRecord.Publish(ref *slot, record);
        }

        public override void Write64(uint offset, ulong value)
        {
            if (offset == Fa1Registers.Queue(0, Fa1Registers.SqBase))
            {
                _sqBase = value;
            }
            else if (offset == Fa1Registers.Queue(0, Fa1Registers.SqTail))
            {
                _sqTail = value;
                if (SwallowDoorbells)
                {
                    return;
                }
            }
            else if (offset == Fa1Registers.Queue(0, Fa1Registers.CqBase))
            {
                _cqBase = value;
            }
            else if (offset == Fa1Registers.Queue(0, Fa1Registers.CqLog2))
            {
                _cqLog2 = (int)value;
            }

            base.Write64(offset, value);
        }
    }
}
