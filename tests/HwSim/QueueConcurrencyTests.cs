using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>
/// Spec 5 within one queue (decision D35): commands start in order; without FENCE they overlap and may
/// complete out of order; with FENCE a command starts only once every earlier one has completed; at most
/// <see cref="ModelOptions.CommandsInFlight"/> run at once, and each stalled access holds a fault of its own.
/// </summary>
[TestFixture(ClockMode.Virtual)]
[TestFixture(ClockMode.Wall)]
public class QueueConcurrencyTests
{
    private const int Ctx = 2;
    private readonly ClockMode _clock;

    public QueueConcurrencyTests(ClockMode clock) => _clock = clock;

    [Test]
    public void ALaterCommandOverlapsAnEarlierOneAndCompletesFirst()
    {
        using var rig = NewRig();
        var slow = rig.MapBuffer(Ctx, 4096);
        using var release = new ManualResetEventSlim();
        HoldAccessesTo(rig, slow.Dva, release);

        rig.Submit(0, DmaRig.Fill(slow.Dva, 4096, 1, Ctx, tag: 1), DmaRig.Nop(tag: 2));
        rig.WaitTail(0, 1);
        Assert.That(rig.PeekCompletion(0, 0).Tag, Is.EqualTo(2u), "the NOP ran while the FILL was held: out of order");
        release.Set();
        var first = rig.NextCompletion(0);
        var second = rig.NextCompletion(0);
        Assert.That((first.Tag, second.Tag), Is.EqualTo((2u, 1u)));
        Assert.That(second.Status, Is.EqualTo(CompletionStatus.Ok));
        if (_clock == ClockMode.Virtual)
        {
            // D35: the second descriptor is read right after the first command started; they overlap in modelled time.
            Assert.That(first.StartCycle, Is.EqualTo(second.StartCycle + rig.Model.Options.DmaReadCycles));
            Assert.That(first.EndCycle, Is.LessThan(second.EndCycle));
        }
    }

    [Test]
    public void AFenceCommandStartsOnlyAfterEveryEarlierCommandCompleted()
    {
        using var rig = NewRig();
        var slow = rig.MapBuffer(Ctx, 4096);
        using var release = new ManualResetEventSlim();
        HoldAccessesTo(rig, slow.Dva, release);

        rig.Submit(0, DmaRig.Fill(slow.Dva, 4096, 1, Ctx, tag: 1), DmaRig.Nop(tag: 2, flags: DescriptorFlags.Fence), DmaRig.Nop(tag: 3));
        Thread.Sleep(50);
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.SqHead)), Is.EqualTo(1UL), "the FENCE command has not started, nor anything after it");
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.Zero);
        release.Set();
        var records = Enumerable.Range(0, 3).Select(_ => rig.NextCompletion(0)).ToArray();
        Assert.That(records[0].Tag, Is.EqualTo(1u));
        Assert.That(records.Skip(1).Select(r => r.Tag), Is.EquivalentTo(new[] { 2u, 3u }));
        if (_clock == ClockMode.Virtual)
        {
            Assert.That(records.Single(r => r.Tag == 2).StartCycle, Is.GreaterThanOrEqualTo(records[0].EndCycle), "the FENCE waited in modelled time too");
        }
    }

    [Test]
    public void NoMoreThanCommandsInFlightRunAtOnce()
    {
        using var rig = NewRig(new ModelOptions { CommandsInFlight = 2 });
        var a = rig.MapBuffer(Ctx, 4096);
        var b = rig.MapBuffer(Ctx, 4096);
        using var release = new ManualResetEventSlim();
        rig.Model.DataAccessHook = access =>
        {
            if (access.Dva == a.Dva || access.Dva == b.Dva)
            {
                release.Wait(TimeSpan.FromSeconds(20));
            }
        };

        rig.Submit(0, DmaRig.Fill(a.Dva, 64, 1, Ctx, tag: 1), DmaRig.Fill(b.Dva, 64, 2, Ctx, tag: 2), DmaRig.Nop(tag: 3));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (rig.Read(Fa1Registers.Queue(0, Fa1Registers.SqHead)) < 2 && watch.Elapsed < TimeSpan.FromSeconds(20))
        {
            Thread.Yield();
        }

        Thread.Sleep(50);
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.SqHead)), Is.EqualTo(2UL), "two in flight, the third waits");
        Assert.That(rig.Model.EngineThreads, Is.EqualTo(2), "one lane per command in flight");
        release.Set();
        Assert.That(Enumerable.Range(0, 3).Select(_ => rig.NextCompletion(0).Tag), Is.EquivalentTo(new[] { 1u, 2u, 3u }));
    }

    [Test]
    public void OneCommandInFlightRunsTheQueueInOrderBackToBack()
    {
        using var rig = NewRig(new ModelOptions { CommandsInFlight = 1 });
        var buffer = rig.MapBuffer(Ctx, 64 << 10);
        rig.Submit(0, DmaRig.Fill(buffer.Dva, 64 << 10, 1, Ctx, tag: 1), DmaRig.Nop(tag: 2), DmaRig.Nop(tag: 3));
        var records = Enumerable.Range(0, 3).Select(_ => rig.NextCompletion(0)).ToArray();
        Assert.That(records.Select(r => r.Tag), Is.EqualTo(new[] { 1u, 2u, 3u }));
        if (_clock == ClockMode.Virtual)
        {
            Assert.That(records[1].StartCycle, Is.GreaterThanOrEqualTo(records[0].EndCycle), "the window of one: no overlap");
        }
    }

    [Test]
    public void EachCommandInFlightHoldsAFaultOfItsOwn()
    {
        using var rig = NewRig();
        rig.ConfigureFaultRing();
        const ulong first = 0x4400_0000_0000;
        const ulong second = 0x4500_0000_0000;
        rig.Submit(0, DmaRig.Fill(first, 64, 1, Ctx, tag: 1), DmaRig.Fill(second, 64, 2, Ctx, tag: 2));
        var records = new[] { rig.WaitFaultRecord(0), rig.WaitFaultRecord(1) };
        Assert.Multiple(() =>
        {
            Assert.That(records.Select(r => r.Dva), Is.EquivalentTo(new[] { first, second }), "two faults of one queue outstanding at once");
            Assert.That(records.All(r => r.Queue == 0), Is.True);
            Assert.That(records[0].Tag, Is.Not.EqualTo(records[1].Tag), "each its own tag");
        });

        // Answer the second command's fault first: it completes first.
        var late = records.Single(r => r.Dva == second);
        var page = rig.Allocate(4096);
        rig.Map(Ctx, second, page, 4096, PteFlags.Read | PteFlags.Write);
        rig.Respond(late, FaultResponseCode.Retry);
        Assert.That(rig.NextCompletion(0).Tag, Is.EqualTo(2u));
        rig.Respond(records.Single(r => r.Dva == first), FaultResponseCode.Abort);
        var c = rig.NextCompletion(0);
        Assert.That((c.Tag, c.Status), Is.EqualTo((1u, CompletionStatus.Fault)));
        Assert.That(rig.Model.Oracle.LostFaults, Is.Zero);
    }

    // The hook holds every data access to dva until release is set (so a command stays in flight).
    private static void HoldAccessesTo(DmaRig rig, ulong dva, ManualResetEventSlim release) =>
        rig.Model.DataAccessHook = access =>
        {
            if (access.Dva == dva)
            {
                release.Wait(TimeSpan.FromSeconds(20));
            }
        };

    private DmaRig NewRig(ModelOptions? options = null)
    {
        var rig = new DmaRig(_clock, options: options);
        rig.ConfigureQueue(0);
        rig.EnableContext(Ctx);
        return rig;
    }
}
