using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Dma;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver;

/// <summary>
/// Issue 11, defect 7: the lifetime of DMA memory. Disposing a <see cref="HostBuffer"/> that is pinned or registered
/// first unpins and unregisters it (with the fence), so the device cannot reach memory that was freed; and memory stays
/// mapped while the IOMMU maps it (the driver holds it, as pin_user_pages holds a page), so a new allocation can never
/// land at an address the IOMMU still maps to old pages.
/// </summary>
public class HostBufferTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    [Test]
    public async Task DisposingAPinnedOrRegisteredBufferReleasesItFirst()
    {
        var backend = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 64 });
        device.StartFaultService();
        using var context = device.CreateContext();
        using var queue = device.OpenQueue();
        var pinned = HostBuffer.Allocate(2 * PageTableFormat.PageSize);
        var onDemand = HostBuffer.Allocate(2 * PageTableFormat.PageSize);
        var pin = context.Pin(pinned, DmaAccess.ReadWrite);
        var inner = context.Pin(pinned.Address + 4096, 4096, DmaAccess.DeviceRead); // a raw-address pin inside the buffer
        var region = context.RegisterOnDemand(onDemand, DmaAccess.ReadWrite);
        Assert.That((await queue.FillAsync(context, (ulong)onDemand.Address, 64, 1).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
        var pinnedDva = (ulong)pinned.Address;
        var onDemandDva = (ulong)onDemand.Address;

        pinned.Dispose();
        onDemand.Dispose();

        Assert.That(pin.IsPinned || inner.IsPinned, Is.False, "the buffer was freed while still pinned");
        Assert.That(region.IsRegistered, Is.False, "the buffer was freed while still registered");
        foreach (var dva in new[] { pinnedDva, pinnedDva + 4096, onDemandDva })
        {
            Assert.That(backend.Model.Iommu.TryPeek(device.Mmu.Layout.IovaOf(dva), out _), Is.False, $"the freed buffer's page 0x{dva:X} is still mapped");
        }

        var toPinned = await queue.FillAsync(context, pinnedDva, 64, 2).AsTask().WaitAsync(s_bound);
        var toRegion = await queue.FillAsync(context, onDemandDva, 64, 3).AsTask().WaitAsync(s_bound);
        Assert.That(toPinned.Status, Is.EqualTo(CompletionStatus.Fault), "the device reached a freed pinned buffer");
        Assert.That(toRegion.Status, Is.EqualTo(CompletionStatus.Fault), "the device reached a freed on-demand buffer");
        Assert.That(device.Oracle!.Read().FreedMemoryAccesses, Is.Zero);
        pin.Dispose(); // a handle already unpinned by the buffer: nothing happens
        Assert.Throws<InvalidPinHandleException>(() => context.Unpin(inner));
    }

    // The driver holds what it maps (not only the model): on a board, VFIO would keep the old pages pinned while the
    // process's address could be handed to a new allocation, and the device would DMA to the old pages.
    [Test]
    public void MemoryFreedByItsOwnerWhileMappedStaysMappedUntilItIsReleased()
    {
        var backend = new RecordingBackend();
        var mappings = new IommuMappings(backend, IovaLayout.Choose(backend.IovaRanges), new PinAccountant(1UL << 30));
        var memory = MemoryMapping.Anonymous(4 * PageTableFormat.PageSize);
        var address = (ulong)memory.Address;
        mappings.Acquire(address, 4 * PageTableFormat.PageSize);
        FreedMemory.Mark((nint)address);

        memory.Dispose();
        Assert.That(memory.IsReleasedByOwner, Is.True);
        Assert.That(ProcessLimits.IsMapped((nint)address, 4 * PageTableFormat.PageSize), Is.True,
            "the memory was unmapped while the IOMMU maps it: a new allocation could take its address");

        mappings.Release(address, 4 * PageTableFormat.PageSize);
        Assert.That(FreedMemory.IsGone((nint)address), Is.True, "the last release frees it");
    }

    [Test]
    public void PinningMemoryItsOwnerFreedIsRefusedEvenWhileItIsStillMapped()
    {
        var backend = new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual });
        using var device = FpgaDevice.Open(backend);
        using var context = device.CreateContext();
        var memory = MemoryMapping.Anonymous(2 * PageTableFormat.PageSize);
        using var first = context.Pin(memory.Address, 2 * PageTableFormat.PageSize, DmaAccess.DeviceRead);
        memory.Dispose(); // still mapped: the pin holds it

        var ex = Assert.Throws<PinRejectedException>(() => context.Pin(memory.Address, PageTableFormat.PageSize, DmaAccess.DeviceRead))!;
        Assert.That(ex.Message, Does.Contain("freed"));
        Assert.That(context.PinCount, Is.EqualTo(1));
    }

    [Test]
    public void PinningADisposedBufferIsRefused()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var context = device.CreateContext();
        var buffer = HostBuffer.Allocate(4096);
        buffer.Dispose();
        Assert.Throws<PinRejectedException>(() => context.Pin(buffer, DmaAccess.DeviceRead));
        Assert.Throws<PinRejectedException>(() => context.RegisterOnDemand(buffer, DmaAccess.DeviceRead));
        Assert.That(context.PinCount, Is.Zero);
    }

    // The IOMMU maps DMA memory read-write (IommuMappings remarks): read-only memory cannot be pinned, and is refused
    // before the device could write into it.
    [Test]
    public void PinningReadOnlyMemoryIsRefused()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var context = device.CreateContext();
        using var readOnly = MemoryMapping.Anonymous(4096, MemoryProtection.Read);
        var ex = Assert.Throws<PinRejectedException>(() => context.Pin(readOnly.Address, 4096, DmaAccess.DeviceRead))!;
        Assert.That(ex.Message, Does.Contain("Read"));
        Assert.That(context.PinCount, Is.Zero);
    }

    private sealed class RecordingBackend : IDeviceBackend
    {
        public BackendKind Kind => BackendKind.Model;

        public string Description => "recording";

        public IReadOnlyList<IovaRange> IovaRanges { get; } = [new(0x1000, (1UL << 48) - 1)];

        public ulong Read64(uint offset) => 0;

        public void Write64(uint offset, ulong value)
        {
        }

        public int ConnectInterrupts(IReadOnlyList<EventFd> vectors) => 0;

        public void DisconnectInterrupts()
        {
        }

        public void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
        {
        }

        public ulong UnmapDma(ulong iova, ulong length) => length;

        public void Dispose()
        {
        }
    }
}
