using System.Runtime.InteropServices;
using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Faults;

/// <summary>The fault suite on the model, both wait modes, plus what only a model can be made to do (forge records).</summary>
[TestFixture(FaultWaitMode.Block)]
[TestFixture(FaultWaitMode.Adaptive)]
public class FaultServiceTests : FaultServiceTestsBase
{
    public FaultServiceTests(FaultWaitMode mode)
        : base(mode)
    {
    }

    private protected override IDeviceBackend CreateBackend() => new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });

    [Test]
    public async Task MalformedRecordsAreRejectedAndTheServiceKeepsRunning()
    {
        var model = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        var forger = new RecordForgingBackend(model);
        using var device = FpgaDevice.Open(forger, new FpgaDeviceOptions { OnDemandBudgetPages = 64 });
        forger.Layout = device.Mmu.Layout;
        var service = device.StartFaultService(new FaultServiceOptions { Mode = Mode, RingLog2 = 6 });

        using var buffer = HostBuffer.Allocate(4096);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);

        forger.Forge(new FaultRecord { Dva = 0x1000, Tag = 1, Context = 200, Sequence = 0 });            // context out of range
        Assert.That(() => service.Metrics.BadRecords, Is.EqualTo(1).After(5000, 5));
        forger.Forge(new FaultRecord { Dva = 0x1000, Tag = 2, Context = 0, Sequence = 12345 });          // stale sequence
        forger.Forge(new FaultRecord { Dva = ulong.MaxValue, Tag = 3, Context = 0, Sequence = 2 });      // DVA beyond 48 bits
        forger.Forge(new FaultRecord { Dva = 0x1000, Tag = 4, Context = 0, Sequence = 3, Reserved1 = 7 }); // reserved field set
        Assert.That(() => service.Metrics.BadRecords, Is.EqualTo(4).After(5000, 5));
        Assert.That(service.Metrics.Faults, Is.Zero, "none of them was serviced");
        Assert.That(service.IsRunning, Is.True);

        // A well-formed record after them is serviced: the thread survived and kept its place in the ring.
        forger.Forge(new FaultRecord { Dva = (ulong)buffer.Address + 8, Tag = 5, Context = (byte)context.Index, Sequence = 4, Flags = FaultRecordFlags.Write });
        Assert.That(() => service.Metrics.Faults, Is.EqualTo(1).After(5000, 5));
        Assert.That(context.PresentOnDemandPages, Is.EqualTo(1), "the page was faulted in");
        await Task.CompletedTask;
    }

    // The model's hostile-record hooks: a garbage record (a context beyond CAPS) is counted and skipped; FQ_TAIL jumping
    // past the ring is counted and (issue 12) declares the device hung, since the overwritten records' accesses would
    // wait for good. After Recover the service serves the next real fault.
    [Test]
    public async Task GarbageRecordsAreSkippedAndATailJumpDeclaresTheDeviceHung()
    {
        var model = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        using var device = FpgaDevice.Open(model, new FpgaDeviceOptions { OnDemandBudgetPages = 64 });
        var service = device.StartFaultService(new FaultServiceOptions { Mode = Mode, RingLog2 = 6 });
        using var buffer = HostBuffer.Allocate(4096);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();

        Assert.That(model.Model.InjectFaultRecord(new FaultRecord { Dva = 0x1000, Tag = 9, Context = 250, Sequence = 0 }), Is.True);
        Assert.That(() => service.Metrics.BadRecords, Is.EqualTo(1).After(5000, 5));
        Assert.That(model.Model.InjectFaultTailJump(1000), Is.True);
        Assert.That(() => service.Metrics.BadRecords, Is.EqualTo(2).After(5000, 5));
        Assert.That(() => device.State, Is.EqualTo(DeviceState.Hung).After(5000, 5));
        Assert.That(device.Failure, Is.TypeOf<DeviceHungException>().With.Message.Contains("fault ring"));
        Assert.That(service.IsRunning, Is.True);
        Assert.That(device.Recover(), Is.True);

        var fill = await queue.FillAsync(context, (ulong)buffer.Address, 64, 1).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That(fill.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(device.Oracle!.Read().BadRingHeadWrites, Is.Zero, "FQ_HEAD was never written past FQ_TAIL");
    }

    /// <summary>
    /// Wraps the model and, on demand, writes a malformed record into the driver's fault ring and
    /// advances the FQ_TAIL the driver sees: a device that cannot be trusted.
    /// </summary>
    private sealed class RecordForgingBackend : IDeviceBackend
    {
        private readonly IDeviceBackend _inner;
        private ulong _ringIova;
        private uint _forged;

        public RecordForgingBackend(IDeviceBackend inner) => _inner = inner;

        public FpgaAccel.Driver.Dma.IovaLayout? Layout { get; set; }

        public BackendKind Kind => _inner.Kind;

        public string Description => "forging " + _inner.Description;

        public IReadOnlyList<IovaRange> IovaRanges => _inner.IovaRanges;

        public unsafe void Forge(FaultRecord record)
        {
            var host = (FaultRecord*)(nint)(_ringIova - Layout!.Delta);
            host[(int)(Volatile.Read(ref _forged) % 64)] = record;
            Interlocked.Increment(ref _forged);
            _inner.Write64(Fa1Registers.IrqStatus, 0);
            (_inner as ModelBackend)!.Model.RaiseInterrupt(InterruptCauses.Fault);
        }

        public ulong Read64(uint offset)
        {
            var value = _inner.Read64(offset);
            return offset == Fa1Registers.FqTail ? (uint)value + Volatile.Read(ref _forged) : value;
        }

        public void Write64(uint offset, ulong value)
        {
            if (offset == Fa1Registers.FqBase)
            {
                _ringIova = value;
            }

            // The driver's FQ_HEAD counts forged records too; the model only knows its own.
            _inner.Write64(offset, offset == Fa1Registers.FqHead ? value - Volatile.Read(ref _forged) : value);
        }

        public int ConnectInterrupts(IReadOnlyList<EventFd> vectors) => _inner.ConnectInterrupts(vectors);

        public void DisconnectInterrupts() => _inner.DisconnectInterrupts();

        public void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access) => _inner.MapDma(iova, hostAddress, length, access);

        public ulong UnmapDma(ulong iova, ulong length) => _inner.UnmapDma(iova, length);

        public void Dispose() => _inner.Dispose();
    }
}

/// <summary>Device page faults end to end on any backend: on-demand regions, aborts, eviction, bounded dispose, seeded stress.</summary>
public abstract class FaultServiceTestsBase
{
    protected FaultServiceTestsBase(FaultWaitMode mode) => Mode = mode;

    /// <summary>The fault service's wait mode under test.</summary>
    protected FaultWaitMode Mode { get; }

    /// <summary>A fresh backend for one test; the device opened on it owns it.</summary>
    private protected abstract IDeviceBackend CreateBackend();

    [Test]
    public async Task OnDemandCopyFaultsPagesInAndSucceeds()
    {
        using var device = Open(budget: 1024, faultAround: 1); // one page per fault: this test counts faults page by page (fault-around has its own tests)
        var service = device.StartFaultService(new FaultServiceOptions { Mode = Mode });
        using var src = HostBuffer.Allocate(16 * 4096);
        using var dst = HostBuffer.Allocate(16 * 4096);
        new Random(2).NextBytes(src.Span);
        using var context = device.CreateContext();
        using var r1 = context.RegisterOnDemand(src, DmaAccess.DeviceRead);
        using var r2 = context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();

        var first = await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 16 * 4096);
        Assert.That(first.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(dst.Span.SequenceEqual(src.Span), Is.True);
        Assert.That(first.Faults, Is.GreaterThanOrEqualTo(32), "every page of both buffers faulted in once");
        Assert.That(service.Metrics.Faults, Is.GreaterThanOrEqualTo(32));
        Assert.That(context.PresentOnDemandPages, Is.EqualTo(32));

        var second = await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 16 * 4096);
        Assert.That(second.Faults, Is.Zero, "present pages do not fault again");
    }

    [Test]
    public async Task UnregisteredAddressAbortsOnlyThatCommand()
    {
        using var device = Open(budget: 1024);
        var service = device.StartFaultService(new FaultServiceOptions { Mode = Mode });
        using var src = HostBuffer.Allocate(4096);
        using var dst = HostBuffer.Allocate(4096);
        using var stray = HostBuffer.Allocate(4096);
        using var context = device.CreateContext();
        using var r1 = context.RegisterOnDemand(src, DmaAccess.DeviceRead);
        using var r2 = context.RegisterOnDemand(dst, DmaAccess.DeviceWrite);
        using var queue = device.OpenQueue();

        var bad = await queue.CopyAsync(context, (ulong)stray.Address, (ulong)dst.Address, 64);
        Assert.That(bad.Status, Is.EqualTo(CompletionStatus.Fault), "ABORT completes the command FAULT");
        Assert.That(service.Metrics.Aborts, Is.GreaterThanOrEqualTo(1));

        var readOnlyWrite = await queue.CopyAsync(context, (ulong)dst.Address, (ulong)src.Address, 64);
        Assert.That(readOnlyWrite.Status, Is.EqualTo(CompletionStatus.Fault), "a write to a read-only region aborts too");

        var good = await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 4096);
        Assert.That(good.Status, Is.EqualTo(CompletionStatus.Ok), "the context keeps working");
        Assert.That(service.IsRunning, Is.True);
    }

    [Test]
    public async Task BudgetEvictsLeastRecentlyFaultedAndDataStaysRight()
    {
        using var device = Open(budget: 8);
        var service = device.StartFaultService(new FaultServiceOptions { Mode = Mode });
        using var src = HostBuffer.Allocate(32 * 4096);
        using var dst = HostBuffer.Allocate(32 * 4096);
        new Random(3).NextBytes(src.Span);
        using var context = device.CreateContext();
        using var r1 = context.RegisterOnDemand(src, DmaAccess.DeviceRead);
        using var r2 = context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();
        for (var page = 0; page < 32; page++)
        {
            var offset = (ulong)page * 4096;
            var result = await queue.CopyAsync(context, (ulong)src.Address + offset, (ulong)dst.Address + offset, 4096);
            Assert.That(result.Succeeded, Is.True, $"page {page}");
        }

        Assert.That(dst.Span.SequenceEqual(src.Span), Is.True);
        Assert.That(device.OnDemand.Evictions, Is.GreaterThanOrEqualTo(64 - 8), "64 pages through a budget of 8");
        Assert.That(device.OnDemand.Pinned, Is.LessThanOrEqualTo(8));
        Assert.That(context.PresentOnDemandPages, Is.LessThanOrEqualTo(8));
    }

    [Test]
    public async Task UnregisterRemovesEverythingAndReleasesThePages()
    {
        using var device = Open(budget: 1024);
        device.StartFaultService(new FaultServiceOptions { Mode = Mode });
        using var buffer = HostBuffer.Allocate(8 * 4096);
        using var context = device.CreateContext();
        using var queue = device.OpenQueue();
        var baseline = device.IommuMappedPages;
        var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        Assert.That((await queue.FillAsync(context, (ulong)buffer.Address, 8 * 4096, 5)).Succeeded, Is.True);
        Assert.That(device.IommuMappedPages, Is.GreaterThan(baseline));
        context.Unregister(region);
        Assert.That(device.OnDemand.Pinned, Is.Zero);
        Assert.That(context.Translation((ulong)buffer.Address, out _).Valid, Is.False);
        var after = await queue.FillAsync(context, (ulong)buffer.Address, 4096, 6);
        Assert.That(after.Status, Is.EqualTo(CompletionStatus.Fault), "the region is gone: ABORT");
        Assert.That(buffer.Span[0], Is.EqualTo(5), "and nothing reached the memory");
        Assert.That(Assert.Throws<InvalidPinHandleException>(() => context.Unregister(region))!.Message, Does.Contain("already unregistered"));
    }

    [Test]
    public void DisposeStopsTheServiceThreadWithinABound()
    {
        var device = Open(budget: 16);
        var service = device.StartFaultService(new FaultServiceOptions { Mode = Mode });
        Assert.That(service.IsRunning, Is.True);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        device.Dispose();
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)));
        Assert.That(service.IsRunning, Is.False);
    }

    private FpgaDevice Open(int budget, int faultAround = FaultAroundDefault) =>
        FpgaDevice.Open(CreateBackend(), new FpgaDeviceOptions { OnDemandBudgetPages = budget, FaultAroundPages = faultAround });

    private const int FaultAroundDefault = 16;
}
