using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver;

/// <summary>Schedule points: an installed explorer sees the protocols' points, and can only delay them.</summary>
[NonParallelizable]
public class ScheduleHooksTests
{
    [Test]
    public async Task AnExplorerThatThrowsChangesNothing()
    {
        var explorer = new ThrowingExplorer();
        var previous = ScheduleHooks.Install(explorer);
        try
        {
            using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 16 });
            device.StartFaultService();
            using var src = HostBuffer.Allocate(4 * 4096);
            using var dst = HostBuffer.Allocate(4 * 4096);
            new Random(3).NextBytes(src.Span);
            using var context = device.CreateContext();
            using var queue = device.OpenQueue();
            using (context.Pin(src, DmaAccess.DeviceRead))
            using (context.RegisterOnDemand(dst, DmaAccess.ReadWrite))
            {
                var copy = await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 4 * 4096).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                Assert.That(copy.Status, Is.EqualTo(CompletionStatus.Ok));
                Assert.That(dst.Span.SequenceEqual(src.Span), Is.True);
            }

            Assert.That(explorer.Seen, Is.SupersetOf(new[] { SchedulePoint.AddBegun, SchedulePoint.RemovalBegun, SchedulePoint.FaultLookedUp, SchedulePoint.FaultAnswering, SchedulePoint.SubmitPosting }));
            Assert.That(device.Oracle!.Read().LostFaults, Is.Zero);
        }
        finally
        {
            Assert.That(ScheduleHooks.Install(previous), Is.SameAs(explorer));
        }
    }

    private sealed class ThrowingExplorer : IScheduleExplorer
    {
        private readonly HashSet<SchedulePoint> _seen = [];

        public IReadOnlyCollection<SchedulePoint> Seen
        {
            get
            {
                lock (_seen)
                {
                    return [.. _seen];
                }
            }
        }

        public void Reached(SchedulePoint point)
        {
            lock (_seen)
            {
                _seen.Add(point);
            }

            throw new InvalidOperationException("an explorer that throws");
        }
    }
}
