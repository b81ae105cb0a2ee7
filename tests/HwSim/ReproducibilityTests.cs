using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>
/// Spec 7: on the virtual clock a run is reproducible for a given command stream. A stalled access costs only
/// modelled time, and what host threads do meanwhile (how often the fault service or a poller reads a register,
/// how long the service takes) never shows in the device's timestamps (decision D34).
/// </summary>
public class ReproducibilityTests
{
    private const int Commands = 120;
    private const ulong CommandBytes = 16 * 1024;

    [Test]
    public async Task AnOnDemandStreamGivesTheSameDeviceTimestampsWhateverTheHostDoesMeanwhile()
    {
        // One source and one destination for both runs: the device's caches depend on where buffers lie (DVA = VA),
        // so the stream must be the same addresses, not merely the same sizes.
        using var source = HostBuffer.Allocate(1UL << 21);
        using var destination = HostBuffer.Allocate(1UL << 21);
        new Random(7).NextBytes(source.Span);

        var quiet = await RunStreamAsync(source, destination, FaultWaitMode.Block, CompletionMode.Interrupt, noise: false);
        var busy = await RunStreamAsync(source, destination, FaultWaitMode.Adaptive, CompletionMode.Poll, noise: true);
        Assert.That(quiet.Sum(c => c.Faults), Is.GreaterThan(Commands), "the stream faults: the fault service is in the loop");
        Assert.That(busy, Is.EqualTo(quiet), "every command's start and end cycle, faults and status");
    }

    private static async Task<List<(ulong Start, ulong End, int Faults, CompletionStatus Status)>> RunStreamAsync(
        HostBuffer source, HostBuffer destination, FaultWaitMode serviceMode, CompletionMode completion, bool noise)
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 48 });
        // Decision F3: reclaim batches run after the answers by default, where host timing decides when their invalidation
        // meets the device's accesses; a reproducible run (D34) reclaims while the faulting access is stalled.
        device.StartFaultService(new FaultServiceOptions { Mode = serviceMode, ReclaimBeforeAnswer = true });
        using var context = device.CreateContext();
        using var a = context.RegisterOnDemand(source, DmaAccess.DeviceRead);
        using var b = context.RegisterOnDemand(destination, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue(0, 64, completion);

        // Host noise: a thread that reads CYCLES as fast as it can while the stream runs (each read is a modelled
        // register round trip on the virtual clock, charged to that thread only).
        using var stop = new CancellationTokenSource();
        var reader = noise
            ? Task.Run(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    device.ReadCycles();
                }
            })
            : Task.CompletedTask;

        var stream = new List<(ulong, ulong, int, CompletionStatus)>();
        try
        {
            const int slots = 32; // 512 KiB of each buffer: more pages than the budget, so pages keep faulting
            for (var i = 0; i < Commands; i++)
            {
                var offset = (ulong)(i * 7 % slots) * CommandBytes;
                var r = await queue.CopyAsync(context, (ulong)source.Address + offset, (ulong)destination.Address + offset, CommandBytes);
                stream.Add((r.StartCycle, r.EndCycle, r.Faults, r.Status));
            }
        }
        finally
        {
            await stop.CancelAsync();
            await reader;
        }

        return stream;
    }
}
