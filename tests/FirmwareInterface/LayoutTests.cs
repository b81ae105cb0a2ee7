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
