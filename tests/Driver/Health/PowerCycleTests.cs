using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Health;

/// <summary>
/// A function with a bus-master bit in front of the model, as on a board (and the virtual board, decision V6): while it
/// is clear the device reaches no host memory (its IOMMU mappings are withdrawn, kept here, and put back when it is set
/// again). A power cycle (the BMC's RESET, spec 8) clears it, as a cold reset clears the command register (spec 1).
/// </summary>
internal sealed class BusMasterBackend(ModelBackend inner) : DelegatingBackend(inner)
{
    private readonly Dictionary<ulong, (nint Host, ulong Length, DmaAccess Access)> _mappings = [];

    public Fa1Model Device { get; } = inner.Model;

    /// <summary>The command register's bus-master bit (set at open, as the board backend sets it).</summary>
    public bool BusMaster { get; private set; } = true;

    /// <summary>Times the driver restored the function.</summary>
    public int Restores { get; private set; }

    /// <summary>The device drops off the bus, and comes back cold-reset, bus mastering off.</summary>
    public void PowerCycle(Action whileOff)
    {
        Device.Inject.RemoveFromBus();
        lock (_mappings)
        {
            BusMaster = false;
            foreach (var (iova, m) in _mappings)
            {
                Inner.UnmapDma(iova, m.Length);
            }
        }

        whileOff();
        Device.Inject.ReturnToBus();
    }

    public override void RestoreFunction()
    {
        lock (_mappings)
        {
            Restores++;
            if (!BusMaster)
            {
                BusMaster = true;
                foreach (var (iova, m) in _mappings)
                {
                    Inner.MapDma(iova, m.Host, m.Length, m.Access);
                }
            }
        }
    }

    public override void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
    {
        lock (_mappings)
        {
            if (BusMaster)
            {
                Inner.MapDma(iova, hostAddress, length, access);
            }

            _mappings.Add(iova, (hostAddress, length, access));
        }
    }

    public override ulong UnmapDma(ulong iova, ulong length)
    {
        lock (_mappings)
        {
            if (!_mappings.Remove(iova, out var m) || m.Length != length)
            {
                throw new InvalidOperationException($"the driver unmapped 0x{iova:X}+{length}, which is not one of its mappings");
            }

            return BusMaster ? Inner.UnmapDma(iova, length) : length;
        }
    }
}

/// <summary>
/// Issue 14: the BMC's RESET power-cycles the FA-1. Recover() must give the function back what the cold reset took and
/// only the host can restore (decision R19): bus mastering (before the rings, which the device fetches by DMA) and
/// MSI-X (reconnected, R15).
/// </summary>
public class PowerCycleTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    [TestCase(CompletionMode.Interrupt)]
    [TestCase(CompletionMode.Poll)]
    public async Task RecoveryAfterAPowerCycleRestoresBusMasteringAndCommandsMoveTheRightBytes(CompletionMode mode)
    {
        var backend = new BusMasterBackend(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var device = FpgaDevice.Open(backend, new FpgaDeviceOptions { DeviceTimeout = TimeSpan.FromSeconds(30), RecoverTimeout = TimeSpan.FromSeconds(5) });
        using var context = device.CreateContext();
        using var src = HostBuffer.Allocate(8192);
        using var dst = HostBuffer.Allocate(8192);
        using var srcPin = context.Pin(src, DmaAccess.DeviceRead);
        using var dstPin = context.Pin(dst, DmaAccess.DeviceWrite);
        using var queue = device.OpenQueue(0, 8, mode);
        Assert.That((await queue.NopAsync(context).AsTask().WaitAsync(s_bound)).Status, Is.EqualTo(CompletionStatus.Ok));

        backend.PowerCycle(whileOff: () =>
        {
            // A command in flight is what wakes the health check; it fails with the loss, not a timeout (R12, R13).
            var lost = queue.NopAsync(context).AsTask();
            Assert.That(() => lost.Wait(s_bound), Throws.InstanceOf<AggregateException>().With.InnerException.TypeOf<DeviceLostException>());
            Assert.That(device.State, Is.EqualTo(DeviceState.Lost));
        });
        Assert.That(device.Recover(), Is.True);
        Assert.That(backend.Restores, Is.EqualTo(1), "the recovery restored the function once");
        Assert.That(backend.BusMaster, Is.True);

        for (var round = 1; round <= 3; round++)
        {
            src.Span.Fill((byte)(0x30 + round));
            var copy = await queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, 8192).AsTask().WaitAsync(s_bound);
            Assert.That(copy.Status, Is.EqualTo(CompletionStatus.Ok), $"copy {round} after the power cycle");
            Assert.That(dst.Span.ToArray().All(b => b == 0x30 + round), Is.True, $"copy {round}'s bytes");
        }

        Assert.That(device.State, Is.EqualTo(DeviceState.Ready));
    }
}
