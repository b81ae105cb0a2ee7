using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using FpgaAccel.FirmwareInterface;
using NUnit.Framework;

namespace FpgaAccel.Tests.FirmwareInterface;

/// <summary>Every record the device and driver exchange, against the spec's tables (sections 4.1, 4.4, 5).</summary>
public class LayoutTests
{
    [Test]
    public void FaultRecordMatchesSpec44()
    {
        Assert.That(Unsafe.SizeOf<FaultRecord>(), Is.EqualTo(32));
        Assert.That(Marshal.SizeOf<FaultRecord>(), Is.EqualTo(32));
        Assert.Multiple(() =>
        {
            Assert.That(Offset<FaultRecord>(nameof(FaultRecord.Dva)), Is.EqualTo(0));
            Assert.That(Offset<FaultRecord>(nameof(FaultRecord.Tag)), Is.EqualTo(8));
            Assert.That(Offset<FaultRecord>(nameof(FaultRecord.Context)), Is.EqualTo(10));
            Assert.That(Offset<FaultRecord>(nameof(FaultRecord.Flags)), Is.EqualTo(11));
            Assert.That(Offset<FaultRecord>(nameof(FaultRecord.Queue)), Is.EqualTo(12));
            Assert.That(Offset<FaultRecord>(nameof(FaultRecord.Reserved0)), Is.EqualTo(14));
            Assert.That(Offset<FaultRecord>(nameof(FaultRecord.Cycle)), Is.EqualTo(16));
            Assert.That(Offset<FaultRecord>(nameof(FaultRecord.Sequence)), Is.EqualTo(24));
            Assert.That(Offset<FaultRecord>(nameof(FaultRecord.Reserved1)), Is.EqualTo(28));
        });
    }

    [Test]
    public void DescriptorMatchesSpec5()
    {
        Assert.That(Unsafe.SizeOf<SubmissionDescriptor>(), Is.EqualTo(64));
        Assert.That(Marshal.SizeOf<SubmissionDescriptor>(), Is.EqualTo(64));
        Assert.Multiple(() =>
        {
            Assert.That(Offset<SubmissionDescriptor>(nameof(SubmissionDescriptor.Opcode)), Is.EqualTo(0));
            Assert.That(Offset<SubmissionDescriptor>(nameof(SubmissionDescriptor.Context)), Is.EqualTo(1));
            Assert.That(Offset<SubmissionDescriptor>(nameof(SubmissionDescriptor.Flags)), Is.EqualTo(2));
            Assert.That(Offset<SubmissionDescriptor>(nameof(SubmissionDescriptor.Tag)), Is.EqualTo(4));
            Assert.That(Offset<SubmissionDescriptor>(nameof(SubmissionDescriptor.Source)), Is.EqualTo(8));
            Assert.That(Offset<SubmissionDescriptor>(nameof(SubmissionDescriptor.Destination)), Is.EqualTo(16));
            Assert.That(Offset<SubmissionDescriptor>(nameof(SubmissionDescriptor.Length)), Is.EqualTo(24));
            Assert.That(Offset<SubmissionDescriptor>(nameof(SubmissionDescriptor.Pattern)), Is.EqualTo(32));
            Assert.That(Offset<SubmissionDescriptor>(nameof(SubmissionDescriptor.Reserved0)), Is.EqualTo(SubmissionDescriptor.ReservedOffset));
            Assert.That(SubmissionDescriptor.ReservedOffset + SubmissionDescriptor.ReservedLength, Is.EqualTo(64));
        });
    }

    [Test]
    public void CompletionMatchesSpec5()
    {
        Assert.That(Unsafe.SizeOf<CompletionRecord>(), Is.EqualTo(32));
        Assert.That(Marshal.SizeOf<CompletionRecord>(), Is.EqualTo(32));
        Assert.Multiple(() =>
        {
            Assert.That(Offset<CompletionRecord>(nameof(CompletionRecord.Tag)), Is.EqualTo(0));
            Assert.That(Offset<CompletionRecord>(nameof(CompletionRecord.StatusAndPhase)), Is.EqualTo(4));
            Assert.That(Offset<CompletionRecord>(nameof(CompletionRecord.Faults)), Is.EqualTo(6));
            Assert.That(Offset<CompletionRecord>(nameof(CompletionRecord.Result)), Is.EqualTo(8));
            Assert.That(Offset<CompletionRecord>(nameof(CompletionRecord.StartCycle)), Is.EqualTo(16));
            Assert.That(Offset<CompletionRecord>(nameof(CompletionRecord.EndCycle)), Is.EqualTo(24));
        });
    }

    [Test]
    public void CompletionSplitsStatusAndPhase()
    {
        var c = new CompletionRecord { StatusAndPhase = 0x8000 | (ushort)CompletionStatus.DmaError };
        Assert.That(c.Status, Is.EqualTo(CompletionStatus.DmaError));
        Assert.That(c.Phase, Is.True);
        c.StatusAndPhase = (ushort)CompletionStatus.Fault;
        Assert.That(c.Phase, Is.False);
    }

    [Test]
    public void CompletionBytesAreLittleEndianAtSpecOffsets()
    {
        var c = new CompletionRecord { Tag = 0x11223344, StatusAndPhase = 0x8001, Faults = 0x0203, Result = 0x0102030405060708, StartCycle = 5, EndCycle = 9 };
        var bytes = MemoryMarshal.AsBytes(new ReadOnlySpan<CompletionRecord>(in c)).ToArray();
        Assert.That(bytes[0..4], Is.EqualTo(new byte[] { 0x44, 0x33, 0x22, 0x11 }));
        Assert.That(bytes[4..6], Is.EqualTo(new byte[] { 0x01, 0x80 }));
        Assert.That(bytes[6..8], Is.EqualTo(new byte[] { 0x03, 0x02 }));
        Assert.That(bytes[8], Is.EqualTo(0x08));
        Assert.That(bytes[16], Is.EqualTo(5));
        Assert.That(bytes[24], Is.EqualTo(9));
    }

    [Test]
    public void CompletionCreatePacksStatusAndPhase()
    {
        var c = CompletionRecord.Create(0x11223344, CompletionStatus.DmaError, phase: true, faults: 7, result: 0xE3069283, startCycle: 5, endCycle: 9);
        Assert.Multiple(() =>
        {
            Assert.That(c.StatusAndPhase, Is.EqualTo(0x8003));
            Assert.That(c.Status, Is.EqualTo(CompletionStatus.DmaError));
            Assert.That(c.Phase, Is.True);
            Assert.That(c.Tag, Is.EqualTo(0x11223344u));
            Assert.That(c.Faults, Is.EqualTo(7));
            Assert.That(c.Result, Is.EqualTo(0xE3069283UL));
            Assert.That(c.StartCycle, Is.EqualTo(5UL));
            Assert.That(c.EndCycle, Is.EqualTo(9UL));
        });
        Assert.That(CompletionRecord.Create(1, CompletionStatus.Fault, phase: false, 1, 0, 0, 0).StatusAndPhase, Is.EqualTo(0x0001));
        Assert.That(CompletionRecord.StatusMask | CompletionRecord.PhaseBit, Is.EqualTo(0xFFFF));
    }

    [TestCase(0UL, 1, true)]
    [TestCase(1UL, 1, true)]
    [TestCase(2UL, 1, false)]
    [TestCase(4UL, 1, true)]
    [TestCase(255UL, 8, true)]
    [TestCase(256UL, 8, false)]
    [TestCase(512UL, 8, true)]
    public void PhaseIsOneOnTheFirstLapAndTogglesEachLap(ulong count, int log2, bool phase) =>
        Assert.That(CompletionRecord.PhaseOf(count, log2), Is.EqualTo(phase));

    [Test]
    public void PublishWritesEveryField()
    {
        var slot = CompletionRecord.Create(1, CompletionStatus.Ok, phase: false, 0, 0, 0, 0);
        var record = CompletionRecord.Create(0xCAFE, CompletionStatus.Fault, phase: true, faults: 2, result: 3, startCycle: 4, endCycle: 5);
        CompletionRecord.Publish(ref slot, record);
        Assert.That(MemoryMarshal.AsBytes(new ReadOnlySpan<CompletionRecord>(in slot)).ToArray(),
            Is.EqualTo(MemoryMarshal.AsBytes(new ReadOnlySpan<CompletionRecord>(in record)).ToArray()));
    }

    [TestCase(0x0000_1234_5678_9ABCUL, false, 0x0000_0000_4000_0000UL, 0x0000_0000_4000_0000UL)]
    [TestCase(0x0000_1234_5678_9ABCUL, true, 0x0000_0000_4000_0000UL, 0x0000_0000_4018_9000UL)]
    [TestCase(0x0000_0000_003F_F000UL, true, 0x0000_0000_4012_3000UL, 0x0000_0000_401F_F000UL)]
    public void LeafPageAddressIgnoresA2MiBLeafsLowBits(ulong dva, bool huge, ulong leafAddress, ulong page)
    {
        // spec 4.1 and D11: a 2 MiB leaf maps DVA[20:12] onto its 2 MiB-aligned address; bits [20:12] of the entry are ignored.
        var leaf = PageTableEntry.Create(leafAddress, PteFlags.Valid | PteFlags.Read | (huge ? PteFlags.Leaf : 0));
        Assert.That(leaf.LeafPageAddress(dva, huge), Is.EqualTo(page));
    }

    [TestCase(0, 39)]
    [TestCase(1, 30)]
    [TestCase(2, 21)]
    [TestCase(3, 12)]
    public void LevelShiftIsTheLowestIndexBit(int level, int shift) => Assert.That(PageTableFormat.LevelShift(level), Is.EqualTo(shift));

    [Test]
    public void PageTableEntryMatchesSpec41()
    {
        Assert.That(Unsafe.SizeOf<PageTableEntry>(), Is.EqualTo(8));
        var e = PageTableEntry.Create(0x0000_1234_5678_9000, PteFlags.Valid | PteFlags.Read | PteFlags.Write, software: 0xABC0_0000_0000_0FF0);
        Assert.Multiple(() =>
        {
            Assert.That(e.Raw & 0xF, Is.EqualTo(0x7UL));
            Assert.That(e.Address, Is.EqualTo(0x0000_1234_5678_9000UL));
            Assert.That(e.Software, Is.EqualTo(0xABC0_0000_0000_0FF0UL));
            Assert.That(e.Valid && e.Readable && e.Writable, Is.True);
            Assert.That(e.Malformed, Is.False);
        });
        Assert.That(PageTableEntry.Create(0x1000, PteFlags.Valid | PteFlags.Write).Malformed, Is.True, "W without R is malformed");
        Assert.That(PageTableEntry.AddressMask | PageTableEntry.SoftwareMask | 0xF, Is.EqualTo(ulong.MaxValue), "the fields cover all 64 bits");
        Assert.That(PageTableEntry.AddressMask & PageTableEntry.SoftwareMask, Is.Zero);
    }

    [TestCase(0x0000_7FFF_FFFF_F000UL, 0, 255)]
    [TestCase(0x0000_7FFF_FFFF_F000UL, 3, 511)]
    [TestCase(0x0000_0080_0000_0000UL, 0, 1)]
    [TestCase(0x0000_0000_4000_0000UL, 1, 1)]
    [TestCase(0x0000_0000_0020_0000UL, 2, 1)]
    [TestCase(0x0000_0000_0000_1000UL, 3, 1)]
    public void PageTableIndexUsesSpecBitRanges(ulong dva, int level, int index) =>
        Assert.That(PageTableFormat.Index(dva, level), Is.EqualTo(index));

    private static int Offset<T>(string field) => (int)Marshal.OffsetOf<T>(field);
}
