using System.Diagnostics;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;

namespace FpgaAccel.VlabGuest;

/// <summary>
/// Drives QEMU's edu device through the project's VFIO layer (interop/Vfio), one check per VFIO
/// feature the FA-1 driver relies on, then provokes each error path the layer must report as a
/// typed error. Checks run in order and share state (container, group, device, BAR0 window);
/// a check that needs a failed one fails with its name. Every wait has a deadline.
/// </summary>
internal sealed class EduConformance(CheckRunner runner, string address, int groupNumber) : IDisposable
{
    // DMA buffer: two pages at an IOVA below edu's 28-bit DMA mask; page 0 is the source of the
    // RAM-to-edu transfer, page 1 the destination of the transfer back.
    private const ulong DmaIova = 0x100000;
    private const ulong PageSize = 4096;
    private const ulong DmaBufferSize = 2 * PageSize;

    // QEMU 7.2's edu aborts the VM on a transfer of its whole 4 KiB buffer; 1 KiB is plenty.
    private const int TransferSize = 1024;

    /// <summary>The check that binds edu to vfio-pci; every check that opens the group needs it.</summary>
    public const string SetupCheck = "setup.bind-vfio-pci";

    private VfioContainer? _container;
    private VfioGroup? _group;
    private VfioDevice? _device;
    private VfioRegionInfo? _bar0Info;
    private VfioMappedRegion? _bar0;
    private VfioIommuInfo? _iommuInfo;
    private EventFd? _msi;
    private Epoll? _epoll;
    private MemoryMapping? _dmaBuffer;

    private VfioContainer Container => _container ?? throw new CheckFailedException("no container");

    private VfioGroup Group => _group ?? throw new CheckFailedException("no group");

    private VfioDevice Device => _device ?? throw new CheckFailedException("no device");

    private VfioMappedRegion Bar0 => _bar0 ?? throw new CheckFailedException("BAR0 is not mapped");

    public void RunAll()
    {
        runner.Run("container.open-type1v2", OpenContainer);
        runner.Run("group.open-viable", OpenGroup, SetupCheck);
        runner.Run("group.set-container-iommu", AttachGroup, "container.open-type1v2", "group.open-viable");
        runner.Run("iommu.info-iova-ranges", IommuInfo, "group.set-container-iommu");
        runner.Run("device.open-info", OpenDevice, "group.set-container-iommu");
        runner.Run("device.region-info", RegionInfo, "device.open-info");
        runner.Run("config.bus-master", BusMaster, "device.open-info");
        runner.Run("bar0.mmap", MapBar0, "device.region-info");
        runner.Run("edu.id", EduId, "bar0.mmap");
        runner.Run("edu.liveness", Liveness, "bar0.mmap");
        runner.Run("edu.factorial-poll", FactorialPolled, "bar0.mmap");
        runner.Run("edu.factorial-msi-eventfd", FactorialMsi, "bar0.mmap");
        runner.Run("dma.map", MapDma, "iommu.info-iova-ranges");
        runner.Run("dma.round-trip", DmaRoundTrip, "dma.map", "config.bus-master", "bar0.mmap", "edu.factorial-msi-eventfd");
        runner.Run("dma.unmap", UnmapDma, "dma.map");
        runner.Run("dma.blocked-after-unmap", DmaBlockedAfterUnmap, "dma.unmap", "dma.round-trip");
        runner.Run("error.iova-outside-ranges", IovaOutsideRanges, "iommu.info-iova-ranges");
        runner.Run("error.group-second-open", SecondGroupOpen, "group.open-viable");
        runner.Run("error.nonexistent-pci-address", NonexistentPciAddress);
        runner.Run("error.reset-unsupported", ResetUnsupported, "device.open-info");
        // Last: it drops CAP_IPC_LOCK for the rest of the process (RLIMIT_MEMLOCK is restored).
        runner.Run("error.memlock-limit", MemlockLimit, "group.set-container-iommu");
    }

    public void Dispose()
    {
        // Reverse order of creation: the window before the device, the device before the group,
        // the group before the container (closing the container unmaps what is left).
        _bar0?.Dispose();
        _epoll?.Dispose();
        if (_device is not null && _msi is not null)
        {
            TryDisableMsi();
        }

        _msi?.Dispose();
        _device?.Dispose();
        _group?.Dispose();
        _container?.Dispose();
        _dmaBuffer?.Dispose();
    }

    private void OpenContainer()
    {
        _container = VfioContainer.Open();
        Expect.Equal(0, _container.GetApiVersion(), "VFIO_GET_API_VERSION (VFIO_API_VERSION)");
        Expect.True(_container.CheckExtension(VfioIommuType.Type1v2), "VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU) is false");
    }

    private void OpenGroup()
    {
        _group = VfioGroup.Open(groupNumber);
        var status = _group.GetStatus();
        Expect.True(status.Viable, $"group {groupNumber} is not viable (a device in it is bound to a host driver)");
        Expect.True(!status.ContainerSet, $"group {groupNumber} already has a container");
        _group.EnsureViable();
    }

    private void AttachGroup()
    {
        Group.SetContainer(Container);
        Container.SetIommu(VfioIommuType.Type1v2);
        Expect.True(Group.GetStatus().ContainerSet, "VFIO_GROUP_GET_STATUS: CONTAINER_SET is clear after VFIO_GROUP_SET_CONTAINER");
    }

    private void IommuInfo()
    {
        var info = Container.GetIommuInfo();
        _iommuInfo = info;
        runner.Note($"page sizes 0x{info.PageSizes:x}, DMA mappings available {info.DmaMappingsAvailable?.ToString() ?? "(not reported)"}");
        Expect.True((info.PageSizes & PageSize) != 0, $"4 KiB pages are not among the IOMMU's page sizes 0x{info.PageSizes:x}");
        Expect.True(info.IovaRanges is { Count: > 0 }, "VFIO_IOMMU_GET_INFO reported no valid IOVA ranges (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)");
        foreach (var range in info.IovaRanges!)
        {
            runner.Note($"valid IOVA range 0x{range.Start:x}-0x{range.End:x}");
        }

        Expect.True(IsValidIova(DmaIova, DmaBufferSize), $"the test's IOVA 0x{DmaIova:x} is not in a valid range");
        // x86's interrupt window is reserved for MSI (IOMMU_RESV_MSI); VT-d reports it as a hole.
        Expect.True(!IsValidIova(0xfee00000, PageSize), "the MSI window 0xfee00000 is reported as a valid IOVA");
    }

    private void OpenDevice()
    {
        _device = Group.OpenDevice(address);
        var info = _device.GetInfo();
        runner.Note($"flags 0x{info.Flags:x} ({(info.IsPci ? "PCI" : "not PCI")}, reset {(info.SupportsReset ? "yes" : "no")}), {info.RegionCount} regions, {info.IrqCount} IRQ indexes");
        Expect.True(info.IsPci, "VFIO_DEVICE_FLAGS_PCI is clear");
        Expect.True(info.RegionCount > VfioPciRegion.Config, $"{info.RegionCount} regions: vfio-pci has at least {VfioPciRegion.Config + 1}");
        Expect.True(info.IrqCount > VfioPciIrq.Msi, $"{info.IrqCount} IRQ indexes: vfio-pci has at least {VfioPciIrq.Msi + 1}");
    }

    private void RegionInfo()
    {
        var count = Device.GetInfo().RegionCount;
        for (var index = 0u; index < count; index++)
        {
            VfioRegionInfo region;
            try
            {
                region = Device.GetRegionInfo(index);
            }
            catch (SystemCallException ex) when (index == VfioPciRegion.Vga && ex.Errno == Errno.EINVAL)
            {
                // vfio-pci answers EINVAL for the VGA region of a device that is not a VGA device.
                runner.Note($"region {index}: EINVAL (not a VGA device)");
                continue;
            }

            runner.Note($"region {index}: size 0x{region.Size:x}, offset 0x{region.Offset:x}, flags {region.Flags}");
            if (index == VfioPciRegion.Bar0)
            {
                _bar0Info = region;
            }
        }

        var bar0 = _bar0Info ?? throw new CheckFailedException("no BAR0 region");
        Expect.Equal(1ul << 20, bar0.Size, "BAR0 size (edu's MMIO is 1 MiB)");
        Expect.True(bar0.CanMmap, $"BAR0 cannot be mmapped (flags {bar0.Flags})");
        Expect.True(Device.GetRegionInfo(VfioPciRegion.Config).Size >= 256, "config space is smaller than 256 bytes");
    }

    private void BusMaster()
    {
        Expect.Equal(Edu.VendorId, Device.ReadConfig16(0x00), "config vendor ID");
        Expect.Equal(Edu.DeviceId, Device.ReadConfig16(0x02), "config device ID");
        Device.EnableBusMastering();
        var command = Device.ReadConfig16(VfioDevice.PciCommandOffset);
        runner.Note($"command register 0x{command:x4}");
        Expect.True((command & VfioDevice.PciCommandBusMaster) != 0, $"Bus Master Enable is clear in the command register (0x{command:x4})");
        Expect.True((command & VfioDevice.PciCommandMemory) != 0, $"Memory Space Enable is clear in the command register (0x{command:x4})");
    }

    private void MapBar0()
    {
        _bar0 = Device.MapRegion(_bar0Info!);
        Expect.Equal(1ul << 20, _bar0.Length, "mapped BAR0 length");
    }

    private void EduId() => Expect.Equal(Edu.ExpectedIdentification, Bar0.Read32(Edu.Identification), "edu identification register");

    private void Liveness()
    {
        foreach (var value in new uint[] { 0x12345678, 0xdeadbeef, 0 })
        {
            Bar0.Write32(Edu.Liveness, value);
            Expect.Equal(~value, Bar0.Read32(Edu.Liveness), $"liveness after writing 0x{value:x8}");
        }
    }

    private void FactorialPolled()
    {
        Bar0.Write32(Edu.Status, 0);
        Bar0.Write32(Edu.Factorial, 10);
        WaitUntil(() => (Bar0.Read32(Edu.Status) & Edu.StatusComputing) == 0, "the factorial of 10 to finish (status bit 0)");
        Expect.Equal(3628800u, Bar0.Read32(Edu.Factorial), "10!");
    }

    private void FactorialMsi()
    {
        var irq = Device.GetIrqInfo(VfioPciIrq.Msi);
        runner.Note($"MSI: {irq.Count} vector(s), flags {irq.Flags}");
        Expect.True(irq.Count >= 1 && (irq.Flags & VfioIrqFlags.EventFd) != 0, "edu's MSI index has no eventfd-capable vector");
        _msi = EventFd.Create();
        _epoll = Epoll.Create();
        _epoll.Add(_msi.Handle, EpollEvents.In, token: 1);
        Device.SetIrqEventFds(VfioPciIrq.Msi, 0, [_msi.Handle]);

        Bar0.Write32(Edu.Status, Edu.StatusInterruptOnFactorial);
        Bar0.Write32(Edu.Factorial, 12);
        var status = WaitForInterrupt("the factorial of 12");
        Expect.True((status & Edu.FactorialInterrupt) != 0, $"interrupt status 0x{status:x} lacks the factorial bit 0x{Edu.FactorialInterrupt:x}");
        Expect.Equal(479001600u, Bar0.Read32(Edu.Factorial), "12!");
        Bar0.Write32(Edu.Status, 0);
    }

    private void MapDma()
    {
        _dmaBuffer = MemoryMapping.Anonymous(DmaBufferSize, populate: true);
        Container.MapDma(DmaIova, _dmaBuffer.Address, DmaBufferSize, DmaAccess.ReadWrite);
    }

    private unsafe void DmaRoundTrip()
    {
        var source = new Span<byte>((void*)_dmaBuffer!.Address, TransferSize);
        var back = new Span<byte>((void*)(_dmaBuffer.Address + (nint)PageSize), TransferSize);
        for (var i = 0; i < source.Length; i++)
        {
            source[i] = (byte)((i * 7) ^ 0xa5);
        }

        back.Clear();

        // RAM to edu, completion polled from the command register's start bit.
        StartDma(DmaIova, Edu.BufferAddress, 0);
        WaitUntil(() => (Bar0.Read64(Edu.DmaCommand) & Edu.DmaStart) == 0, "the RAM-to-edu DMA to finish");

        // edu to RAM, completion signalled through MSI.
        StartDma(Edu.BufferAddress, DmaIova + PageSize, Edu.DmaToRam | Edu.DmaRaiseInterrupt);
        var status = WaitForInterrupt("the edu-to-RAM DMA");
        Expect.True((status & Edu.DmaInterrupt) != 0, $"interrupt status 0x{status:x} lacks the DMA bit 0x{Edu.DmaInterrupt:x}");

        var mismatch = FirstMismatch(source, back);
        Expect.True(mismatch < 0, $"byte {mismatch} came back as 0x{(mismatch >= 0 ? back[mismatch] : 0):x2}, sent 0x{(mismatch >= 0 ? source[mismatch] : 0):x2}");
        runner.Note($"{TransferSize} bytes RAM -> edu -> RAM through IOVA 0x{DmaIova:x}, identical");
    }

    private void UnmapDma()
    {
        var unmapped = Container.UnmapDma(DmaIova, DmaBufferSize);
        Expect.Equal(DmaBufferSize, unmapped, "bytes unmapped");
    }

    private unsafe void DmaBlockedAfterUnmap()
    {
        // The buffer is still this process's memory; only the IOMMU mapping is gone. A device
        // write to the old IOVA must be blocked (the guest kernel logs a DMAR fault).
        var target = new Span<byte>((void*)(_dmaBuffer!.Address + (nint)PageSize), TransferSize);
        target.Fill(0x5a);
        StartDma(Edu.BufferAddress, DmaIova + PageSize, Edu.DmaToRam);
        WaitUntil(() => (Bar0.Read64(Edu.DmaCommand) & Edu.DmaStart) == 0, "the blocked DMA to end");
        var changed = target.IndexOfAnyExcept((byte)0x5a);
        Expect.True(changed < 0, $"the device wrote byte {changed} of an unmapped IOVA: the IOMMU did not block it");
    }

    private void IovaOutsideRanges()
    {
        var ranges = _iommuInfo!.IovaRanges!;
        var outside = ranges[0].End < ulong.MaxValue - PageSize ? (ranges[0].End + 1 + PageSize - 1) & ~(PageSize - 1) : 0;
        Expect.True(!IsValidIova(outside, PageSize), $"found no IOVA outside the valid ranges to try (tried 0x{outside:x})");
        using var buffer = MemoryMapping.Anonymous(PageSize, populate: true);
        var error = Expect.Throws<SystemCallException>(
            () => Container.MapDma(outside, buffer.Address, PageSize, DmaAccess.ReadWrite),
            $"mapping IOVA 0x{outside:x}");
        runner.Note($"IOVA 0x{outside:x}: {error.GetType().Name}: {error.Message}");
        Expect.Equal((int)Errno.EINVAL, error.ErrorNumber, "errno");
    }

    private void SecondGroupOpen()
    {
        // Through the layer's one-call open, as the driver opens a board: the group node is
        // single-open, and a failed open must close the container it opened first (the
        // descriptor check at the end would see it otherwise).
        var error = Expect.Throws<VfioOpenException>(() => VfioPciDevice.Open(address).Dispose(), $"a second open of {address} (group {groupNumber})");
        runner.Note($"{error.GetType().Name}: {error.Message}");
        Expect.Equal((int)Errno.EBUSY, error.ErrorNumber, "errno");
    }

    private void NonexistentPciAddress()
    {
        const string nowhere = "0000:00:1f.7";
        var error = Expect.Throws<VfioException>(() => VfioPciDevice.Open(nowhere).Dispose(), $"opening {nowhere}");
        runner.Note($"{error.GetType().Name}: {error.Message}");
        Expect.True(error.Message.Contains(nowhere, StringComparison.Ordinal), "the message does not name the address");
    }

    private void ResetUnsupported()
    {
        // edu has no FLR, PM or bus reset: vfio-pci leaves VFIO_DEVICE_FLAGS_RESET clear.
        Expect.True(!Device.GetInfo().SupportsReset, "edu reports VFIO_DEVICE_FLAGS_RESET; this check expects a device without reset");
        var error = Expect.Throws<VfioException>(Device.Reset, $"resetting {address}");
        runner.Note($"{error.GetType().Name}: {error.Message}");
        Expect.True(error.Message.Contains(address, StringComparison.Ordinal), "the message does not name the device");
    }

    private void MemlockLimit()
    {
        const ulong limit = 64 * 1024;
        const ulong size = 1 << 20;
        Capabilities.DropIpcLock();
        var original = ResourceLimits.GetMemoryLock();
        // Only the soft limit: the kernel checks that one, and it can be raised back afterwards.
        ResourceLimits.SetMemoryLock(original with { Soft = limit });
        try
        {
            using var buffer = MemoryMapping.Anonymous(size, populate: true);
            var error = Expect.Throws<VfioMemlockException>(
                () => Container.MapDma(DmaIova, buffer.Address, size, DmaAccess.ReadWrite),
                $"mapping {size} bytes with RLIMIT_MEMLOCK at {limit}");
            runner.Note(error.Message);
            Expect.Equal(limit, error.MemlockLimit, "the limit the error names");
            Expect.True(error.Message.Contains("RLIMIT_MEMLOCK", StringComparison.Ordinal), "the message does not name RLIMIT_MEMLOCK");
        }
        finally
        {
            ResourceLimits.SetMemoryLock(original);
        }
    }

    private void StartDma(ulong source, ulong destination, ulong flags)
    {
        Bar0.Write64(Edu.DmaSource, source);
        Bar0.Write64(Edu.DmaDestination, destination);
        Bar0.Write64(Edu.DmaCount, TransferSize);
        Bar0.Write64(Edu.DmaCommand, Edu.DmaStart | flags);
    }

    /// <summary>Waits (bounded) for the MSI eventfd, then reads and acknowledges edu's interrupt status.</summary>
    private uint WaitForInterrupt(string what)
    {
        Span<EpollReady> ready = stackalloc EpollReady[1];
        var n = _epoll!.Wait(ready, (int)Edu.OperationTimeout.TotalMilliseconds);
        Expect.True(n == 1, $"no MSI on the eventfd within {Edu.OperationTimeout.TotalSeconds} s for {what}");
        Expect.True(_msi!.TryRead(out var count) && count >= 1, "the eventfd was ready but held no count");
        var status = Bar0.Read32(Edu.InterruptStatus);
        Bar0.Write32(Edu.InterruptAcknowledge, status);
        return status;
    }

    private static void WaitUntil(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Edu.OperationTimeout)
            {
                throw new CheckFailedException($"timed out after {Edu.OperationTimeout.TotalSeconds} s waiting for {what}");
            }

            Thread.Sleep(1);
        }
    }

    private bool IsValidIova(ulong iova, ulong size) =>
        _iommuInfo?.IovaRanges?.Any(r => iova >= r.Start && iova + size - 1 <= r.End) == true;

    private static int FirstMismatch(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var common = a.CommonPrefixLength(b);
        return common == a.Length ? -1 : common;
    }

    private void TryDisableMsi()
    {
        try
        {
            _device!.DisableIrqs(VfioPciIrq.Msi);
        }
        catch (SystemCallException)
        {
            // Closing the device fd tears the IRQs down anyway.
        }
    }
}
