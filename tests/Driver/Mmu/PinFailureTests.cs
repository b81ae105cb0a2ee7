using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Mmu;

/// <summary>
/// Issue 11, defect 5: a pin, a registration or an on-demand install that fails part-way leaves the mirror, the
/// device table, the IOMMU and the accounting exactly as they were. Failures are injected at each IOMMU map the
/// operation makes: the data pages, then each page-table level it has to create.
/// </summary>
public class PinFailureTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    // In a fresh context a pin of three pages maps: 1 the pages, 2 a level-1 table, 3 a level-2 table, 4 a level-3 table.
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    public async Task PinRefusedAtAnyStepChangesNothing(int failingMap)
    {
        var backend = new FailingMapBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend);
        using var buffer = HostBuffer.Allocate(3 * PageTableFormat.PageSize);
        using var context = device.CreateContext();
        var before = Snapshot(device, context);

        backend.FailAt(failingMap);
        Assert.Throws<DmaMappingException>(() => context.Pin(buffer, DmaAccess.ReadWrite));
        Assert.That(backend.Failed, Is.True, "the injected failure was reached");
        Assert.That(Snapshot(device, context), Is.EqualTo(before), "the failed pin changed the driver's state");
        for (var page = 0UL; page < 3; page++)
        {
            var dva = (ulong)buffer.Address + (page * PageTableFormat.PageSize);
            Assert.That(context.Mirror.Lookup(dva).Raw, Is.Zero, $"page {page} is still in the mirror");
            Assert.That(context.Translation(dva, out _).Valid, Is.False, $"page {page} still translates");
        }

        // Nothing covers the buffer now: a device access to it is aborted (not serviced forever).
        device.StartFaultService();
        using var queue = device.OpenQueue();
        var fill = queue.FillAsync(context, (ulong)buffer.Address, 64, 7).AsTask();
        Assert.That(await Task.WhenAny(fill, Task.Delay(s_bound)), Is.SameAs(fill), "the access to the failed pin's page was never answered");
        Assert.That((await fill).Status, Is.EqualTo(CompletionStatus.Fault));

        // And the same pin succeeds once the IOMMU takes it.
        using var pin = context.Pin(buffer, DmaAccess.ReadWrite);
        Assert.That((await queue.FillAsync(context, (ulong)buffer.Address, 64, 7).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));
    }

    // The fault path's install in a fresh context maps: 1 the page, 2 a level-1 table, 3 a level-2 table, 4 a level-3 table.
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    public async Task OnDemandInstallRefusedAtAnyStepChangesNothing(int failingMap)
    {
        var backend = new FailingMapBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { OnDemandBudgetPages = 64, FaultAroundPages = 1 }); // one page per fault: this test counts faults page by page (fault-around has its own tests)
        using var buffer = HostBuffer.Allocate(4 * PageTableFormat.PageSize);
        using var context = device.CreateContext();
        using var region = context.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
        var before = Snapshot(device, context);
        var dva = (ulong)buffer.Address;
        var entry = context.Mirror.Lookup(dva);

        // The fault service answers ABORT for a fault whose install throws (tests/Driver/Faults); here the
        // install itself must throw its typed error having undone everything it did.
        backend.FailAt(failingMap);
        Assert.ThrowsAsync<DmaMappingException>(() => Service(context, dva));
        Assert.That(backend.Failed, Is.True, "the injected failure was reached");
        Assert.That(Snapshot(device, context), Is.EqualTo(before), "the failed install changed the driver's state");
        Assert.That(context.Mirror.Lookup(dva), Is.EqualTo(entry), "the page is marked present with nothing pinned");
        Assert.That(context.PresentOnDemandPages, Is.Zero);

        // The next fault on the page installs it.
        Assert.That(await Service(context, dva), Is.EqualTo(FaultOutcome.Resolved));
        Assert.That(context.PresentOnDemandPages, Is.EqualTo(1));
    }

    private static async Task<FaultOutcome> Service(DeviceContext context, ulong dva)
    {
        var service = Task.Run(() => context.ServiceFault(dva, write: true, queue: 0, out _, out _));
        Assert.That(await Task.WhenAny(service, Task.Delay(s_bound)), Is.SameAs(service), "servicing the fault did not end");
        return await service;
    }

    private static (int Pins, int Mapped, int Tables, int IommuPages, ulong PinnedBytes, int OnDemand) Snapshot(FpgaDevice device, DeviceContext context) =>
        (context.PinCount, context.MappedPages, context.PageTableTables, device.IommuMappedPages, device.PinnedBytes, device.OnDemand.Pinned);

    /// <summary>Refuses the n-th IOMMU map after it is armed, as the kernel would when memory runs out.</summary>
    private sealed class FailingMapBackend(IDeviceBackend inner) : DelegatingBackend(inner)
    {
        private int _calls;
        private int _failAt = -1;

        public bool Failed { get; private set; }

        public void FailAt(int call)
        {
            _calls = 0;
            _failAt = call;
            Failed = false;
        }

        public override void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
        {
            if (++_calls == _failAt)
            {
                _failAt = -1;
                Failed = true;
                throw new DmaMappingException(iova, length, "ENOMEM", "refused for the test.");
            }

            base.MapDma(iova, hostAddress, length, access);
        }
    }
}
