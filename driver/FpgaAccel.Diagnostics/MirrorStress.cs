using System.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Diagnostics;

/// <summary>One device's counters in a <see cref="MirrorStress"/> run: its commands and its oracle (null without a model).</summary>
/// <param name="Description">Which device.</param>
/// <param name="Commands">Commands it ran.</param>
/// <param name="Faults">Faults its commands took.</param>
/// <param name="Oracle">Its oracle's counters at the end, or null on a board.</param>
/// <param name="Audits">Audits of its caches after removals.</param>
/// <param name="AuditViolations">Violations those audits found.</param>
public sealed record MirrorDeviceReport(string Description, long Commands, long Faults, DeviceOracleReport? Oracle, long Audits, long AuditViolations);

/// <summary>What <see cref="MirrorStress.RunAsync"/> found.</summary>
/// <param name="Rounds">Pin-or-register, copy on every device, remove, check rounds.</param>
/// <param name="Removals">Removals across the devices (each one batched: every TLB_INV before any fence).</param>
/// <param name="VerifiedCopies">Copies whose bytes were checked.</param>
/// <param name="DataErrors">Copies whose bytes were wrong.</param>
/// <param name="ReachedAfterRemoval">DMAs that still reached a removed range (a stale translation): must be 0.</param>
/// <param name="UnexpectedStatus">Commands that ended otherwise than expected.</param>
/// <param name="Devices">Per device: commands, faults, the oracle's counters.</param>
public sealed record MirrorStressReport(long Rounds, long Removals, long VerifiedCopies, long DataErrors, long ReachedAfterRemoval, long UnexpectedStatus, IReadOnlyList<MirrorDeviceReport> Devices)
{
    /// <summary>True when no invariant failed on any device.</summary>
    public bool Passed => DataErrors == 0 && ReachedAfterRemoval == 0 && UnexpectedStatus == 0 && Devices.All(d =>
        d.AuditViolations == 0 && (d.Oracle is not { } o || (o.StaleAccesses == 0 && o.LostFaults == 0 && o.FreedMemoryAccesses == 0 && o.DropinMismatches == 0 && o.AuditViolations == 0 && o.BadRingHeadWrites == 0)));
}

/// <summary>
/// <c>fpgaaccel stress --devices N</c> (issue 15, item 4): N devices attached to one <see cref="AddressSpace"/>. Each round
/// pins a source and pins or registers on demand a destination once for all devices, copies through them on every device
/// at once (every byte checked), removes both with the batched removal, and then checks on every device that a DMA to
/// the removed range faults (a stale translation would let it through) and that the device caches nothing its tables lack.
/// </summary>
public static class MirrorStress
{
    private const int Page = 4096;

    /// <summary>Runs for <paramref name="duration"/> over <paramref name="devices"/> (each with its fault service started here).</summary>
    public static async Task<MirrorStressReport> RunAsync(IReadOnlyList<FpgaDevice> devices, TimeSpan duration, int seed, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(devices);
        var rng = new Random(seed);
        using var space = new AddressSpace();
        var attachments = new List<AddressSpaceAttachment>();
        var queues = new List<CommandQueue>();
        var commands = new long[devices.Count];
        var faults = new long[devices.Count];
        var audits = new long[devices.Count];
        var violations = new long[devices.Count];
        long rounds = 0, verified = 0, dataErrors = 0, reached = 0, unexpected = 0;
        try
        {
            foreach (var device in devices)
            {
                if (device.Faults is null)
                {
                    device.StartFaultService();
                }

                attachments.Add(space.Attach(device));
                queues.Add(device.OpenQueue());
            }

            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < duration)
            {
                var pages = rng.Next(1, 17);
                var bytes = (ulong)(pages * Page);
                using var src = HostBuffer.Allocate(bytes);
                using var dst = HostBuffer.Allocate(bytes * (ulong)devices.Count);
                rng.NextBytes(src.Span);
                var srcPin = space.Pin(src, DmaAccess.DeviceRead);
                var onDemand = rng.Next(2) == 0;
                IDisposable dstUse = onDemand ? space.RegisterOnDemand(dst, DmaAccess.ReadWrite) : space.Pin(dst, DmaAccess.ReadWrite);

                // Every device copies into its own slice of the destination at once.
                var copies = new Task<CommandResult>[devices.Count];
                for (var d = 0; d < devices.Count; d++)
                {
                    copies[d] = queues[d].CopyAsync(attachments[d].Context, (ulong)src.Address, (ulong)dst.Address + ((ulong)d * bytes), bytes).AsTask();
                }

                for (var d = 0; d < devices.Count; d++)
                {
                    var result = await copies[d].WaitAsync(TimeSpan.FromSeconds(20)).ConfigureAwait(false);
                    commands[d]++;
                    faults[d] += result.Faults;
                    if (result.Status != CompletionStatus.Ok)
                    {
                        unexpected++;
                        continue;
                    }

                    verified++;
                    if (!dst.Span.Slice(d * (int)bytes, (int)bytes).SequenceEqual(src.Span))
                    {
                        dataErrors++;
                    }
                }

                // The batched removals, then every device must fault on the removed ranges and cache nothing stale.
                space.Unpin(srcPin);
                dstUse.Dispose();
                for (var d = 0; d < devices.Count; d++)
                {
                    var after = await queues[d].CopyAsync(attachments[d].Context, (ulong)src.Address, (ulong)dst.Address, Page).AsTask().WaitAsync(TimeSpan.FromSeconds(20)).ConfigureAwait(false);
                    commands[d]++;
                    if (after.Status == CompletionStatus.Ok)
                    {
                        reached++;
                    }
                    else if (after.Status != CompletionStatus.Fault)
                    {
                        unexpected++;
                    }

                    // Audit only between the fault service's batches: the reclaim its last answers started (F3) clears
                    // entries before its fence, on the service thread.
                    if (devices[d].Oracle is { } oracle && devices[d].Faults?.WaitUntilIdle(TimeSpan.FromSeconds(20)) != false)
                    {
                        audits[d]++;
                        violations[d] += oracle.Audit().Count;
                    }
                }

                if (++rounds % 100 == 0)
                {
                    progress?.Invoke($"{rounds} rounds, {space.Removals} removals across {devices.Count} devices");
                }
            }

            var reports = devices.Select((d, i) => new MirrorDeviceReport(d.Info.BackendDescription, commands[i], faults[i], d.Oracle?.Read(), audits[i], violations[i])).ToList();
            return new MirrorStressReport(rounds, space.Removals, verified, dataErrors, reached, unexpected, reports);
        }
        finally
        {
            foreach (var q in queues)
            {
                q.Dispose();
            }
        }
    }
}
