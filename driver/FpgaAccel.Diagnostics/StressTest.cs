using System.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Diagnostics;

/// <summary>Settings of a stress run.</summary>
public sealed record StressOptions
{
    /// <summary>How long the threads keep starting operations; those in flight then finish.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Seeds every thread's choice of operations and data, so a failing run can be repeated.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Threads registering, pinning and running commands at once.</summary>
    public int Threads { get; init; } = 2;

    /// <summary>Buffers each thread cycles through.</summary>
    public int BuffersPerThread { get; init; } = 4;

    /// <summary>Bytes per buffer.</summary>
    public int BufferBytes { get; init; } = 64 * 1024;

    /// <summary>How long one operation may take before it counts as a deadlock.</summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>The fault service the run starts when the device has none running.</summary>
    public FaultServiceOptions FaultService { get; init; } = new();

    /// <summary>Checks the settings; throws <see cref="InvalidDeviceOptionException"/> naming the first one out of range.</summary>
    public void Validate()
    {
        if (Duration <= TimeSpan.Zero || Duration > TimeSpan.FromHours(24))
        {
            throw new InvalidDeviceOptionException("seconds", Duration.TotalSeconds, "a stress run lasts more than 0 and at most 86400 seconds");
        }

        if (Threads is < 1 or > 64)
        {
            throw new InvalidDeviceOptionException("threads", Threads, "use 1 to 64 threads");
        }

        if (BufferBytes < 4096 || BufferBytes % 4096 != 0 || BufferBytes > 64 << 20)
        {
            throw new InvalidDeviceOptionException("buffer bytes", BufferBytes, "a whole number of 4 KiB pages, at most 64 MiB");
        }

        if (BuffersPerThread is < 2 or > 64)
        {
            throw new InvalidDeviceOptionException("buffers per thread", BuffersPerThread, "each thread copies between 2 to 64 buffers");
        }

        if (OperationTimeout <= TimeSpan.Zero || OperationTimeout > TimeSpan.FromHours(1))
        {
            throw new InvalidDeviceOptionException("operation timeout", OperationTimeout, "above 0 and at most an hour");
        }

        FaultService.Validate();
    }
}

/// <summary>What a stress run did and whether every invariant held.</summary>
public sealed record StressReport
{
    /// <summary>Operations (pinned copy, on-demand copies, unregister in flight) the threads completed.</summary>
    public long Operations { get; init; }

    /// <summary>Commands the device completed, whatever their status.</summary>
    public long Commands { get; init; }

    /// <summary>Copies whose destination was compared with the source byte for byte.</summary>
    public long VerifiedCopies { get; init; }

    /// <summary>Copies whose destination did not match the source although nothing interfered: must be 0.</summary>
    public long DataErrors { get; init; }

    /// <summary>Commands that completed with an unexpected status: must be 0.</summary>
    public long UnexpectedStatus { get; init; }

    /// <summary>Faults the fault service handled during the run.</summary>
    public long Faults { get; init; }

    /// <summary>Faults answered ABORT (expected when a region is unregistered while its command runs).</summary>
    public long Aborts { get; init; }

    /// <summary>Faults answered DROPIN.</summary>
    public long Dropins { get; init; }

    /// <summary>On-demand pages evicted under the budget: shows the run exercised eviction.</summary>
    public long Evictions { get; init; }

    /// <summary>Operations that did not finish within the timeout: must be 0.</summary>
    public long Deadlocks { get; init; }

    /// <summary>The model's oracle: device accesses through a translation the driver had removed. Null on a board.</summary>
    public long? StaleAccesses { get; init; }

    /// <summary>The model's oracle: faults raised and never answered. Null on a board.</summary>
    public long? LostFaults { get; init; }

    /// <summary>Whether the fault service thread was still running at the end: must be true.</summary>
    public bool FaultServiceAlive { get; init; }

    /// <summary>Every invariant that failed, one line each; empty when the run passed.</summary>
    public IReadOnlyList<string> Failures { get; init; } = [];

    /// <summary>True when every invariant held.</summary>
    public bool Passed => Failures.Count == 0;
}

/// <summary>
/// Several threads register and unregister on-demand regions, pin and unpin buffers, and run COPY
/// through them while the fault service pins, evicts and answers; one operation in four unregisters
/// a region while its command is still in flight. Verified copies are checked byte for byte; at the end
/// the model's oracle says whether any access used a stale translation or any fault was lost.
/// </summary>
public static class StressTest
{
    /// <summary>
    /// Runs the stress on <paramref name="device"/> with two contexts and up to <see cref="StressOptions.Threads"/> queues of
    /// its own, reports progress about once a second, and returns what held; reads the device's oracle when it has one.
    /// </summary>
    public static async Task<StressReport> RunAsync(FpgaDevice device, StressOptions options, Action<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        options.Validate();
        var faults = device.Faults ?? device.StartFaultService(options.FaultService);
        var contexts = new[] { device.CreateContext(), device.CreateContext() };
        var queueCount = Math.Min(options.Threads, device.Info.Capabilities.Queues);
        var queues = Enumerable.Range(0, queueCount).Select(i => device.OpenQueue(i, 16, i % 2 == 0 ? CompletionMode.Interrupt : CompletionMode.Poll)).ToArray();
        var totals = new Totals();
        var failures = new List<string>();
        var stop = Stopwatch.StartNew();
        try
        {
            var workers = Enumerable.Range(0, options.Threads).Select(t => Task.Run(() =>
                WorkerAsync(t, contexts[t % contexts.Length], queues[t % queues.Length], options, totals, stop, failures, cancellationToken))).ToArray();
            while (!Task.WhenAll(workers).IsCompleted)
            {
                await Task.WhenAny(Task.WhenAll(workers), Task.Delay(1000, cancellationToken)).ConfigureAwait(false);
                progress?.Invoke($"{stop.Elapsed.TotalSeconds,5:0}s  ops {Interlocked.Read(ref totals.Operations)}  faults {faults.Metrics.Faults}  evictions {device.OnDemand.Evictions}");
            }

            await Task.WhenAll(workers).ConfigureAwait(false);
        }
        finally
        {
            foreach (var q in queues)
            {
                q.Dispose();
            }

            foreach (var c in contexts)
            {
                c.Dispose();
            }
        }

        var oracle = device.Oracle?.Read();
        var report = new StressReport
        {
            Operations = totals.Operations,
            Commands = totals.Commands,
            VerifiedCopies = totals.Verified,
            DataErrors = totals.DataErrors,
            UnexpectedStatus = totals.UnexpectedStatus,
            Faults = faults.Metrics.Faults,
            Aborts = faults.Metrics.Aborts,
            Dropins = faults.Metrics.Dropins,
            Evictions = device.OnDemand.Evictions,
            Deadlocks = totals.Deadlocks,
            StaleAccesses = oracle?.StaleAccesses,
            LostFaults = oracle?.LostFaults,
            FaultServiceAlive = faults.IsRunning,
        };
        lock (failures)
        {
            if (report.DataErrors > 0)
            {
                failures.Add($"{report.DataErrors} verified copies had wrong data");
            }

            if (report.UnexpectedStatus > 0)
            {
                failures.Add($"{report.UnexpectedStatus} commands completed with an unexpected status");
            }

            if (report.Deadlocks > 0)
            {
                failures.Add($"{report.Deadlocks} operations did not finish within {options.OperationTimeout.TotalSeconds:0} s");
            }

            if (report.StaleAccesses > 0)
            {
                failures.Add($"{report.StaleAccesses} device accesses went through a removed translation");
            }

            if (report.LostFaults > 0)
            {
                failures.Add($"{report.LostFaults} faults were never answered");
            }

            if (!report.FaultServiceAlive)
            {
                failures.Add("the fault service thread died");
            }

            return report with { Failures = [.. failures] };
        }
    }

    private static async Task WorkerAsync(int thread, DeviceContext context, CommandQueue queue, StressOptions options, Totals totals, Stopwatch clock, List<string> failures, CancellationToken ct)
    {
        var random = new Random(options.Seed * 1000 + thread);
        var buffers = Enumerable.Range(0, options.BuffersPerThread).Select(_ => HostBuffer.Allocate((ulong)options.BufferBytes)).ToArray();
        try
        {
            while (clock.Elapsed < options.Duration && !ct.IsCancellationRequested)
            {
                var op = random.Next(4);
                var src = buffers[random.Next(buffers.Length)];
                var dst = buffers[random.Next(buffers.Length)];
                if (src == dst)
                {
                    continue;
                }

                var work = op switch
                {
                    0 => PinnedCopyAsync(context, queue, src, dst, random, totals),
                    1 or 2 => OnDemandCopyAsync(context, queue, src, dst, random, totals),
                    _ => UnregisterInFlightAsync(context, queue, src, dst, random, totals),
                };
                var finished = await Task.WhenAny(work, Task.Delay(options.OperationTimeout, ct)).ConfigureAwait(false);
                if (finished != work)
                {
                    Interlocked.Increment(ref totals.Deadlocks);
                    lock (failures)
                    {
                        failures.Add($"thread {thread}: operation {op} did not finish within {options.OperationTimeout.TotalSeconds:0} s");
                    }

                    return;
                }

                await work.ConfigureAwait(false);
                Interlocked.Increment(ref totals.Operations);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            lock (failures)
            {
                failures.Add($"thread {thread}: {ex.GetType().Name}: {ex.Message}");
            }
        }
        finally
        {
            foreach (var b in buffers)
            {
                b.Dispose();
            }
        }
    }

    private static async Task PinnedCopyAsync(DeviceContext context, CommandQueue queue, HostBuffer src, HostBuffer dst, Random random, Totals totals)
    {
        random.NextBytes(src.Span);
        using var a = context.Pin(src, DmaAccess.DeviceRead);
        using var b = context.Pin(dst, DmaAccess.DeviceWrite);
        await CopyAndVerifyAsync(context, queue, src, dst, random, totals).ConfigureAwait(false);
    }

    private static async Task OnDemandCopyAsync(DeviceContext context, CommandQueue queue, HostBuffer src, HostBuffer dst, Random random, Totals totals)
    {
        random.NextBytes(src.Span);
        using var a = context.RegisterOnDemand(src, DmaAccess.DeviceRead);
        using var b = context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
        for (var i = 0; i < 3; i++)
        {
            await CopyAndVerifyAsync(context, queue, src, dst, random, totals).ConfigureAwait(false);
        }
    }

    // The race the protocol exists for: the region goes away while the device is using it.
    private static async Task UnregisterInFlightAsync(DeviceContext context, CommandQueue queue, HostBuffer src, HostBuffer dst, Random random, Totals totals)
    {
        var a = context.RegisterOnDemand(src, DmaAccess.DeviceRead);
        var b = context.RegisterOnDemand(dst, DmaAccess.ReadWrite);
        var length = (ulong)src.Length;
        var copy = queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, length).AsTask();
        await Task.Delay(random.Next(0, 2)).ConfigureAwait(false);
        context.Unregister(random.Next(2) == 0 ? a : b);
        a.Dispose();
        b.Dispose();
        var result = await copy.ConfigureAwait(false);
        Interlocked.Increment(ref totals.Commands);
        if (result.Status is not (CompletionStatus.Ok or CompletionStatus.Fault))
        {
            Interlocked.Increment(ref totals.UnexpectedStatus);
        }
    }

    private static async Task CopyAndVerifyAsync(DeviceContext context, CommandQueue queue, HostBuffer src, HostBuffer dst, Random random, Totals totals)
    {
        var length = (ulong)random.Next(1, (int)src.Length);
        var offset = (ulong)random.Next(0, (int)(src.Length - length) + 1);
        var result = await queue.CopyAsync(context, (ulong)src.Address + offset, (ulong)dst.Address + offset, length).ConfigureAwait(false);
        Interlocked.Increment(ref totals.Commands);
        if (!result.Succeeded)
        {
            Interlocked.Increment(ref totals.UnexpectedStatus);
            return;
        }

        Interlocked.Increment(ref totals.Verified);
        if (!src.Span.Slice((int)offset, (int)length).SequenceEqual(dst.Span.Slice((int)offset, (int)length)))
        {
            Interlocked.Increment(ref totals.DataErrors);
        }
    }

    private sealed class Totals
    {
        public long Operations;
        public long Commands;
        public long Verified;
        public long DataErrors;
        public long UnexpectedStatus;
        public long Deadlocks;
    }
}
