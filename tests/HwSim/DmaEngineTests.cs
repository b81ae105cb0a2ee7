using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>Spec 5 commands through the device MMU and the IOMMU, checked against the CPU, under both clocks.</summary>
[TestFixture(ClockMode.Virtual)]
[TestFixture(ClockMode.Wall)]
public class DmaEngineTests
{
    private const int Ctx = 3;
    private readonly ClockMode _clock;

    public DmaEngineTests(ClockMode clock) => _clock = clock;

    // (length, source offset, destination offset): one byte, unaligned, crossing 4 KiB pages,
    // crossing a 2 MiB boundary (buffers start 2 MiB aligned), and 8 MiB.
    private static readonly object[] s_sizes =
    [
        new object[] { 1UL, 0UL, 0UL },
        new object[] { 13UL, 3UL, 6UL },
        new object[] { 4096UL, 4093UL, 1UL },
        new object[] { 12_345UL, 4000UL, 7UL },
        new object[] { 300UL, (2UL << 20) - 100, (2UL << 20) - 37 },
        new object[] { (3UL << 20) + 17, 4095UL, 9UL },
        new object[] { 8UL << 20, 0UL, 0UL },
    ];

    [TestCaseSource(nameof(s_sizes))]
    public void CopyMatchesCpu(ulong length, ulong srcOffset, ulong dstOffset)
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, length + srcOffset, huge: true);
        var dst = rig.MapBuffer(Ctx, length + dstOffset + 64, huge: false);
        var source = rig.Bytes(src.Iova + srcOffset, length);
        new Random(42).NextBytes(source);
        rig.Bytes(dst.Iova, length + dstOffset + 64).Fill(0xEE);

        var c = rig.Run(0, DmaRig.Copy(src.Dva + srcOffset, dst.Dva + dstOffset, length, Ctx, tag: 0xC0FFEE));

        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(c.Tag, Is.EqualTo(0xC0FFEEu));
        Assert.That(rig.Bytes(dst.Iova + dstOffset, length).SequenceEqual(source), Is.True, "destination holds the source");
        Assert.That(rig.Bytes(dst.Iova, dstOffset).ToArray(), Is.All.EqualTo(0xEE), "nothing written before DST");
        Assert.That(rig.Bytes(dst.Iova + dstOffset + length, 64).ToArray(), Is.All.EqualTo(0xEE), "nothing written after DST+LEN");
        Assert.That(c.EndCycle, Is.GreaterThan(c.StartCycle));
    }

    [TestCaseSource(nameof(s_sizes))]
    public void FillMatchesCpu(ulong length, ulong unused, ulong dstOffset)
    {
        _ = unused;
        using var rig = NewRig();
        var dst = rig.MapBuffer(Ctx, length + dstOffset + 64);
        rig.Bytes(dst.Iova, length + dstOffset + 64).Fill(0xEE);
        const ulong pattern = 0x0807_0605_0403_0201;

        var c = rig.Run(0, DmaRig.Fill(dst.Dva + dstOffset, length, pattern, Ctx));

        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Ok));
        var expected = new byte[length];
        Reference.Fill(expected, pattern);
        Assert.That(rig.Bytes(dst.Iova + dstOffset, length).SequenceEqual(expected), Is.True);
        Assert.That(rig.Bytes(dst.Iova, dstOffset).ToArray(), Is.All.EqualTo(0xEE));
        Assert.That(rig.Bytes(dst.Iova + dstOffset + length, 64).ToArray(), Is.All.EqualTo(0xEE));
    }

    [TestCaseSource(nameof(s_sizes))]
    public void Crc32CMatchesCpu(ulong length, ulong srcOffset, ulong unused)
    {
        _ = unused;
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, length + srcOffset, PteFlags.Read);
        var data = rig.Bytes(src.Iova + srcOffset, length);
        new Random(7).NextBytes(data);

        var c = rig.Run(0, DmaRig.Crc(src.Dva + srcOffset, length, Ctx));

        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(c.Result, Is.EqualTo((ulong)Reference.Crc32C(data)));
    }

    [Test]
    public void TwoMegabyteLeavesTranslate()
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 4UL << 20, PteFlags.Read, huge: true);
        var dst = rig.MapBuffer(Ctx, 4UL << 20, huge: true);
        new Random(3).NextBytes(rig.Bytes(src.Iova, 4UL << 20));
        var c = rig.Run(0, DmaRig.Copy(src.Dva + 5, dst.Dva + 11, (4UL << 20) - 16, Ctx));
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(rig.Bytes(dst.Iova + 11, (4UL << 20) - 16).SequenceEqual(rig.Bytes(src.Iova + 5, (4UL << 20) - 16)), Is.True);
    }

    [Test]
    public void HugeLeafWithoutHuge2MCapabilityFaults()
    {
        using var rig = new DmaRig(_clock, options: new ModelOptions { Huge2M = false });
        rig.ConfigureQueue(0);
        rig.EnableContext(Ctx);
        var src = rig.MapBuffer(Ctx, 2UL << 20, PteFlags.Read, huge: true);
        var c = rig.Run(0, DmaRig.Crc(src.Dva, 64, Ctx));
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Fault), "spec 4.1: a level-2 LEAF is a 2 MiB page only with CAPS.HUGE_2M");
    }

    [Test]
    public void WriteToReadOnlyMappingFaultsAndLeavesBufferUntouched()
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 4096);
        var dst = rig.MapBuffer(Ctx, 4096, PteFlags.Read);
        rig.Bytes(src.Iova, 4096).Fill(0x55);
        rig.Bytes(dst.Iova, 4096).Fill(0xAA);

        var c = rig.Run(0, DmaRig.Copy(src.Dva, dst.Dva, 4096, Ctx));
        var fill = rig.Run(0, DmaRig.Fill(dst.Dva + 100, 10, 0, Ctx));

        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Fault));
        Assert.That(c.Faults, Is.EqualTo(1));
        Assert.That(fill.Status, Is.EqualTo(CompletionStatus.Fault));
        Assert.That(rig.Bytes(dst.Iova, 4096).ToArray(), Is.All.EqualTo(0xAA));
        Assert.That(rig.Read(Fa1Registers.Context(Ctx, Fa1Registers.CtxFaults)), Is.EqualTo(2UL));
    }

    [Test]
    public void AddingWritePermissionNeedsNoInvalidation()
    {
        using var rig = NewRig();
        var buffer = rig.MapBuffer(Ctx, 4096, PteFlags.Read);
        Assert.That(rig.Run(0, DmaRig.Crc(buffer.Dva, 64, Ctx)).Status, Is.EqualTo(CompletionStatus.Ok), "the read-only leaf is now in the TLB");
        Assert.That(rig.Run(0, DmaRig.Fill(buffer.Dva, 64, 0x42, Ctx)).Status, Is.EqualTo(CompletionStatus.Fault));

        // Spec 4.1: adding a permission is done lazily, with no invalidation.
        rig.Map(Ctx, buffer.Dva, buffer.Iova, 4096, PteFlags.Read | PteFlags.Write);
        Assert.That(rig.Run(0, DmaRig.Fill(buffer.Dva, 64, 0x42, Ctx)).Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(rig.Bytes(buffer.Iova, 1)[0], Is.EqualTo(0x42));
    }

    [Test]
    public void WriteOnlyLeafIsMalformedAndFaultsOnRead()
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 4096, PteFlags.Write);
        var c = rig.Run(0, DmaRig.Crc(src.Dva, 8, Ctx));
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Fault), "spec 4.1: W without R faults like a missing entry");
    }

    [Test]
    public void UnmappedDvaFaults()
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 4096);
        var c = rig.Run(0, DmaRig.Crc(src.Dva + 4000, 200, Ctx)); // runs into the guard page
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.Fault));
    }

    [Test]
    public void UnmappedIovaForDataCompletesDmaError()
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 4096);
        rig.Map(Ctx, 0x6000_0000_0000, DmaRig.UnmappedIova, 4096, PteFlags.Read | PteFlags.Write);
        var c = rig.Run(0, DmaRig.Copy(src.Dva, 0x6000_0000_0000, 64, Ctx));
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.DmaError));
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Zero, "a data refusal is not fatal");
        Assert.That(rig.Run(0, DmaRig.Nop()).Status, Is.EqualTo(CompletionStatus.Ok), "the queue goes on");
    }

    [Test]
    public void DisabledContextOrInvalidRootCompletesContextDisabled()
    {
        using var rig = NewRig();
        var buffer = rig.MapBuffer(Ctx, 4096);
        rig.Model.Write64(Fa1Registers.Context(Ctx, Fa1Registers.CtxCtrl), 0);
        Assert.That(rig.Run(0, DmaRig.Fill(buffer.Dva, 8, 1, Ctx)).Status, Is.EqualTo(CompletionStatus.ContextDisabled));
        Assert.That(rig.Run(0, DmaRig.Fill(buffer.Dva, 8, 1, ctx: 1)).Status, Is.EqualTo(CompletionStatus.ContextDisabled), "context 1 was never set up");
    }

    [Test]
    public void BadDescriptorsCompleteBadDesc()
    {
        using var rig = NewRig();
        var buffer = rig.MapBuffer(Ctx, 4096);
        var reserved = DmaRig.Copy(buffer.Dva, buffer.Dva + 64, 8, Ctx);
        reserved.Reserved2 = 1UL << 56;
        var unknown = DmaRig.Nop();
        unknown.Opcode = (Opcode)9;
        var overflow = DmaRig.Copy(buffer.Dva, (1UL << 48) - 4, 8, Ctx);
        var past = DmaRig.Crc(ulong.MaxValue - 3, 8, Ctx);
        var badContext = DmaRig.Fill(buffer.Dva, 8, 0, ctx: 200);
        var nopReserved = DmaRig.Nop();
        nopReserved.Reserved0 = 1;
        foreach (var d in new[] { reserved, unknown, DmaRig.Copy(buffer.Dva, buffer.Dva, 0, Ctx), DmaRig.Fill(buffer.Dva, 0, 0, Ctx), DmaRig.Crc(buffer.Dva, 0, Ctx), overflow, past, badContext, nopReserved })
        {
            Assert.That(rig.Run(0, d).Status, Is.EqualTo(CompletionStatus.BadDescriptor), $"opcode {d.Opcode} len {d.Length}");
        }

        Assert.That(rig.Run(0, DmaRig.Nop()).Status, Is.EqualTo(CompletionStatus.Ok));
    }

    [Test]
    public void GarbageDescriptorsNeverHangOrCrashTheModel()
    {
        using var rig = NewRig();
        var random = new Random(1234);
        var buffer = rig.MapBuffer(Ctx, 4096);
        for (var i = 0; i < 200; i++)
        {
            var d = new SubmissionDescriptor
            {
                Opcode = (Opcode)random.Next(6),
                Context = (byte)(random.Next(3) == 0 ? random.Next(256) : Ctx),
                Flags = (DescriptorFlags)random.Next(4),
                Tag = (uint)i,
                Source = random.Next(2) == 0 ? buffer.Dva + (ulong)random.Next(4096) : (ulong)random.NextInt64(),
                Destination = random.Next(2) == 0 ? buffer.Dva + (ulong)random.Next(4096) : (ulong)random.NextInt64(),
                Length = (ulong)random.Next(3) switch { 0 => 0, 1 => (ulong)random.Next(1, 8192), _ => (ulong)random.NextInt64() },
                Reserved1 = random.Next(8) == 0 ? 1UL : 0,
            };
            var c = rig.Run(0, d);
            Assert.That(c.Tag, Is.EqualTo((uint)i));
            Assert.That(c.Status, Is.AnyOf(CompletionStatus.Ok, CompletionStatus.Fault, CompletionStatus.BadDescriptor, CompletionStatus.ContextDisabled));
        }

        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Zero);
    }

    [Test]
    public void RingsWrapAndPhaseToggles()
    {
        using var rig = NewRig(sqLog2: 2, cqLog2: 1);
        for (var i = 0u; i < 9; i++)
        {
            var c = rig.Run(0, DmaRig.Nop(tag: i));
            Assert.That(c.Tag, Is.EqualTo(i));
            Assert.That(c.Phase, Is.EqualTo((i / 2) % 2 == 0), $"completion {i} is on lap {i / 2}");
        }

        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.SqHead)), Is.EqualTo(9UL));
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.EqualTo(9UL));
    }

    [Test]
    public void FullCompletionRingHoldsTheEngine()
    {
        using var rig = NewRig(sqLog2: 4, cqLog2: 2);
        rig.Submit(0, Enumerable.Range(0, 10).Select(i => DmaRig.Nop(tag: (uint)i)).ToArray());
        rig.WaitTail(0, 4);
        var held = Enumerable.Range(0, 4).Select(i => rig.PeekCompletion(0, (ulong)i).Tag).ToArray();
        Thread.Sleep(20);
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.EqualTo(4UL), "never more than the ring holds");
        Assert.That(Enumerable.Range(0, 4).Select(i => rig.PeekCompletion(0, (ulong)i).Tag), Is.EqualTo(held), "no slot was overwritten");
        Assert.That(held, Is.Unique);

        // Spec 5: without FENCE commands of one queue may overlap and complete in any order (D35).
        var tags = Enumerable.Range(0, 10).Select(_ => rig.NextCompletion(0).Tag).ToArray();
        Assert.That(tags, Is.EquivalentTo(Enumerable.Range(0, 10).Select(i => (uint)i)), "every completion arrives once the driver consumes");
    }

    [Test]
    public void SeveralQueuesRunConcurrently()
    {
        const int queues = 4;
        const int commands = 12;
        using var rig = NewRig();
        var buffers = new (ulong Dva, ulong Iova)[queues, 2];
        for (var q = 0; q < queues; q++)
        {
            if (q != 0)
            {
                rig.ConfigureQueue(q);
            }

            buffers[q, 0] = rig.MapBuffer(Ctx, 64 << 10);
            buffers[q, 1] = rig.MapBuffer(Ctx, 64 << 10);
            new Random(q).NextBytes(rig.Bytes(buffers[q, 0].Iova, 64 << 10));
        }

        // Every doorbell rings while ENABLE is clear, then the queues start together: on the virtual
        // clock their doorbell cycles do not depend on how fast the host ran the first queue.
        rig.Model.Write64(Fa1Registers.Ctrl, 0);
        for (var q = 0; q < queues; q++)
        {
            rig.Submit(q, Enumerable.Range(0, commands)
                .Select(i => DmaRig.Copy(buffers[q, 0].Dva + ((ulong)i << 12), buffers[q, 1].Dva + ((ulong)i << 12), 4096 + 13, Ctx, tag: (uint)i))
                .ToArray());
        }

        rig.Model.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Enable);
        var records = new List<CompletionRecord>[queues];
        for (var q = 0; q < queues; q++)
        {
            records[q] = [.. Enumerable.Range(0, commands).Select(_ => rig.NextCompletion(q))];
            Assert.That(records[q].Select(r => r.Tag), Is.EquivalentTo(Enumerable.Range(0, commands).Select(i => (uint)i)), "each once (in any order without FENCE, D35)");
            Assert.That(records[q].All(r => r.Status == CompletionStatus.Ok), Is.True);
            var length = (commands - 1) * 4096 + 4096 + 13;
            Assert.That(rig.Bytes(buffers[q, 1].Iova, (ulong)length).SequenceEqual(rig.Bytes(buffers[q, 0].Iova, (ulong)length)), Is.True);
        }

        if (_clock == ClockMode.Virtual)
        {
            // Per-queue timelines: each queue's first command starts at its doorbell, not after the others' work.
            var lastEndOfQueue0 = records[0].Max(r => r.EndCycle);
            Assert.That(records[1].Min(r => r.StartCycle), Is.LessThan(lastEndOfQueue0), "queues overlap in modelled time");
        }
    }

    [Test]
    public void CompletionInterruptOnlyForIrqFlag()
    {
        using var rig = NewRig();
        using var fault = EventFd.Create();
        using var completion = EventFd.Create();
        using var error = EventFd.Create();
        rig.Model.ConnectInterrupts([fault, completion, error]);
        rig.Run(0, DmaRig.Nop());
        Assert.That(completion.TryRead(out _), Is.False);
        rig.Run(0, DmaRig.Nop(flags: DescriptorFlags.Irq | DescriptorFlags.Fence));
        Assert.That(completion.TryRead(out var n), Is.True);
        Assert.That(n, Is.EqualTo(1UL));
        Assert.That(rig.Read(Fa1Registers.IrqStatus), Is.EqualTo((ulong)InterruptCauses.Completion));
        rig.Model.DisconnectInterrupts();
    }

    [Test]
    public void ClearingEnableStopsNewCommands()
    {
        using var rig = NewRig();
        rig.Model.Write64(Fa1Registers.Ctrl, 0);
        rig.Submit(0, DmaRig.Nop(1));
        Thread.Sleep(20);
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.SqHead)), Is.Zero, "no command starts while ENABLE is clear");
        rig.Model.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Enable);
        Assert.That(rig.NextCompletion(0).Tag, Is.EqualTo(1u));
    }

    [Test]
    public void SecondPassHitsTheTlb()
    {
        using var rig = NewRig();
        var src = rig.MapBuffer(Ctx, 16 << 10, PteFlags.Read);
        rig.Run(0, DmaRig.Crc(src.Dva, 16 << 10, Ctx));
        var hits = rig.Read(Fa1Registers.TlbHits);
        var misses = rig.Read(Fa1Registers.TlbMisses);
        var walks = rig.Read(Fa1Registers.Walks);
        Assert.That(misses, Is.EqualTo(4UL), "four pages, four misses");
        Assert.That(walks, Is.EqualTo(4UL));
        rig.Run(0, DmaRig.Crc(src.Dva, 16 << 10, Ctx));
        Assert.That(rig.Read(Fa1Registers.TlbHits), Is.EqualTo(hits + 4));
        Assert.That(rig.Read(Fa1Registers.TlbMisses), Is.EqualTo(misses), "no new miss on the second pass");
    }

    private DmaRig NewRig(int sqLog2 = 6, int cqLog2 = 6)
    {
        var rig = new DmaRig(_clock);
        rig.ConfigureQueue(0, sqLog2, cqLog2);
        rig.EnableContext(Ctx);
        return rig;
    }
}
