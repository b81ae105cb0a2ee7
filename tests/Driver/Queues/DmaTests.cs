using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Queues;

/// <summary>DMA through the model on both clocks; the same behaviour is checked on a board by BoardDmaTests.</summary>
[TestFixture(ClockMode.Virtual)]
[TestFixture(ClockMode.Wall)]
public class DmaTests : DmaTestsBase
{
    private readonly ClockMode _clock;

    public DmaTests(ClockMode clock) => _clock = clock;

    private protected override IDeviceBackend CreateBackend() => new ModelBackend(new ModelOptions { Clock = _clock });
}

/// <summary>
/// DMA through pins and queues, end to end, checked against the CPU. Runs on any backend; the checks
/// only the model can make (its IOMMU's view) apply when the backend is the model.
/// </summary>
public abstract class DmaTestsBase
{
    private FpgaDevice? _device;
    private IDeviceBackend _backend = null!;

    /// <summary>A fresh backend for one test; the device opened on it owns it.</summary>
    private protected abstract IDeviceBackend CreateBackend();

    private FpgaDevice Device => _device ?? throw new InvalidOperationException("SetUp did not open a device.");

    /// <summary>The model behind the backend, or null on a board.</summary>
    private Fa1Model? Model => (_backend as ModelBackend)?.Model;

    [SetUp]
    public void SetUp()
    {
        _backend = CreateBackend();
        _device = FpgaDevice.Open(_backend, new FpgaDeviceOptions { MemlockLimitBytes = 256UL << 20 });
    }

    // Null when the fixture was skipped in SetUp (no board configured).
    [TearDown]
    public void TearDown() => _device?.Dispose();

    [Test]
    public async Task CopyFillCrcMatchTheCpuAcrossAPageBoundary()
    {
        using var src = HostBuffer.Allocate(3 * 4096);
        using var dst = HostBuffer.Allocate(3 * 4096);
        new Random(1).NextBytes(src.Span);
        using var context = Device.CreateContext();
        using var p1 = context.Pin(src, DmaAccess.DeviceRead);
        using var p2 = context.Pin(dst, DmaAccess.DeviceWrite);
        using var queue = Device.OpenQueue(0, 8);

        var copy = await queue.CopyAsync(context, (ulong)src.Address + 4000, (ulong)dst.Address + 10, 5000);
        Assert.That(copy.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(dst.Span.Slice(10, 5000).SequenceEqual(src.Span.Slice(4000, 5000)), Is.True);
        Assert.That(copy.EndCycle, Is.GreaterThan(copy.StartCycle), "the device reports when it started and ended");

        var fill = await queue.FillAsync(context, (ulong)dst.Address + 4093, 11, 0x0807060504030201);
        Assert.That(fill.Succeeded, Is.True);
        Assert.That(dst.Span.Slice(4093, 11).ToArray(), Is.EqualTo(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3 }));

        var crc = await queue.Crc32CAsync(context, (ulong)src.Address + 1, 8191);
        Assert.That(crc.Result, Is.EqualTo((ulong)Crc32C.Compute(src.Span.Slice(1, 8191))));
    }

    [Test]
    public async Task WriteToReadOnlyPinFaultsAndLeavesTheBufferUntouched()
    {
        using var src = HostBuffer.Allocate(4096);
        using var dst = HostBuffer.Allocate(4096);
        src.Span.Fill(0x11);
        dst.Span.Fill(0x22);
        using var context = Device.CreateContext(new ContextOptions { NoFault = true });
        using var p1 = context.Pin(src, DmaAccess.DeviceRead);
        using var p2 = context.Pin(dst, DmaAccess.DeviceRead);
        using var queue = Device.OpenQueue();
        var result = await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 4096);
        Assert.That(result.Status, Is.EqualTo(CompletionStatus.Fault));
        Assert.That(dst.Span.IndexOfAnyExcept((byte)0x22), Is.EqualTo(-1), "nothing was written");
    }

    [Test]
    public async Task DmaAfterUnpinNeverReachesTheOldMemory()
    {
        using var src = HostBuffer.Allocate(8192);
        using var dst = HostBuffer.Allocate(8192);
        src.Span.Fill(0xAB);
        using var context = Device.CreateContext(new ContextOptions { NoFault = true });
        using var p1 = context.Pin(src, DmaAccess.DeviceRead);
        var p2 = context.Pin(dst, DmaAccess.ReadWrite);
        using var queue = Device.OpenQueue();
        Assert.That((await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 8192)).Succeeded, Is.True, "warms the TLB");
        dst.Span.Clear();
        context.Unpin(p2);
        Assert.That(context.Translation((ulong)dst.Address, out _).Valid, Is.False);
        var after = await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 8192);
        Assert.That(after.Status, Is.EqualTo(CompletionStatus.Fault), "the TLB entry was invalidated with the unpin");
        Assert.That(dst.Span.IndexOfAnyExcept((byte)0), Is.EqualTo(-1), "the unpinned memory was not written");
        if (Model is { } model)
        {
            Assert.That(model.Iommu.TryTranslate((ulong)dst.Address + Device.Mmu.Layout.Delta, DmaAccess.DeviceRead, out _), Is.False, "and it is out of the IOMMU");
        }
    }

    [Test]
    public async Task UnpinningOneOfTwoOverlappingPinsKeepsTheOtherAndDowngrades()
    {
        using var src = HostBuffer.Allocate(4096);
        using var dst = HostBuffer.Allocate(4096);
        using var context = Device.CreateContext(new ContextOptions { NoFault = true });
        using var p1 = context.Pin(src, DmaAccess.DeviceRead);
        using var readOnly = context.Pin(dst, DmaAccess.DeviceRead);
        var readWrite = context.Pin(dst, DmaAccess.ReadWrite);
        using var queue = Device.OpenQueue();
        Assert.That((await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 64)).Succeeded, Is.True);
        context.Unpin(readWrite);
        Assert.That((await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 64)).Status, Is.EqualTo(CompletionStatus.Fault),
            "losing write access is invalidated: the cached writable TLB entry is gone");
        Assert.That((await queue.Crc32CAsync(context, (ulong)dst.Address, 64)).Succeeded, Is.True, "the read-only pin still works");
    }

    [Test]
    public async Task SecondPassOverTheSameBufferHitsTheTlb()
    {
        using var src = HostBuffer.Allocate(64 * 1024);
        using var context = Device.CreateContext();
        using var pin = context.Pin(src, DmaAccess.DeviceRead);
        using var queue = Device.OpenQueue();
        await queue.Crc32CAsync(context, (ulong)src.Address, 64 * 1024);
        var hits = _backend.Read64(Fa1Registers.TlbHits);
        var misses = _backend.Read64(Fa1Registers.TlbMisses);
        await queue.Crc32CAsync(context, (ulong)src.Address, 64 * 1024);
        Assert.That(_backend.Read64(Fa1Registers.TlbHits) - hits, Is.GreaterThanOrEqualTo(16UL), "every page hits on the second pass");
        Assert.That(_backend.Read64(Fa1Registers.TlbMisses), Is.EqualTo(misses), "and none misses");
    }

    [Test]
    public async Task ManyQueuesRunConcurrentlyAndBackPressureDropsNothing()
    {
        using var src = HostBuffer.Allocate(1 << 20);
        using var dst = HostBuffer.Allocate(1 << 20);
        new Random(5).NextBytes(src.Span);
        using var context = Device.CreateContext();
        using var p1 = context.Pin(src, DmaAccess.DeviceRead);
        using var p2 = context.Pin(dst, DmaAccess.DeviceWrite);
        var queues = Enumerable.Range(0, 4).Select(i => Device.OpenQueue(i, 2, i % 2 == 0 ? CompletionMode.Interrupt : CompletionMode.Poll)).ToArray();
        try
        {
            const int perQueue = 40;
            const int chunk = 1 << 20 >> 8; // 4 KiB: 256 chunks, 160 commands
            var tasks = new List<Task<CommandResult>>();
            for (var q = 0; q < queues.Length; q++)
            {
                for (var i = 0; i < perQueue; i++)
                {
                    var offset = (ulong)((q * perQueue) + i) * chunk;
                    tasks.Add(queues[q].CopyAsync(context, (ulong)src.Address + offset, (ulong)dst.Address + offset, chunk).AsTask());
                }
            }

            var results = await Task.WhenAll(tasks);
            Assert.That(results.All(r => r.Succeeded), Is.True);
            var copied = queues.Length * perQueue * chunk;
            Assert.That(dst.Span[..copied].SequenceEqual(src.Span[..copied]), Is.True);
            Assert.That(queues.Sum(q => q.Completed), Is.EqualTo(queues.Length * perQueue), "rings of 2 held back 40 commands each; none was dropped");
            Assert.That(queues.Sum(q => q.BadCompletions), Is.Zero);
        }
        finally
        {
            foreach (var q in queues)
            {
                q.Dispose();
            }
        }
    }

    [Test]
    public async Task RingWrapsAroundManyLaps()
    {
        using var buffer = HostBuffer.Allocate(4096);
        using var context = Device.CreateContext();
        using var pin = context.Pin(buffer, DmaAccess.DeviceRead);
        using var queue = Device.OpenQueue(1, 4, CompletionMode.Poll);
        for (var i = 0; i < 37; i++)
        {
            Assert.That((await queue.NopAsync(context)).Succeeded, Is.True, $"command {i}");
        }

        Assert.That(queue.Completed, Is.EqualTo(37), "over nine laps of a 4-entry ring, PHASE tracked each lap");
    }

    [Test]
    public async Task BadCommandsGetTypedErrorsOrTheSpecsStatus()
    {
        using var buffer = HostBuffer.Allocate(4096);
        using var context = Device.CreateContext();
        using var pin = context.Pin(buffer, DmaAccess.ReadWrite);
        using var queue = Device.OpenQueue();
        Assert.That(Assert.Throws<InvalidCommandException>(() => queue.CopyAsync(context, (ulong)buffer.Address, (ulong)buffer.Address, 0))!.Message, Does.Contain("length 0"));
        Assert.Throws<InvalidCommandException>(() => queue.FillAsync(context, ulong.MaxValue - 4, 16, 0));

        var raw = new SubmissionDescriptor { Opcode = Opcode.Nop, Context = (byte)context.Index, Reserved1 = 1 };
        Assert.That((await queue.SubmitAsync(raw)).Status, Is.EqualTo(CompletionStatus.BadDescriptor), "reserved bytes must be zero (spec 5)");

        var past = await queue.CopyAsync(context, (ulong)buffer.Address, (ulong)buffer.Address + 2048, 4096);
        Assert.That(past.Status, Is.EqualTo(CompletionStatus.Fault), "a length past the pinned range faults");

        var other = Device.CreateContext();
        other.Dispose();
        Assert.Throws<DisposedResourceException>(() => queue.NopAsync(other));
    }

    [Test]
    public void UnpinTwiceIsRefused()
    {
        using var buffer = HostBuffer.Allocate(4096);
        using var context = Device.CreateContext();
        var pin = context.Pin(buffer, DmaAccess.DeviceRead);
        context.Unpin(pin);
        Assert.That(Assert.Throws<InvalidPinHandleException>(() => context.Unpin(pin))!.Message, Does.Contain("already unpinned"));
        Assert.DoesNotThrow(pin.Dispose, "disposing an unpinned handle is harmless");
    }

    [Test]
    public async Task DisposingEverythingReturnsIommuAndPinnedBytesToZero()
    {
        var baselinePages = Device.IommuMappedPages;
        var baselineBytes = Device.PinnedBytes;
        using (var buffer = HostBuffer.Allocate(3UL << 20))
        {
            var context = Device.CreateContext();
            var queue = Device.OpenQueue(2, 16);
            _ = context.Pin(buffer, DmaAccess.ReadWrite);
            _ = context.Pin(buffer.Address + 8192, 4096, DmaAccess.DeviceRead);
            await queue.FillAsync(context, (ulong)buffer.Address, 3UL << 20, 7);
            queue.Dispose();
            context.Dispose();
        }

        Assert.That(Device.IommuMappedPages, Is.EqualTo(baselinePages));
        Assert.That(Device.PinnedBytes, Is.EqualTo(baselineBytes));
        Assert.That(baselinePages, Is.Zero, "nothing of the device's own stays mapped while no context or queue exists");
        if (Model is { } model)
        {
            Assert.That(model.Iommu.MappedPages, Is.Zero, "the model's IOMMU agrees");
        }
    }
}
