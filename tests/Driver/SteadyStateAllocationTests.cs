using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Queues;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver;

/// <summary>
/// The fault path and the completion path allocate nothing in steady state (GC pauses are jitter).
/// Measured with the thread's own allocation counter, so other threads cannot disturb it; the
/// backend's bytes (the model standing in for the kernel and the device) are measured apart and
/// subtracted.
/// </summary>
public class SteadyStateAllocationTests
{
    [Test]
    public void FaultPathWithEvictionAllocatesNothingInTheDriver()
    {
        var backend = new AllocationCountingBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 16 });
        using var buffer = HostBuffer.Allocate(64 * 4096);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        var resolved = 0;
        void Faults(int n)
        {
            for (var i = 0; i < n; i++)
            {
                // 64 pages through a budget of 16: every call pins a page and evicts another.
                if (context.ServiceFault((ulong)buffer.Address + ((ulong)(i % 64) * 4096), write: true, queue: 0, out _, out _) == FpgaAccel.Driver.Mmu.FaultOutcome.Resolved)
                {
                    resolved++;
                }
            }
        }

        Faults(2000);
        var evictions = device.OnDemand.Evictions;
        var before = GC.GetAllocatedBytesForCurrentThread();
        backend.Bytes = 0;
        Faults(2000);
        var driverBytes = GC.GetAllocatedBytesForCurrentThread() - before - backend.Bytes;
        Assert.That(resolved, Is.EqualTo(4000));
        Assert.That(device.OnDemand.Evictions - evictions, Is.GreaterThanOrEqualTo(1900), "the measured faults evicted");
        Assert.That(driverBytes, Is.Zero, $"the driver allocated {driverBytes} bytes over 2000 faults (the model: {backend.Bytes})");
    }

    // Issue 15: fault-around (16 pages a fault) and the reclaim batches the fault service runs after answering (one
    // invalidation, one fence) allocate nothing in the driver either.
    [Test]
    public void FaultAroundAndBatchedReclaimAllocateNothingInTheDriver()
    {
        var backend = new AllocationCountingBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 64 });
        using var buffer = HostBuffer.Allocate(512 * 4096);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        var mmu = device.Mmu;
        void Faults(int n)
        {
            for (var i = 0; i < n; i++)
            {
                // One fault per 64 KiB window over 2 MiB through a budget of 64 pages: each maps 16, reclaim batches evict.
                context.ServiceFault((ulong)buffer.Address + ((ulong)(i % 32) * 16 * 4096), write: true, queue: 0, out _, out _);
                mmu.Pager.ReclaimAboveHighWatermark();
            }
        }

        Faults(200);
        var stats = device.OnDemandStatistics;
        var before = GC.GetAllocatedBytesForCurrentThread();
        backend.Bytes = 0;
        Faults(400);
        var driverBytes = GC.GetAllocatedBytesForCurrentThread() - before - backend.Bytes;
        var after = device.OnDemandStatistics;
        Assert.That(after.FaultAroundPages - stats.FaultAroundPages, Is.GreaterThanOrEqualTo(400 * 15), "every fault mapped its window");
        Assert.That(after.EvictionBatches - stats.EvictionBatches, Is.GreaterThan(50), "the measured faults were reclaimed in batches");
        Assert.That(after.DirectReclaims, Is.Zero, "the reclaim after each fault kept the faults off the fence");
        Assert.That(driverBytes, Is.Zero, $"the driver allocated {driverBytes} bytes over 400 faults (the model: {backend.Bytes})");
    }

    [TestCase(CompletionMode.Interrupt)]
    [TestCase(CompletionMode.Poll)]
    public async Task CompletionHarvestAllocatesNothing(CompletionMode mode)
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var context = device.CreateContext();
        using var queue = device.OpenQueue(0, 64, mode);
        for (var i = 0; i < 2000; i++)
        {
            await queue.NopAsync(context);
        }

        var before = queue.HarvestAllocatedBytes;
        for (var i = 0; i < 2000; i++)
        {
            await queue.NopAsync(context);
        }

        Assert.That(queue.HarvestAllocatedBytes - before, Is.Zero, "harvesting 2000 completions allocated");
    }

    [Test]
    public async Task FaultServiceThreadAllocatesNothingPerFault()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 8, FaultAroundPages = 1 }); // one page per fault: this test counts faults page by page (fault-around has its own tests)
        var service = device.StartFaultService();
        using var buffer = HostBuffer.Allocate(32 * 4096);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();
        for (var round = 0; round < 40; round++)
        {
            await queue.FillAsync(context, (ulong)buffer.Address, 32 * 4096, 1);
        }

        var bytes = service.AllocatedBytes;
        var faults = service.Metrics.Faults;
        for (var round = 0; round < 40; round++)
        {
            await queue.FillAsync(context, (ulong)buffer.Address, 32 * 4096, 2);
        }

        var perFault = (double)(service.AllocatedBytes - bytes) / (service.Metrics.Faults - faults);
        TestContext.Out.WriteLine($"fault service thread: {perFault:0.##} bytes per fault, model's IOMMU included");
        Assert.That(service.Metrics.Faults - faults, Is.EqualTo(40 * 32), "every page faulted every round");

        // The service thread also runs the model's IOMMU map and unmap (the kernel's work on a board),
        // which keeps one small node per mapped page; the driver's own share is 0 (test above).
        Assert.That(perFault, Is.LessThanOrEqualTo(256));
    }

    /// <summary>Forwards to a backend and counts what the backend allocates on the calling thread.</summary>
    private sealed class AllocationCountingBackend(IDeviceBackend inner) : IDeviceBackend
    {
        public long Bytes { get; set; }

        public BackendKind Kind => inner.Kind;

        public string Description => inner.Description;

        public IReadOnlyList<IovaRange> IovaRanges => inner.IovaRanges;

        public ulong Read64(uint offset)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            var value = inner.Read64(offset);
            Bytes += GC.GetAllocatedBytesForCurrentThread() - before;
            return value;
        }

        public void Write64(uint offset, ulong value)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            inner.Write64(offset, value);
            Bytes += GC.GetAllocatedBytesForCurrentThread() - before;
        }

        public int ConnectInterrupts(IReadOnlyList<EventFd> vectors) => inner.ConnectInterrupts(vectors);

        public void DisconnectInterrupts() => inner.DisconnectInterrupts();

        public void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            inner.MapDma(iova, hostAddress, length, access);
            Bytes += GC.GetAllocatedBytesForCurrentThread() - before;
        }

        public ulong UnmapDma(ulong iova, ulong length)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            var unmapped = inner.UnmapDma(iova, length);
            Bytes += GC.GetAllocatedBytesForCurrentThread() - before;
            return unmapped;
        }

        public void Dispose() => inner.Dispose();
    }
}
