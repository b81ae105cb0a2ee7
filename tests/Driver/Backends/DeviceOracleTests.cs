using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Backends;

/// <summary>
/// The oracle reaches harnesses through the backend seam (<see cref="IDeviceBackend.Oracle"/>), never by a
/// type test on the backend: the model offers it, a backend without one offers null, and the report carries
/// the model's own counts.
/// </summary>
public class DeviceOracleTests
{
    [Test]
    public void ModelBackendReportsAStaleAccessTheModelSaw()
    {
        // A driver bug made by hand (as in the model's OracleTests): reuse an IOVA without invalidating the TLB.
        using var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(0);
        rig.EnableContext(0);
        const ulong dva = 0x3300_0000_0000;
        const ulong iova = 0x9_0000_0000;
        using var first = MemoryMapping.Anonymous(4096);
        using var second = MemoryMapping.Anonymous(4096);
        rig.Model.Iommu.Map(iova, first.Address, 4096, DmaAccess.ReadWrite);
        rig.Map(0, dva, iova, 4096, PteFlags.Read | PteFlags.Write);
        rig.Run(0, DmaRig.Fill(dva, 64, 1, 0));
        rig.Model.Iommu.Unmap(iova, 4096);
        rig.Model.Iommu.Map(iova, second.Address, 4096, DmaAccess.ReadWrite);
        rig.Run(0, DmaRig.Fill(dva, 64, 2, 0));

        // The rig owns the model; the backend only wraps it here, so it is not disposed.
        IDeviceBackend backend = new ModelBackend(rig.Model);
        var report = backend.Oracle!.Read();
        var model = rig.Model.Oracle;
        Assert.Multiple(() =>
        {
            Assert.That(report.StaleAccesses, Is.EqualTo(1));
            Assert.That(report.DataAccesses, Is.EqualTo(2));
            Assert.That(report.StaleAccesses, Is.EqualTo(model.StaleAccesses));
            Assert.That(report.DataAccesses, Is.EqualTo(model.DataAccesses));
            Assert.That(report.FaultsRaised, Is.EqualTo(model.FaultsRaised));
            Assert.That(report.LostFaults, Is.EqualTo(model.LostFaults));
        });
    }

    [Test]
    public void ModelBackendAuditsThroughTheSeamAndReportsTheNewCounters()
    {
        // A driver bug made by hand: a downgrade to read-only without TLB_INV while the page stays mapped.
        using var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(0);
        rig.EnableContext(0);
        var buffer = rig.MapBuffer(0, 4096);
        rig.Run(0, DmaRig.Fill(buffer.Dva, 64, 1, 0));
        rig.SetLeaf(0, buffer.Dva, PageTableEntry.Create(buffer.Iova, PteFlags.Valid | PteFlags.Read));

        IDeviceOracle oracle = new ModelBackend(rig.Model).Oracle;
        Assert.That(oracle.Audit(5), Is.Empty, "another context");
        var found = oracle.Audit(0, buffer.Dva, 4096);
        Assert.That(found, Has.Count.EqualTo(1));
        Assert.Multiple(() =>
        {
            Assert.That(found[0].Kind, Is.EqualTo(DeviceAuditViolationKind.TlbEntryPermissionExceedsTable));
            Assert.That(found[0].Context, Is.Zero);
            Assert.That(found[0].Dva, Is.EqualTo(buffer.Dva));
            Assert.That(found[0].Level, Is.EqualTo(3));
            Assert.That(found[0].InstalledByDropin, Is.False);
            Assert.That(found[0].ToString(), Does.Contain($"0x{buffer.Dva:X}"));
        });

        var report = oracle.Read();
        var model = rig.Model.Oracle;
        Assert.Multiple(() =>
        {
            Assert.That(report.AuditViolations, Is.EqualTo(1));
            Assert.That(report.AuditViolations, Is.EqualTo(model.AuditViolations));
            Assert.That(report.DropinMismatches, Is.EqualTo(model.DropinMismatches));
            Assert.That(report.FreedMemoryAccesses, Is.EqualTo(model.FreedMemoryAccesses));
        });
    }

    [Test]
    public void ModelBackendReportsAFaultLostToAReset()
    {
        using var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(2);
        rig.EnableContext(5);
        rig.ConfigureFaultRing();
        rig.Submit(2, DmaRig.Crc(0x4400_0000_0000, 64, 5));
        rig.WaitFaultRecord(0);
        rig.Model.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Reset);

        var report = new ModelBackend(rig.Model).Oracle.Read();
        Assert.Multiple(() =>
        {
            Assert.That(report.FaultsRaised, Is.EqualTo(1));
            Assert.That(report.LostFaults, Is.EqualTo(1), "the fault the reset ended was never answered");
            Assert.That(report.StaleAccesses, Is.Zero);
        });
    }

    [Test]
    public async Task DeviceOnTheModelOffersTheOracleAndItCountsAccesses()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        Assert.That(device.Oracle, Is.Not.Null);
        using var context = device.CreateContext(new ContextOptions { NoFault = true });
        using var queue = device.OpenQueue();
        using var buffer = HostBuffer.Allocate(8192);
        using var pin = context.Pin(buffer, DmaAccess.ReadWrite);
        var before = device.Oracle!.Read();
        var result = await queue.FillAsync(context, (ulong)buffer.Address, 8192, 0x0102_0304_0506_0708);
        Assert.That(result.Status, Is.EqualTo(CompletionStatus.Ok));
        var after = device.Oracle.Read();
        Assert.That(after.DataAccesses - before.DataAccesses, Is.EqualTo(2), "one data access per page of the fill");
        Assert.That(after.StaleAccesses, Is.Zero);
    }

    [Test]
    public async Task BackendWithoutAnOracleOffersNoneAndTheStressRunStillChecksItsOwnInvariants()
    {
        using var device = FpgaDevice.Open(new WithoutOracle(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual })),
            new FpgaDeviceOptions { OnDemandBudgetPages = 24 });
        Assert.That(device.Oracle, Is.Null);
        var report = await StressTest.RunAsync(device, new StressOptions { Duration = TimeSpan.FromSeconds(1), Seed = 5, Threads = 2 });
        Assert.Multiple(() =>
        {
            Assert.That(report.StaleAccesses, Is.Null, "no oracle, no oracle counts (as on a board)");
            Assert.That(report.LostFaults, Is.Null);
            Assert.That(report.VerifiedCopies, Is.GreaterThan(0));
            Assert.That(report.Failures, Is.Empty);
        });
    }

    /// <summary>A backend that forwards everything to another but offers no optional capability, as a board does.</summary>
    private sealed class WithoutOracle(IDeviceBackend inner) : IDeviceBackend
    {
        public BackendKind Kind => inner.Kind;

        public string Description => inner.Description;

        public IReadOnlyList<IovaRange> IovaRanges => inner.IovaRanges;

        public ulong Read64(uint offset) => inner.Read64(offset);

        public void Write64(uint offset, ulong value) => inner.Write64(offset, value);

        public int ConnectInterrupts(IReadOnlyList<EventFd> vectors) => inner.ConnectInterrupts(vectors);

        public void DisconnectInterrupts() => inner.DisconnectInterrupts();

        public void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access) => inner.MapDma(iova, hostAddress, length, access);

        public ulong UnmapDma(ulong iova, ulong length) => inner.UnmapDma(iova, length);

        public void Dispose() => inner.Dispose();
    }
}
