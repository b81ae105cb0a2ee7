using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.HwSim.VfioUser;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim.VfioUser;

/// <summary>
/// DMA_MAP and DMA_UNMAP feeding the model's IOMMU: an fd's memory mmapped shared and reached by the device directly,
/// type1v2's rules (EEXIST, no split, unmapping nothing succeeds), the IOMMU's windows, bus mastering as the gate
/// (decision V6), and client memory without an fd mirrored from DMA_READ (decision V3).
/// </summary>
public class DmaMapTableTests : VfioUserFixture
{
    private const ulong Iova = DmaRig.IovaBase;

    [Test]
    public unsafe void AnFdMappingLetsTheDeviceReachTheClientsBytes()
    {
        var (fd, view) = SharedFile(64 << 10);
        new Span<byte>((void*)(view.Address + 0x3000), 8).Fill(0xA5);
        Assert.That(Client.DmaMap(Iova, 32 << 10, offset: 0x1000, fd: fd).Failed, Is.False);
        Assert.That(Model.Iommu.MappedPages, Is.Zero, "bus mastering is off: nothing reaches the IOMMU yet (decision V6)");
        EnableBusMaster();
        Assert.That(Model.Iommu.MappedPages, Is.EqualTo(8));
        Assert.That(Model.Iommu.TryTranslate(Iova + 0x2000, DmaAccess.ReadWrite, out var page), Is.True);
        Assert.That(*(ulong*)page.Host, Is.EqualTo(0xA5A5_A5A5_A5A5_A5A5UL), "IOVA + 0x2000 is file offset 0x1000 + 0x2000");
        *(ulong*)page.Host = 77;
        Assert.That(*(ulong*)(view.Address + 0x3000), Is.EqualTo(77UL), "the mapping is shared with the client's file");
        Assert.That(Server.Statistics.DmaMaps, Is.EqualTo(1));
    }

    [Test]
    public void TheIommuHoldsTheServersMappingOfClientMemoryExactlyWhileItMapsIt()
    {
        // The model's IOMMU pins as type1v2 does (D32): it holds the server's own mmap of the client's file for as long
        // as it maps it, and the table unmaps that view from this process only once the IOMMU gave it back.
        var (fd, _) = SharedFile(64 << 10);
        Assert.That(Client.DmaMap(Iova, 32 << 10, fd: fd).Failed, Is.False);
        EnableBusMaster();
        Assert.That(Model.Iommu.TryPeek(Iova, out var page), Is.True);
        var serverView = MemoryMapping.Find(page.Host);
        Assert.That(serverView, Is.Not.Null, "the server's view is in the process's mapping registry");
        Assert.That(serverView!.Holds, Is.EqualTo(1), "one IOMMU mapping, one hold");

        Client.WriteConfig16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemory);
        Assert.That(serverView.Holds, Is.Zero, "bus master off: the IOMMU gave it back");
        Assert.That(serverView.IsReleasedByOwner, Is.False, "the table still maps it for the client");
        EnableBusMaster();
        Assert.That(serverView.Holds, Is.EqualTo(1));

        Assert.That(Client.DmaUnmap(Iova, 32 << 10).Failed, Is.False);
        Assert.That(serverView.Holds, Is.Zero);
        Assert.That(serverView.IsReleasedByOwner, Is.True, "the table let go of it once the client unmapped it");
        Assert.That(MemoryMapping.Find(page.Host), Is.Not.SameAs(serverView), "no hold left: unlisted, so munmapped (the registry's invariant)");
    }

    [Test]
    public void TheDeviceCopiesThroughClientMemoryAndStopsWhenBusMasteringIsOff()
    {
        const ulong size = 8 << 20;
        var (fd, view) = SharedFile(size);
        Assert.That(Client.DmaMap(Iova, size, fd: fd).Failed, Is.False);
        EnableBusMaster();
        using var rig = new DmaRig(Model, view);
        rig.EnableContext(0);
        rig.ConfigureQueue(0);
        var (src, srcIova) = rig.MapBuffer(0, 8192, PteFlags.Read);
        var (dst, dstIova) = rig.MapBuffer(0, 8192);
        Random.Shared.NextBytes(rig.Bytes(srcIova, 8192));
        var done = rig.Run(0, DmaRig.Copy(src, dst, 8192));
        Assert.That(done.Status, Is.EqualTo(CompletionStatus.Ok));
        Assert.That(rig.Bytes(dstIova, 8192).SequenceEqual(rig.Bytes(srcIova, 8192)), Is.True, "the model moved the client's bytes");

        Client.WriteConfig16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemory);
        Assert.That(Model.Iommu.MappedPages, Is.Zero, "bus master off: the mappings leave the IOMMU");
        Assert.That(Server.Statistics.MappingsHeld, Is.EqualTo(1), "and stay in the table");
        rig.Submit(0, DmaRig.Nop());
        Assert.That(() => (Model.Read64(Fa1Registers.Status) & (ulong)StatusBits.Fatal) != 0, Is.True.After(5000, 10),
            "the device cannot fetch its descriptor: FATAL, as spec 6 has it for a ring the IOMMU refuses");
        Assert.That(Server.Statistics.DeviceAccessesRefused, Is.GreaterThan(0), "the refusal is counted (a board's host would log an IOMMU fault)");
    }

    [Test]
    public void MappingsFollowType1v2Rules()
    {
        var (fd, _) = SharedFile(1 << 20);
        Assert.That(Client.DmaMap(Iova, 0x4000, fd: fd).Failed, Is.False);
        Assert.That(Client.DmaMap(Iova + 0x8000, 0x4000, offset: 0x8000, fd: fd).Failed, Is.False);
        Assert.Multiple(() =>
        {
            Assert.That(Client.DmaMap(Iova + 0x2000, 0x4000, fd: fd).Errno, Is.EqualTo(Errno.EEXIST), "overlaps the first");
            Assert.That(Client.DmaMap(Iova + 0x4000, 0x8000, fd: fd).Errno, Is.EqualTo(Errno.EEXIST), "overlaps the second");
            Assert.That(Client.DmaMap(Iova + 0x10000, 0x1800, fd: fd).Errno, Is.EqualTo(Errno.EINVAL), "size not a page multiple");
            Assert.That(Client.DmaMap(Iova + 0x10800, 0x1000, fd: fd).Errno, Is.EqualTo(Errno.EINVAL), "IOVA not page aligned");
            Assert.That(Client.DmaMap(Iova + 0x10000, 0x1000, offset: 0x10, fd: fd).Errno, Is.EqualTo(Errno.EINVAL), "offset not page aligned");
            Assert.That(Client.DmaMap(Iova + 0x10000, 0, fd: fd).Errno, Is.EqualTo(Errno.EINVAL), "size 0");
            Assert.That(Client.DmaMap(Iova + 0x10000, 0x1000, flags: 0, fd: fd).Errno, Is.EqualTo(Errno.EINVAL), "no access");
            Assert.That(Client.DmaMap(Iova + 0x10000, 0x1000, flags: 4, fd: fd).Errno, Is.EqualTo(Errno.EINVAL), "unknown flag");
            Assert.That(Client.DmaMap(ulong.MaxValue - 0xFFF, 0x2000, fd: fd).Errno, Is.EqualTo(Errno.EINVAL), "wraps");
            Assert.That(Client.DmaUnmap(Iova + 0x1000, 0x1000).Errno, Is.EqualTo(Errno.EINVAL), "splits the first mapping");
            Assert.That(Client.DmaUnmap(Iova, 0x9000).Errno, Is.EqualTo(Errno.EINVAL), "covers the first, splits the second");
            Assert.That(Client.DmaUnmap(Iova, 0x1000, flags: 1).Errno, Is.EqualTo(Errno.EINVAL), "dirty bitmap is not offered");
            Assert.That(Client.DmaUnmap(Iova, 0x1000, flags: 2).Errno, Is.EqualTo(Errno.EINVAL), "UNMAP_ALL takes 0, 0");
        });
        Assert.That(Server.Statistics.MappingsHeld, Is.EqualTo(2), "no refusal removed anything");

        var unmap = Client.DmaUnmap(0xFEF0_0000, 0x10_0000);
        Assert.That(unmap.Failed, Is.False, "a range never mapped is unmapped with success, as QEMU expects");
        Assert.That(unmap.Body, Has.Length.EqualTo(24), "the reply echoes the entry");
        Assert.That(Client.DmaUnmap(Iova, 0x10000).Failed, Is.False, "covers both mappings whole");
        Assert.That(Server.Statistics.MappingsHeld, Is.Zero);
        Assert.That(Client.DmaMap(Iova, 0x4000, fd: fd).Failed, Is.False, "the range is free again");
        Assert.That(Client.DmaUnmap(0, 0, flags: 2).Failed, Is.False, "UNMAP_ALL");
        Assert.That(Server.Statistics.MappingsHeld, Is.Zero);
    }

    [Test]
    public void DmaMapTakesOneFdAtMostAndClosesWhatItRefuses()
    {
        var (fd, _) = SharedFile(1 << 16);
        var baseline = FdCount.Now();
        Assert.That(Client.DmaMap(Iova, 0x1000, fd: fd).Failed, Is.False);
        Assert.That(Client.Send(VfioUserCommand.DmaMap, VfioUserTestClient.Struct(32u, 3u, 0UL, Iova + 0x1000, 0x1000UL), [fd, fd]).Errno, Is.EqualTo(Errno.EINVAL));
        Assert.That(Client.Send(VfioUserCommand.DmaMap, VfioUserTestClient.Struct(24u, 3u, 0UL, Iova + 0x1000, 0x1000UL), [fd]).Errno, Is.EqualTo(Errno.EINVAL), "argsz lies");
        Assert.That(FdCount.SettledAtMost(baseline), Is.LessThanOrEqualTo(baseline), "the server closed the passed fds (the mmap keeps the file)");
    }

    [Test]
    public void ARangePastTheEndOfItsFileIsRefusedBeforeItCanFault()
    {
        var (fd, _) = SharedFile(0x4000);
        Assert.That(Client.DmaMap(Iova, 0x2000, offset: 0x3000, fd: fd).Errno, Is.EqualTo(Errno.EINVAL), "0x3000 + 0x2000 is past 0x4000");
        Assert.That(Client.DmaMap(Iova, 0x1000, offset: 0x8000, fd: fd).Errno, Is.EqualTo(Errno.EINVAL), "the offset itself is past the end");
        Assert.That(Client.DmaMap(Iova, 0x1000, offset: 0x3000, fd: fd).Failed, Is.False, "the last page is fine");
    }

    [Test]
    public void AnFdThatCannotBeMappedAsAskedGivesMmapsErrno()
    {
        var path = Path.Combine("/dev/shm", "fpgaaccel-ro-" + Guid.NewGuid().ToString("N"));
        File.WriteAllBytes(path, new byte[8192]);
        using var readOnly = global::FpgaAccel.Interop.Interop.Libc.open(path, global::FpgaAccel.Interop.Interop.Libc.O_RDONLY | global::FpgaAccel.Interop.Interop.Libc.O_CLOEXEC);
        File.Delete(path);
        var reply = Client.DmaMap(Iova, 0x1000, flags: 3, fd: readOnly);
        Assert.That(reply.Errno, Is.EqualTo(Errno.EACCES), "a writable shared mapping of a read-only fd");
        Assert.That(Client.DmaMap(Iova, 0x1000, flags: 1, fd: readOnly).Failed, Is.False, "read-only is fine");
    }

    [Test]
    public void OnlyThePartsInsideTheIommuWindowsReachTheModel()
    {
        // QEMU maps guest RAM from IOVA 0 while the guest's IOMMU is off; page 0 and the MSI window are no IOVAs of
        // the model's platform (decision V4), the rest is.
        var (fd, _) = SharedFile(0x10_0000);
        EnableBusMaster();
        Assert.That(Client.DmaMap(0, 0x10_0000, fd: fd).Failed, Is.False);
        Assert.That(Model.Iommu.MappedPages, Is.EqualTo(255));
        Assert.That(Model.Iommu.TryPeek(0, out _), Is.False);
        Assert.That(Model.Iommu.TryPeek(0x1000, out _), Is.True);
        Assert.That(Client.DmaUnmap(0, 0x10_0000).Failed, Is.False);
        Assert.That(Model.Iommu.MappedPages, Is.Zero);
    }

    [Test]
    public unsafe void MemoryWithoutAnFdIsMirroredFromDmaReadAfterTheMapIsAnswered()
    {
        var bytes = new byte[0x2000];
        Random.Shared.NextBytes(bytes);
        Client.MessageMemory = (0xFFFF_0000, bytes);
        EnableBusMaster();
        Assert.That(Client.DmaMap(0xFFFF_0000, 0x2000, flags: 1).Failed, Is.False);
        Assert.That(() => Model.Iommu.MappedPages, Is.EqualTo(2).After(5000, 10), "the mirror enters the IOMMU once filled");
        var arrivals = Client.Arrivals.SkipWhile(a => !a.StartsWith("reply DmaMap", StringComparison.Ordinal)).ToList();
        Assert.That(arrivals, Has.Some.StartsWith("request DmaRead"), "the DMA_READ came after the DMA_MAP's reply");
        Assert.That(Model.Iommu.TryTranslate(0xFFFF_1000, DmaAccess.DeviceRead, out var page), Is.True);
        Assert.That(new Span<byte>((void*)page.Host, 0x1000).SequenceEqual(bytes.AsSpan(0x1000)), Is.True);
        Assert.That(Model.Iommu.TryPeek(0xFFFF_1000, out var peek) && peek.Access == DmaAccess.DeviceRead, Is.True,
            "mirrored memory is read-only to the device (decision V3)");
        Assert.That(Server.Statistics.ClientRequests, Is.Zero, "counted when the session ends");
    }

    [Test]
    public void AMirrorWaitsForBusMasteringAndIsRetriedWhenItFailed()
    {
        var bytes = new byte[0x1000];
        Client.MessageMemory = (0xC_0000, bytes);
        Assert.That(Client.DmaMap(0xC_0000, 0x1000, flags: 1).Failed, Is.False);
        Thread.Sleep(100);
        Assert.That(Client.Arrivals, Has.None.StartsWith("request"), "QEMU refuses DMA_READ while bus mastering is off, so none is sent");

        Client.RefuseDma = Errno.ENODEV;
        EnableBusMaster();
        Assert.That(() => Client.Arrivals.Count(a => a.StartsWith("request DmaRead", StringComparison.Ordinal)), Is.EqualTo(1).After(5000, 10));
        Thread.Sleep(100);
        Assert.That(Model.Iommu.MappedPages, Is.Zero, "a refused fill leaves the range unreachable");

        Client.RefuseDma = null;
        Client.WriteConfig16(PciConfigRegisters.Command, 0);
        EnableBusMaster();
        Assert.That(() => Model.Iommu.MappedPages, Is.EqualTo(1).After(5000, 10), "filled on the next bus-master enable");
    }

    [Test]
    public void ClientMemoryWritesGoOutAsDmaWriteFromAWorker()
    {
        var bytes = new byte[0x3000];
        Client.MessageMemory = (0x5000_0000, bytes);
        var session = Server.Session!;
        var data = Enumerable.Range(0, 0x2100).Select(i => (byte)i).ToArray();
        Task.Run(() => session.Client.Write(0x5000_0800, data, TimeSpan.FromSeconds(10))).Wait(TimeSpan.FromSeconds(20));
        Assert.That(bytes.AsSpan(0x800, data.Length).SequenceEqual(data), Is.True);
        var back = new byte[data.Length];
        Task.Run(() => session.Client.Read(0x5000_0800, back, TimeSpan.FromSeconds(10))).Wait(TimeSpan.FromSeconds(20));
        Assert.That(back, Is.EqualTo(data));
    }
}
