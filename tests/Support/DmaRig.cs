using System.Diagnostics;
using System.Runtime.InteropServices;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Support;

/// <summary>
/// What the driver will do, built by hand for model tests: an arena of anonymous memory mapped
/// through the model's IOMMU, 4-level page tables written entry by entry, and queue rings.
/// IOVA = <see cref="IovaBase"/> + offset in the arena.
/// </summary>
internal sealed unsafe class DmaRig : IDisposable
{
    public const ulong IovaBase = 0x1_0000_0000;

    /// <summary>IOVA the IOMMU does not map.</summary>
    public const ulong UnmappedIova = 0x7_0000_0000;

    /// <summary>Where <see cref="MapSeparately"/> puts its IOMMU mappings (above the arena, below <see cref="UnmappedIova"/>).</summary>
    public const ulong SeparateIovaBase = 0x5_0000_0000;

    private readonly MemoryMapping _arena;
    private readonly List<MemoryMapping> _separate = [];
    private ulong _nextSeparateIova = SeparateIovaBase;
    private readonly Dictionary<int, ulong> _roots = [];
    private readonly Dictionary<int, QueueRings> _queues = [];
    private ulong _next;
    private ulong _nextDva = 0x7F00_0000_0000;

    private readonly bool _owned = true;

    public DmaRig(ClockMode clock, ulong arenaBytes = 32UL << 20, ModelOptions? options = null)
    {
        Model = new Fa1Model((options ?? new ModelOptions()) with { Clock = clock });
        _arena = MemoryMapping.Anonymous(arenaBytes);
        Model.Iommu.Map(IovaBase, _arena.Address, arenaBytes, DmaAccess.ReadWrite);
        Model.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Enable);
    }

    /// <summary>
    /// A rig over memory and a model someone else owns and maps (a vfio-user client's file, which the server maps in
    /// the model's IOMMU at <see cref="IovaBase"/>): page tables and rings are written into <paramref name="arena"/>.
    /// </summary>
    public DmaRig(Fa1Model model, MemoryMapping arena)
    {
        Model = model;
        _arena = arena;
        _owned = false;
        Model.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Enable);
    }

    public Fa1Model Model { get; }

    public nint HostOf(ulong iova) => _arena.Address + (nint)(iova - IovaBase);

    public Span<byte> Bytes(ulong iova, ulong length) => new((void*)HostOf(iova), checked((int)length));

    /// <summary>Zeroed arena memory, <paramref name="align"/>-aligned; returns its IOVA.</summary>
    public ulong Allocate(ulong bytes, ulong align = PageTableFormat.PageSize)
    {
        _next = (_next + align - 1) & ~(align - 1);
        var iova = IovaBase + _next;
        _next += (bytes + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1);
        Assert.That(_next, Is.LessThanOrEqualTo(_arena.Length), "test arena too small");
        Bytes(iova, bytes).Clear();
        return iova;
    }

    /// <summary>Gives <paramref name="ctx"/> a page table and enables it.</summary>
    public void EnableContext(int ctx, bool noFault = false)
    {
        var root = Allocate(PageTableFormat.PageSize);
        _roots[ctx] = root;
        Model.Write64(Fa1Registers.Context(ctx, Fa1Registers.CtxRoot), ContextRoot.Create(root, valid: true).Raw);
        Model.Write64(Fa1Registers.Context(ctx, Fa1Registers.CtxCtrl),
            (ulong)(ContextControl.Enable | (noFault ? ContextControl.NoFault : ContextControl.None)));
    }

    /// <summary>Maps DVA range to IOVA range with 4 KiB leaves (or 2 MiB leaves when <paramref name="huge"/>).</summary>
    public void Map(int ctx, ulong dva, ulong iova, ulong length, PteFlags permissions, bool huge = false)
    {
        var size = huge ? PageTableFormat.HugePageSize : PageTableFormat.PageSize;
        Assert.That(dva % size == 0 && iova % size == 0 && length % size == 0, "test mapping must be aligned");
        for (var off = 0UL; off < length; off += size)
        {
            SetLeaf(ctx, dva + off, PageTableEntry.Create(iova + off, PteFlags.Valid | permissions | (huge ? PteFlags.Leaf : 0)), huge);
        }
    }

    /// <summary>
    /// Allocates arena memory and maps it at a fresh DVA of <paramref name="ctx"/>; an unmapped guard
    /// page follows each buffer. Returns the buffer's DVA and IOVA.
    /// </summary>
    public (ulong Dva, ulong Iova) MapBuffer(int ctx, ulong bytes, PteFlags permissions = PteFlags.Read | PteFlags.Write, bool huge = false)
    {
        var size = huge ? PageTableFormat.HugePageSize : PageTableFormat.PageSize;
        var length = (bytes + size - 1) & ~(size - 1);
        var iova = Allocate(length, size);
        _nextDva = (_nextDva + size - 1) & ~(size - 1);
        var dva = _nextDva;
        _nextDva += length + PageTableFormat.PageSize;
        Map(ctx, dva, iova, length, permissions, huge);
        return (dva, iova);
    }

    /// <summary>
    /// Memory of its own, mapped through the IOMMU as one mapping of its own (type1v2 unmaps whole mappings,
    /// so what a test unmaps must be mapped apart from the arena), at a fresh DVA of <paramref name="ctx"/>.
    /// The rig frees it after the model on dispose.
    /// </summary>
    public (ulong Dva, ulong Iova, MemoryMapping Memory) MapSeparately(int ctx, ulong bytes, PteFlags permissions = PteFlags.Read | PteFlags.Write)
    {
        var length = (bytes + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1);
        var memory = MemoryMapping.Anonymous(length);
        _separate.Add(memory);
        var iova = _nextSeparateIova;
        _nextSeparateIova += length + PageTableFormat.PageSize;
        Model.Iommu.Map(iova, memory.Address, length, DmaAccess.ReadWrite);
        var dva = _nextDva;
        _nextDva += length + PageTableFormat.PageSize;
        Map(ctx, dva, iova, length, permissions);
        return (dva, iova, memory);
    }

    /// <summary>Writes the leaf for <paramref name="dva"/> with one 8-byte store (spec 4.1), building tables on the way.</summary>
    public void SetLeaf(int ctx, ulong dva, PageTableEntry leaf, bool huge = false)
    {
        var table = _roots[ctx];
        var leafLevel = huge ? PageTableFormat.HugeLeafLevel : PageTableFormat.Levels - 1;
        for (var level = 0; level < leafLevel; level++)
        {
            var slot = EntryAt(table, dva, level);
            var entry = new PageTableEntry(Volatile.Read(ref *slot));
            if (!entry.Valid)
            {
                var next = Allocate(PageTableFormat.PageSize);
                entry = PageTableEntry.Create(next, PteFlags.Valid | PteFlags.Read | PteFlags.Write);
                Volatile.Write(ref *slot, entry.Raw);
            }

            table = entry.Address;
        }

        Volatile.Write(ref *EntryAt(table, dva, leafLevel), leaf.Raw);
    }

    /// <summary>Sets up queue <paramref name="q"/> with fresh rings.</summary>
    public void ConfigureQueue(int q, int sqLog2 = 6, int cqLog2 = 6)
    {
        var sq = Allocate((1UL << sqLog2) * SubmissionDescriptor.Size);
        var cq = Allocate((1UL << cqLog2) * CompletionRecord.Size);
        _queues[q] = new QueueRings(sq, sqLog2, cq, cqLog2);
        Model.Write64(Fa1Registers.Queue(q, Fa1Registers.SqBase), sq);
        Model.Write64(Fa1Registers.Queue(q, Fa1Registers.CqBase), cq);
        Model.Write64(Fa1Registers.Queue(q, Fa1Registers.CqLog2), (ulong)cqLog2);
        Model.Write64(Fa1Registers.Queue(q, Fa1Registers.SqLog2), (ulong)sqLog2);
    }

    /// <summary>Writes descriptors into the submission ring and rings the doorbell once.</summary>
    public void Submit(int q, params SubmissionDescriptor[] descriptors)
    {
        var rings = _queues[q];
        foreach (var d in descriptors)
        {
            var slot = rings.SqIova + ((rings.Produced & ((1UL << rings.SqLog2) - 1)) * SubmissionDescriptor.Size);
            MemoryMarshal.Write(Bytes(slot, SubmissionDescriptor.Size), in d);
            rings.Produced++;
        }

        Model.Write64(Fa1Registers.Queue(q, Fa1Registers.SqTail), rings.Produced);
    }

    /// <summary>Waits until CQ_TAIL reaches <paramref name="count"/> completions in all (polling, bounded).</summary>
    public void WaitTail(int q, ulong count, TimeSpan? timeout = null)
    {
        var watch = Stopwatch.StartNew();
        while (Model.Read64(Fa1Registers.Queue(q, Fa1Registers.CqTail)) < count)
        {
            if (watch.Elapsed > (timeout ?? TimeSpan.FromSeconds(20)))
            {
                Assert.Fail($"queue {q}: CQ_TAIL did not reach {count} (STATUS 0x{Model.Read64(Fa1Registers.Status):X}, ERROR 0x{Model.Read64(Fa1Registers.Error):X})");
            }

            Thread.Sleep(watch.Elapsed < TimeSpan.FromMilliseconds(5) ? 0 : 1);
        }
    }

    /// <summary>Waits for the next completion of <paramref name="q"/>, reads it and consumes it (CQ_HEAD).</summary>
    public CompletionRecord NextCompletion(int q)
    {
        var rings = _queues[q];
        WaitTail(q, rings.Consumed + 1);
        var record = PeekCompletion(q, rings.Consumed);
        rings.Consumed++;
        Model.Write64(Fa1Registers.Queue(q, Fa1Registers.CqHead), rings.Consumed);
        return record;
    }

    /// <summary>The completion record at produced-count <paramref name="index"/>, as host memory holds it.</summary>
    public CompletionRecord PeekCompletion(int q, ulong index)
    {
        var rings = _queues[q];
        var slot = rings.CqIova + ((index & ((1UL << rings.CqLog2) - 1)) * CompletionRecord.Size);
        return MemoryMarshal.Read<CompletionRecord>(Bytes(slot, CompletionRecord.Size));
    }

    /// <summary>Submits one command and returns its completion.</summary>
    public CompletionRecord Run(int q, SubmissionDescriptor d)
    {
        Submit(q, d);
        return NextCompletion(q);
    }

    public ulong Read(uint offset) => Model.Read64(offset);

    /// <summary>IOVA of the fault ring set up by <see cref="ConfigureFaultRing"/>.</summary>
    public ulong FaultRingIova { get; private set; }

    public int FaultRingLog2 { get; private set; }

    /// <summary>Sets up the fault ring (spec 4.4).</summary>
    public void ConfigureFaultRing(int log2 = 6)
    {
        FaultRingIova = Allocate((1UL << log2) * FaultRecord.Size);
        FaultRingLog2 = log2;
        Model.Write64(Fa1Registers.FqBase, FaultRingIova);
        Model.Write64(Fa1Registers.FqLog2, (ulong)log2);
    }

    /// <summary>Waits until FQ_TAIL passes <paramref name="seq"/>, then reads that record from the ring.</summary>
    public FaultRecord WaitFaultRecord(uint seq)
    {
        var watch = Stopwatch.StartNew();
        while ((uint)Model.Read64(Fa1Registers.FqTail) - seq - 1 >= 1u << 31)
        {
            if (watch.Elapsed > TimeSpan.FromSeconds(20))
            {
                Assert.Fail($"no fault record {seq} (FQ_TAIL {Model.Read64(Fa1Registers.FqTail)}, STATUS 0x{Model.Read64(Fa1Registers.Status):X})");
            }

            Thread.Sleep(watch.Elapsed < TimeSpan.FromMilliseconds(5) ? 0 : 1);
        }

        var slot = FaultRingIova + ((seq & ((1UL << FaultRingLog2) - 1)) * FaultRecord.Size);
        return MemoryMarshal.Read<FaultRecord>(Bytes(slot, FaultRecord.Size));
    }

    /// <summary>Answers a fault (FAULT_RESP), writing FAULT_PTE first for a DROPIN.</summary>
    public void Respond(in FaultRecord record, FaultResponseCode code, PageTableEntry? dropin = null)
    {
        if (dropin is { } pte)
        {
            Model.Write64(Fa1Registers.FaultPte, pte.Raw);
        }

        Model.Write64(Fa1Registers.FaultResp, new FaultResponse(record.Tag, record.Context, code).Raw);
    }

    public void Dispose()
    {
        if (_owned)
        {
            Model.Dispose();
            _arena.Dispose();
        }

        _separate.ForEach(m => m.Dispose());
    }

    public static SubmissionDescriptor Copy(ulong src, ulong dst, ulong len, int ctx = 0, uint tag = 0, DescriptorFlags flags = 0) =>
        new() { Opcode = Opcode.Copy, Context = (byte)ctx, Source = src, Destination = dst, Length = len, Tag = tag, Flags = flags };

    public static SubmissionDescriptor Fill(ulong dst, ulong len, ulong pattern, int ctx = 0, uint tag = 0) =>
        new() { Opcode = Opcode.Fill, Context = (byte)ctx, Destination = dst, Length = len, Pattern = pattern, Tag = tag };

    public static SubmissionDescriptor Crc(ulong src, ulong len, int ctx = 0, uint tag = 0) =>
        new() { Opcode = Opcode.Crc32C, Context = (byte)ctx, Source = src, Length = len, Tag = tag };

    public static SubmissionDescriptor Nop(uint tag = 0, DescriptorFlags flags = 0) =>
        new() { Opcode = Opcode.Nop, Tag = tag, Flags = flags };

    private ulong* EntryAt(ulong tableIova, ulong dva, int level) =>
        (ulong*)HostOf(tableIova + ((ulong)PageTableFormat.Index(dva, level) * 8));

    private sealed class QueueRings(ulong sqIova, int sqLog2, ulong cqIova, int cqLog2)
    {
        public ulong SqIova { get; } = sqIova;

        public int SqLog2 { get; } = sqLog2;

        public ulong CqIova { get; } = cqIova;

        public int CqLog2 { get; } = cqLog2;

        public ulong Produced { get; set; }

        public ulong Consumed { get; set; }
    }
}
