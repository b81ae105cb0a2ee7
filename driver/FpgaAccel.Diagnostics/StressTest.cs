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
    /// <summary>How long the run keeps starting work; what is in flight then finishes.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Seeds every thread's choice of operations and data and every scenario's schedule, so a failing run can be repeated.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Threads registering, pinning and running commands at once in the free-running phase.</summary>
    public int Threads { get; init; } = 2;

    /// <summary>Buffers each thread cycles through.</summary>
    public int BuffersPerThread { get; init; } = 4;

    /// <summary>Bytes per buffer.</summary>
    public int BufferBytes { get; init; } = 64 * 1024;

    /// <summary>How long one operation may take before it counts as a deadlock.</summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>The fault service the run starts when the device has none running.</summary>
    public FaultServiceOptions FaultService { get; init; } = new();

    /// <summary>
    /// The share of <see cref="Duration"/> spent on seeded scenarios under the schedule explorer (the rest runs the
    /// free-running threads): 0 to 1.
    /// </summary>
    public double ScenarioShare { get; init; } = 0.75;

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

        if (!(ScenarioShare is >= 0 and <= 1))
        {
            throw new InvalidDeviceOptionException("scenario share", ScenarioShare, "a share of the duration from 0 to 1");
        }

        ArgumentNullException.ThrowIfNull(FaultService);
        FaultService.Validate();
    }
}

/// <summary>What a stress run did and whether every invariant held.</summary>
public sealed record StressReport
{
    /// <summary>Operations (pinned copy, on-demand copies, unregister in flight, scenario steps) completed.</summary>
    public long Operations { get; init; }

    /// <summary>Commands the device completed, whatever their status.</summary>
    public long Commands { get; init; }

    /// <summary>Copies and CRCs whose result was compared with the CPU's.</summary>
    public long VerifiedCopies { get; init; }

    /// <summary>Verified results that did not match although nothing interfered: must be 0.</summary>
    public long DataErrors { get; init; }

    /// <summary>Commands that completed with a status their scenario does not allow: must be 0.</summary>
    public long UnexpectedStatus { get; init; }

    /// <summary>Faults the fault services handled during the run.</summary>
    public long Faults { get; init; }

    /// <summary>Faults answered ABORT (expected when a region goes away under its command, or a service stops).</summary>
    public long Aborts { get; init; }

    /// <summary>Faults answered DROPIN.</summary>
    public long Dropins { get; init; }

    /// <summary>Faults whose service failed and was aborted (the pin-limit scenario makes some on purpose).</summary>
    public long FaultFailures { get; init; }

    /// <summary>On-demand pages evicted under the budget: shows the run exercised eviction.</summary>
    public long Evictions { get; init; }

    /// <summary>Operations that did not finish within the timeout: must be 0.</summary>
    public long Deadlocks { get; init; }

    /// <summary>Seeded scenarios run under the schedule explorer.</summary>
    public long Scenarios { get; init; }

    /// <summary>Distinct interleavings: distinct orders in which the scenarios' threads passed the driver's schedule points.</summary>
    public long Interleavings { get; init; }

    /// <summary>Schedule points reached (every thread, every scenario).</summary>
    public long SchedulePoints { get; init; }

    /// <summary>Scenarios of each kind run (promotion and split, overlapping pins with downgrade, ...).</summary>
    public IReadOnlyDictionary<string, long> ScenarioKinds { get; init; } = new Dictionary<string, long>();

    /// <summary>Distinct on-demand budgets the run evicted under (down to the minimum for its queues).</summary>
    public int BudgetsVisited { get; init; }

    /// <summary>The smallest on-demand budget the run used.</summary>
    public int MinimumBudget { get; init; }

    /// <summary>Fault services stopped and started again during the run.</summary>
    public long FaultServiceRestarts { get; init; }

    /// <summary>Faults serviced while the locked-memory limit was reached (the pin-limit scenario's device).</summary>
    public long PinLimitFaults { get; init; }

    /// <summary>On-demand pages the pin-limit scenario's fault path gave back because the locked-memory limit ran out.</summary>
    public long LimitEvictions { get; init; }

    /// <summary>Audits of the device's caches against its page tables the run made (one after every scenario).</summary>
    public long Audits { get; init; }

    /// <summary>Completion slots that looked new but were not produced by the device: must be 0 on a sound device.</summary>
    public long PhaseGlitches { get; init; }

    /// <summary>Completion records that named no command in flight or had a status spec 5 does not allow: must be 0 on a sound device.</summary>
    public long BadCompletions { get; init; }

    /// <summary>Faults that took a place over the on-demand budget so a stalled access kept its pages.</summary>
    public long OverBudget { get; init; }

    /// <summary>The model's oracle: device accesses through a translation the driver had removed. Null on a board.</summary>
    public long? StaleAccesses { get; init; }

    /// <summary>The model's oracle: faults raised and never answered. Null on a board.</summary>
    public long? LostFaults { get; init; }

    /// <summary>The model's oracle: device accesses to memory freed while the IOMMU still mapped it. Null on a board.</summary>
    public long? FreedMemoryAccesses { get; init; }

    /// <summary>The model's oracle: DROPINs that granted more than the page table and no invalidation dropped. Null on a board.</summary>
    public long? DropinMismatches { get; init; }

    /// <summary>The model's oracle: cached entries an audit found granting more than the table. Null on a board.</summary>
    public long? AuditViolations { get; init; }

    /// <summary>The model's oracle: FQ_HEAD or CQ_HEAD written ahead of the tail or a ring behind. Null on a board.</summary>
    public long? BadRingHeadWrites { get; init; }

    /// <summary>Whether the fault service was running at the end: must be true.</summary>
    public bool FaultServiceAlive { get; init; }

    /// <summary>Every invariant that failed, one line each; empty when the run passed.</summary>
    public IReadOnlyList<string> Failures { get; init; } = [];

    /// <summary>True when every invariant held.</summary>
    public bool Passed => Failures.Count == 0;
}

/// <summary>
/// Two phases on one device. Free-running: several threads register and unregister on-demand regions, pin and unpin
/// buffers, and run COPY through them while the fault service pins, evicts and answers; one operation in four
/// unregisters a region while its command is still in flight. Then seeded scenarios, each a few threads racing one
/// protocol under a seeded schedule (<see cref="ScheduleExplorer"/>): 2 MiB promotion and split under a command,
/// overlapping pins with a downgrade, unregister in flight, eviction under every budget down to the minimum, a
/// fault-service restart under faults, the locked-memory limit reached on the fault path, a buffer freed under its
/// command, a queue closed under its submitters. Results are checked against the CPU; after every scenario the
/// device's caches are audited against its page tables; at the end the oracle's counters must all be 0.
/// </summary>
public static class StressTest
{
    private const int PageSize = (int)PageTableFormat.PageSize;
    private static readonly string[] s_kinds =
        ["promotion-split", "overlap-downgrade", "unregister-in-flight", "budget-eviction", "fault-service-restart", "pin-limit", "buffer-freed", "queue-close"];

    /// <summary>
    /// Runs the stress on <paramref name="device"/>, reports progress about once a second, and returns what held; reads
    /// the device's oracle when it has one.
    /// </summary>
    public static async Task<StressReport> RunAsync(FpgaDevice device, StressOptions options, Action<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var totals = new Totals();
        var failures = new List<string>();
        var clock = Stopwatch.StartNew();
        var freeRunning = TimeSpan.FromTicks((long)(options.Duration.Ticks * (1 - options.ScenarioShare)));
        var services = new ServiceTotals();
        var firstService = device.Faults ?? device.StartFaultService(options.FaultService);
        services.Track(firstService);
        var contexts = new[] { device.CreateContext(), device.CreateContext() };
        var queueCount = Math.Clamp(options.Threads, 1, Math.Min(2, device.Info.Capabilities.Queues));
        var queues = Enumerable.Range(0, queueCount).Select(i => device.OpenQueue(i, 16, i % 2 == 0 ? CompletionMode.Interrupt : CompletionMode.Poll)).ToArray();
        using var progressTimer = new Timer(_ => progress?.Invoke(
            $"{clock.Elapsed.TotalSeconds,5:0}s  ops {Interlocked.Read(ref totals.Operations)}  scenarios {Interlocked.Read(ref totals.Scenarios)}  interleavings {totals.DistinctInterleavings}  evictions {device.OnDemand.Evictions}"),
            null, 1000, 1000);
        try
        {
            if (freeRunning > TimeSpan.Zero)
            {
                var workers = Enumerable.Range(0, options.Threads).Select(t => Task.Run(() =>
                    WorkerAsync(t, contexts[t % contexts.Length], queues[t % queues.Length], options, freeRunning, totals, failures, cancellationToken))).ToArray();
                await Task.WhenAll(workers).ConfigureAwait(false);
            }
        }
        finally
        {
            totals.BadCompletions += queues.Sum(q => q.BadCompletions);
            totals.PhaseGlitches += queues.Sum(q => q.PhaseGlitches);
            foreach (var q in queues)
            {
                q.Dispose();
            }

            foreach (var c in contexts)
            {
                c.Dispose();
            }
        }

        if (options.ScenarioShare > 0)
        {
            await ScenariosAsync(device, options, clock, totals, services, failures, cancellationToken).ConfigureAwait(false);
        }

        var running = device.Faults;
        if (running is not null)
        {
            services.Track(running);
        }

        var oracle = device.Oracle?.Read();
        var limited = totals.PinLimitOracle;
        var report = new StressReport
        {
            Operations = totals.Operations,
            Commands = totals.Commands,
            VerifiedCopies = totals.Verified,
            DataErrors = totals.DataErrors,
            UnexpectedStatus = totals.UnexpectedStatus,
            Faults = services.Faults,
            Aborts = services.Aborts,
            Dropins = services.Dropins,
            FaultFailures = services.Failures,
            Evictions = device.OnDemand.Evictions,
            Deadlocks = totals.Deadlocks,
            Scenarios = totals.Scenarios,
            Interleavings = totals.DistinctInterleavings,
            SchedulePoints = totals.SchedulePoints,
            ScenarioKinds = s_kinds.Select((k, i) => (k, Interlocked.Read(ref totals.Kinds[i]))).ToDictionary(p => p.k, p => p.Item2),
            BudgetsVisited = totals.Budgets.Count,
            MinimumBudget = totals.Budgets.Count == 0 ? device.OnDemand.Budget : totals.Budgets.Min(),
            FaultServiceRestarts = totals.Restarts,
            PinLimitFaults = totals.PinLimitFaults,
            LimitEvictions = totals.LimitEvictions,
            Audits = totals.Audits,
            PhaseGlitches = totals.PhaseGlitches,
            BadCompletions = totals.BadCompletions,
            OverBudget = totals.OverBudget,
            StaleAccesses = Sum(oracle?.StaleAccesses, limited?.StaleAccesses),
            LostFaults = Sum(oracle?.LostFaults, limited?.LostFaults),
            FreedMemoryAccesses = Sum(oracle?.FreedMemoryAccesses, limited?.FreedMemoryAccesses),
            DropinMismatches = Sum(oracle?.DropinMismatches, limited?.DropinMismatches),
            AuditViolations = Sum(oracle?.AuditViolations, limited?.AuditViolations),
            BadRingHeadWrites = Sum(oracle?.BadRingHeadWrites, limited?.BadRingHeadWrites),
            FaultServiceAlive = device.Faults?.IsRunning ?? false,
        };
        lock (failures)
        {
            Check(report.DataErrors, "verified results had wrong data");
            Check(report.UnexpectedStatus, "commands completed with a status their scenario does not allow");
            Check(report.Deadlocks, $"operations did not finish within {options.OperationTimeout.TotalSeconds:0} s");
            Check(report.PhaseGlitches, "completion slots looked new without the device producing them");
            Check(report.BadCompletions, "completion records were malformed");
            Check(report.StaleAccesses ?? 0, "device accesses went through a removed translation");
            Check(report.LostFaults ?? 0, "faults were never answered");
            Check(report.FreedMemoryAccesses ?? 0, "device accesses reached memory freed while mapped");
            Check(report.DropinMismatches ?? 0, "DROPINs granted more than the page table");
            Check(report.AuditViolations ?? 0, "cached translations granted more than the page table at an audit");
            Check(report.BadRingHeadWrites ?? 0, "ring heads were written past the device's tail");
            if (!report.FaultServiceAlive)
            {
                failures.Add("the fault service was not running at the end");
            }

            return report with { Failures = [.. failures] };

            void Check(long count, string what)
            {
                if (count > 0)
                {
                    failures.Add($"{count} {what}");
                }
            }
        }
    }

    private static long? Sum(long? a, long? b) => a is null && b is null ? null : (a ?? 0) + (b ?? 0);

    // ---- Free-running phase ----------------------------------------------------------------------------------

    private static async Task WorkerAsync(int thread, DeviceContext context, CommandQueue queue, StressOptions options, TimeSpan duration, Totals totals, List<string> failures, CancellationToken ct)
    {
        var random = new Random((options.Seed * 1000) + thread);
        var buffers = Enumerable.Range(0, options.BuffersPerThread).Select(_ => HostBuffer.Allocate((ulong)options.BufferBytes)).ToArray();
        var clock = Stopwatch.StartNew();
        try
        {
            while (clock.Elapsed < duration && !ct.IsCancellationRequested)
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
                if (!await Bounded(work, options, totals, failures, $"thread {thread}: operation {op}", ct).ConfigureAwait(false))
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Fail(failures, $"thread {thread}: {ex.GetType().Name}: {ex.Message}");
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
        var copy = queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, src.Length).AsTask();
        await Task.Delay(random.Next(0, 2)).ConfigureAwait(false);
        context.Unregister(random.Next(2) == 0 ? a : b);
        a.Dispose();
        b.Dispose();
        Expect(await copy.ConfigureAwait(false), totals, CompletionStatus.Ok, CompletionStatus.Fault);
    }

    private static async Task CopyAndVerifyAsync(DeviceContext context, CommandQueue queue, HostBuffer src, HostBuffer dst, Random random, Totals totals)
    {
        var length = (ulong)random.Next(1, (int)src.Length);
        var offset = (ulong)random.Next(0, (int)(src.Length - length) + 1);
        var result = await queue.CopyAsync(context, (ulong)src.Address + offset, (ulong)dst.Address + offset, length).ConfigureAwait(false);
        if (Expect(result, totals, CompletionStatus.Ok))
        {
            Verify(totals, src.Span.Slice((int)offset, (int)length).SequenceEqual(dst.Span.Slice((int)offset, (int)length)));
        }
    }

    // ---- Seeded scenarios ------------------------------------------------------------------------------------

    private static async Task ScenariosAsync(FpgaDevice device, StressOptions options, Stopwatch clock, Totals totals, ServiceTotals services, List<string> failures, CancellationToken ct)
    {
        var explorer = new ScheduleExplorer();
        var previous = ScheduleHooks.Install(explorer);
        var noFault = device.CreateContext(new ContextOptions { NoFault = true });
        var faulting = device.CreateContext();
        var caps = device.Info.Capabilities;
        var queues = caps.Queues >= 2
            ? new[] { device.OpenQueue(0, 16), device.OpenQueue(1, 16, CompletionMode.Poll) }
            : [device.OpenQueue(0, 16)];
        var spareQueue = caps.Queues >= 3 ? 2 : -1;
        var chunk = HostBuffer.Allocate(PageTableFormat.HugePageSize);
        var small = Enumerable.Range(0, 6).Select(_ => HostBuffer.Allocate(16 * PageTableFormat.PageSize)).ToArray();
        FpgaDevice? limited = null;
        var originalBudget = device.OnDemand.Budget;
        var budgets = new List<int>();
        var minimum = FpgaDeviceOptions.MinimumOnDemandPagesPerQueue * (queues.Length + 1); // the open queues and the spare one
        for (var b = minimum; b <= Math.Max(minimum, Math.Min(originalBudget, 64)); b++)
        {
            budgets.Add(b);
        }

        try
        {
            if (device.Info.Backend == BackendKind.Model && device.Oracle is not null)
            {
                // A second device, the model, with a small locked-memory limit: its fault path meets the limit.
                limited = FpgaDevice.Open(new FpgaDeviceOptions { Backend = BackendKind.Model, MemlockLimitBytes = 512UL << 10, OnDemandBudgetPages = 64 });
                limited.StartFaultService(options.FaultService);
            }

            var index = 0;
            while (clock.Elapsed < options.Duration && !ct.IsCancellationRequested)
            {
                var seed = unchecked((options.Seed * 1_000_003) + index);
                var kind = index % s_kinds.Length;
                index++;
                explorer.Begin(seed);
                var scenario = new Scenario(device, noFault, faulting, queues, spareQueue, chunk, small, limited, options, new Random(seed), totals, services);
                var work = kind switch
                {
                    0 => scenario.PromotionAndSplitAsync(),
                    1 => scenario.OverlapAndDowngradeAsync(),
                    2 => scenario.UnregisterInFlightAsync(),
                    3 => scenario.EvictionUnderBudgetAsync(budgets[index / s_kinds.Length % budgets.Count]),
                    4 => scenario.FaultServiceRestartAsync(),
                    5 => scenario.PinLimitOnTheFaultPathAsync(),
                    6 => scenario.BufferFreedUnderItsCommandAsync(),
                    _ => scenario.QueueClosedUnderItsSubmittersAsync(),
                };
                if (!await Bounded(work, options, totals, failures, $"scenario {s_kinds[kind]} (seed {seed})", ct).ConfigureAwait(false))
                {
                    return;
                }

                totals.RecordInterleaving(explorer.End());
                Interlocked.Increment(ref totals.Scenarios);
                Interlocked.Increment(ref totals.Kinds[kind]);

                // Quiescent: every thread of the scenario has returned and the fault service has finished the reclaim
                // its last answers may have started (F3), so cached entries may not exceed the tables.
                if (device.Faults is { } service && !service.WaitUntilIdle(options.OperationTimeout))
                {
                    Fail(failures, $"the fault service was still busy {options.OperationTimeout.TotalSeconds:0} s after scenario {s_kinds[kind]} (seed {seed})");
                }

                var violations = device.Oracle?.Audit() ?? [];
                Interlocked.Increment(ref totals.Audits);
                foreach (var v in violations.Take(3))
                {
                    Fail(failures, $"audit after scenario {s_kinds[kind]} (seed {seed}): {v}");
                }
            }
        }
        finally
        {
            ScheduleHooks.Install(previous);
            totals.SchedulePoints = explorer.PointsReached;
            totals.BadCompletions += queues.Sum(q => q.BadCompletions);
            totals.PhaseGlitches += queues.Sum(q => q.PhaseGlitches);
            foreach (var q in queues)
            {
                q.Dispose();
            }

            noFault.Dispose();
            faulting.Dispose();
            chunk.Dispose();
            foreach (var b in small)
            {
                b.Dispose();
            }

            if (device.Faults is null)
            {
                services.Track(device.StartFaultService(options.FaultService));
            }

            device.SetOnDemandBudget(originalBudget);
            totals.OverBudget = device.OnDemandOverBudget;
            if (limited is not null)
            {
                totals.PinLimitFaults += limited.Faults?.Metrics.Faults ?? 0;
                totals.LimitEvictions += limited.Faults?.Metrics.LimitEvictions ?? 0;
                services.Track(limited.Faults!);
                totals.PinLimitOracle = limited.Oracle?.Read();
                limited.Dispose();
            }
        }
    }

    private static async Task<bool> Bounded(Task work, StressOptions options, Totals totals, List<string> failures, string what, CancellationToken ct)
    {
        var finished = await Task.WhenAny(work, Task.Delay(options.OperationTimeout, ct)).ConfigureAwait(false);
        if (finished != work)
        {
            Interlocked.Increment(ref totals.Deadlocks);
            Fail(failures, $"{what} did not finish within {options.OperationTimeout.TotalSeconds:0} s");
            return false;
        }

        try
        {
            await work.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Fail(failures, $"{what}: {ex.GetType().Name}: {ex.Message}");
            return false;
        }

        Interlocked.Increment(ref totals.Operations);
        return true;
    }

    private static void Fail(List<string> failures, string line)
    {
        lock (failures)
        {
            if (failures.Count < 50)
            {
                failures.Add(line);
            }
        }
    }

    // True when the status is one the caller allows; counts the command either way.
    private static bool Expect(in CommandResult result, Totals totals, CompletionStatus allowed, CompletionStatus? orAllowed = null)
    {
        Interlocked.Increment(ref totals.Commands);
        if (result.Status == allowed || result.Status == orAllowed)
        {
            return result.Status == CompletionStatus.Ok;
        }

        Interlocked.Increment(ref totals.UnexpectedStatus);
        return false;
    }

    private static void Verify(Totals totals, bool same)
    {
        Interlocked.Increment(ref totals.Verified);
        if (!same)
        {
            Interlocked.Increment(ref totals.DataErrors);
        }
    }

    // One scenario: a few threads that start together and race one protocol.
    private sealed class Scenario(
        FpgaDevice device, DeviceContext noFault, DeviceContext faulting, CommandQueue[] queues, int spareQueue, HostBuffer chunk, HostBuffer[] small,
        FpgaDevice? limited, StressOptions options, Random random, Totals totals, ServiceTotals services)
    {
        private const ulong Half = PageTableFormat.HugePageSize / 2;

        // A pin completes a 2 MiB chunk (promotion) and unpins split it again, while CRCs run over the half that stays
        // pinned and another thread upgrades and downgrades a page of it; the promoted chunk's new half is read by the
        // device right after its pins return (defect 1). The shape (pieces, CRCs, the third thread) comes from the seed.
        public async Task PromotionAndSplitAsync()
        {
            random.NextBytes(chunk.Span);
            using var held = noFault.Pin(chunk.Address, Half, DmaAccess.DeviceRead);
            var expectedFirst = Crc32C.Compute(chunk.Span[..(int)Half]);
            var expectedSecond = Crc32C.Compute(chunk.Span[(int)Half..]);
            var pieces = 1 + random.Next(3);
            var crcs = 1 + random.Next(3);
            var upgradePage = random.Next((int)(Half / PageTableFormat.PageSize));
            var actions = new List<Func<Task>>
            {
                async () =>
                {
                    var pins = new List<PinnedBuffer>();
                    var step = Half / (ulong)pieces & ~(PageTableFormat.PageSize - 1);
                    for (var i = 0; i < pieces; i++)
                    {
                        var from = Half + ((ulong)i * step);
                        var length = i == pieces - 1 ? PageTableFormat.HugePageSize - from : step;
                        pins.Add(noFault.Pin(chunk.Address + (nint)from, length, DmaAccess.DeviceRead));
                    }

                    var second = await queues[0].Crc32CAsync(noFault, (ulong)chunk.Address + Half, Half).ConfigureAwait(false);
                    if (Expect(second, totals, CompletionStatus.Ok))
                    {
                        Verify(totals, second.Result == expectedSecond);
                    }

                    foreach (var pin in pins.OrderBy(_ => random.Next()))
                    {
                        pin.Dispose();
                    }
                },
                async () =>
                {
                    for (var i = 0; i < crcs; i++)
                    {
                        var first = await queues[^1].Crc32CAsync(noFault, (ulong)chunk.Address, Half).ConfigureAwait(false);
                        if (Expect(first, totals, CompletionStatus.Ok))
                        {
                            Verify(totals, first.Result == expectedFirst);
                        }
                    }
                },
            };
            if (random.Next(2) == 0)
            {
                // A write pin over one page of the held half: a split (the page gains W), then a downgrade.
                actions.Add(() =>
                {
                    noFault.Pin(chunk.Address + (upgradePage * PageSize), PageTableFormat.PageSize, DmaAccess.ReadWrite).Dispose();
                    return Task.CompletedTask;
                });
            }

            await Together([.. actions]).ConfigureAwait(false);
        }

        // A read pin covers the buffer; read-write pins over parts of it come and go (downgrades) while the device reads
        // through the read pin; afterwards a write through a downgraded page faults (NOFAULT context).
        public async Task OverlapAndDowngradeAsync()
        {
            var buffer = small[0];
            random.NextBytes(buffer.Span);
            using var reader = noFault.Pin(buffer, DmaAccess.DeviceRead);
            var pattern = (ulong)random.NextInt64();
            var writers = 1 + random.Next(2);
            var actions = new List<Func<Task>>();
            var downgraded = new List<ulong>();
            for (var w = 0; w < writers; w++)
            {
                var first = random.Next(14);
                var pages = 1 + random.Next(2);
                var queue = queues[w % queues.Length];
                downgraded.Add((ulong)buffer.Address + ((ulong)first * PageTableFormat.PageSize));
                actions.Add(async () =>
                {
                    using (noFault.Pin(buffer.Address + (first * PageSize), (ulong)pages * PageTableFormat.PageSize, DmaAccess.ReadWrite))
                    {
                        Expect(await queue.FillAsync(noFault, (ulong)buffer.Address + ((ulong)first * PageTableFormat.PageSize), 64, pattern).ConfigureAwait(false), totals, CompletionStatus.Ok);
                    }
                });
            }

            actions.Add(async () =>
            {
                for (var i = 1 + random.Next(2); i > 0; i--)
                {
                    Expect(await queues[^1].Crc32CAsync(noFault, (ulong)buffer.Address, buffer.Length).ConfigureAwait(false), totals, CompletionStatus.Ok);
                }
            });
            await Together([.. actions]).ConfigureAwait(false);
            foreach (var dva in downgraded)
            {
                Expect(await queues[0].FillAsync(noFault, dva, 64, pattern).ConfigureAwait(false), totals, CompletionStatus.Fault);
            }
        }

        // An on-demand COPY while another thread unregisters its destination.
        public async Task UnregisterInFlightAsync()
        {
            var (src, dst) = (small[1], small[2]);
            random.NextBytes(src.Span);
            var a = faulting.RegisterOnDemand(src, DmaAccess.DeviceRead);
            var b = faulting.RegisterOnDemand(dst, DmaAccess.ReadWrite);
            var length = (ulong)random.Next(1, (int)src.Length);
            var spin = random.Next(2000);
            var victim = random.Next(2) == 0 ? a : b;
            try
            {
                await Together(
                    async () => Expect(await queues[random.Next(queues.Length)].CopyAsync(faulting, (ulong)src.Address, (ulong)dst.Address, length).ConfigureAwait(false), totals, CompletionStatus.Ok, CompletionStatus.Fault),
                    () =>
                    {
                        Thread.SpinWait(spin);
                        faulting.Unregister(victim);
                        return Task.CompletedTask;
                    }).ConfigureAwait(false);
            }
            finally
            {
                a.Dispose();
                b.Dispose();
            }
        }

        // Two queues copy between on-demand regions under a budget (down to the minimum for the open queues).
        public async Task EvictionUnderBudgetAsync(int budget)
        {
            device.SetOnDemandBudget(budget);
            totals.Budgets.Add(budget);
            var regions = new List<OnDemandRegion>();
            try
            {
                for (var i = 0; i < 4; i++)
                {
                    random.NextBytes(small[i + 1].Span);
                    regions.Add(faulting.RegisterOnDemand(small[i + 1], i % 2 == 0 ? DmaAccess.DeviceRead : DmaAccess.ReadWrite));
                }

                await Together(
                    () => CopyChecked(queues[0], small[1], small[2]),
                    () => CopyChecked(queues[^1], small[3], small[4])).ConfigureAwait(false);
            }
            finally
            {
                regions.ForEach(r => r.Dispose());
            }

            async Task CopyChecked(CommandQueue queue, HostBuffer src, HostBuffer dst)
            {
                var copy = await queue.CopyAsync(faulting, (ulong)src.Address, (ulong)dst.Address, src.Length).ConfigureAwait(false);
                if (Expect(copy, totals, CompletionStatus.Ok))
                {
                    Verify(totals, src.Span.SequenceEqual(dst.Span));
                }
            }
        }

        // The fault service stops and a new one starts while an on-demand FILL faults: the fill ends (OK, or FAULT for
        // faults met while no ring was attached), and no fault is lost.
        public async Task FaultServiceRestartAsync()
        {
            var buffer = small[5];
            using var region = faulting.RegisterOnDemand(buffer, DmaAccess.ReadWrite);
            var length = (ulong)random.Next(1, 17) * PageTableFormat.PageSize;
            var restarts = 1 + random.Next(2);
            await Together(
                async () => Expect(await queues[random.Next(queues.Length)].FillAsync(faulting, (ulong)buffer.Address, length, (ulong)random.NextInt64()).ConfigureAwait(false), totals, CompletionStatus.Ok, CompletionStatus.Fault),
                () =>
                {
                    for (var i = 0; i < restarts; i++)
                    {
                        if (device.Faults is { } running)
                        {
                            services.Track(running);
                            running.Dispose();
                        }

                        services.Track(device.StartFaultService(options.FaultService));
                        Interlocked.Increment(ref totals.Restarts);
                    }

                    return Task.CompletedTask;
                }).ConfigureAwait(false);
        }

        // The locked-memory limit reached on the fault path (a second model device with a 512 KiB limit): a FILL larger
        // than the limit completes (the fault path gives back pages), or is aborted if nothing can be given back; never hangs.
        public async Task PinLimitOnTheFaultPathAsync()
        {
            if (limited is null)
            {
                await OverlapAndDowngradeAsync().ConfigureAwait(false);
                return;
            }

            using var context = limited.CreateContext();

            // Pins hold most of the other half of the limit (the budget has the first half): on-demand pages meet the
            // limit before the budget, and the fault path gives back pages instead (or aborts when it cannot).
            using var held = HostBuffer.Allocate(200UL << 10);
            using var pin = context.Pin(held, DmaAccess.DeviceRead);
            using var first = HostBuffer.Allocate(384UL << 10);
            using var second = HostBuffer.Allocate(384UL << 10);
            using var a = context.RegisterOnDemand(first, DmaAccess.ReadWrite);
            using var b = context.RegisterOnDemand(second, DmaAccess.ReadWrite);
            using var q0 = limited.OpenQueue(0, 4);
            using var q1 = limited.OpenQueue(1, 4, CompletionMode.Poll);
            await Together(() => FillChecked(q0, first), () => FillChecked(q1, second)).ConfigureAwait(false);

            async Task FillChecked(CommandQueue queue, HostBuffer buffer)
            {
                var pattern = (byte)random.Next(1, 255);
                var fill = await queue.FillAsync(context, (ulong)buffer.Address, buffer.Length, 0x0101_0101_0101_0101UL * pattern).ConfigureAwait(false);
                if (Expect(fill, totals, CompletionStatus.Ok, CompletionStatus.Fault))
                {
                    Verify(totals, buffer.Span.IndexOfAnyExcept(pattern) < 0);
                }
            }
        }

        // A pinned buffer freed while its CRC runs: the CRC ends (OK, or FAULT once the pin is gone) and the device never
        // reaches the freed memory (the oracle's freed-memory count).
        public async Task BufferFreedUnderItsCommandAsync()
        {
            var pages = (ulong)random.Next(1, 9);
            var buffer = HostBuffer.Allocate(pages * PageTableFormat.PageSize);
            noFault.Pin(buffer, DmaAccess.DeviceRead);
            var address = (ulong)buffer.Address;
            var crcs = 1 + random.Next(2);
            await Together(
                async () =>
                {
                    for (var i = 0; i < crcs; i++)
                    {
                        Expect(await queues[i % queues.Length].Crc32CAsync(noFault, address, pages * PageTableFormat.PageSize).ConfigureAwait(false), totals, CompletionStatus.Ok, CompletionStatus.Fault);
                    }
                },
                () =>
                {
                    buffer.Dispose();
                    return Task.CompletedTask;
                }).ConfigureAwait(false);
        }

        // A queue closed while submitters post to it: every submission ends, with its result or a typed error.
        public async Task QueueClosedUnderItsSubmittersAsync()
        {
            if (spareQueue < 0)
            {
                await UnregisterInFlightAsync().ConfigureAwait(false);
                return;
            }

            var queue = device.OpenQueue(spareQueue, 2, random.Next(2) == 0 ? CompletionMode.Interrupt : CompletionMode.Poll);
            var actions = new List<Func<Task>>();
            for (var t = 1 + random.Next(3); t > 0; t--)
            {
                var commands = 1 + random.Next(6);
                actions.Add(async () =>
                {
                    for (var i = 0; i < commands; i++)
                    {
                        try
                        {
                            Expect(await queue.NopAsync(noFault).ConfigureAwait(false), totals, CompletionStatus.Ok);
                        }
                        catch (DisposedResourceException)
                        {
                            return;
                        }
                        catch (DeviceTimeoutException)
                        {
                            return;
                        }
                    }
                });
            }

            var spin = random.Next(5000);
            actions.Add(() =>
            {
                Thread.SpinWait(spin);
                queue.Dispose();
                return Task.CompletedTask;
            });
            await Together([.. actions]).ConfigureAwait(false);
            totals.BadCompletions += queue.BadCompletions;
            totals.PhaseGlitches += queue.PhaseGlitches;
        }

        // Starts the actions on threads of their own at once (a barrier), and waits for all.
        private static Task Together(params Func<Task>[] actions)
        {
            var barrier = new Barrier(actions.Length);
            return Task.WhenAll(actions.Select(action => Task.Factory.StartNew(
                () =>
                {
                    barrier.SignalAndWait(TimeSpan.FromSeconds(10));
                    return action();
                },
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default).Unwrap()));
        }
    }

    // Fault services the run started or stopped: their counters add up (a stopped service's stay readable).
    private sealed class ServiceTotals
    {
        private readonly HashSet<FaultService> _services = [];

        public long Faults => Sum(m => m.Faults);

        public long Aborts => Sum(m => m.Aborts);

        public long Dropins => Sum(m => m.Dropins);

        public long Failures => Sum(m => m.Failures);

        public void Track(FaultService service)
        {
            lock (_services)
            {
                _services.Add(service);
            }
        }

        private long Sum(Func<FaultMetrics, long> counter)
        {
            lock (_services)
            {
                return _services.Sum(s => counter(s.Metrics));
            }
        }
    }

    private sealed class Totals
    {
        public readonly long[] Kinds = new long[s_kinds.Length];
        public readonly HashSet<int> Budgets = [];
        private readonly HashSet<ulong> _interleavings = [];
        public long Operations;
        public long Commands;
        public long Verified;
        public long DataErrors;
        public long UnexpectedStatus;
        public long Deadlocks;
        public long Scenarios;
        public long SchedulePoints;
        public long Restarts;
        public long PinLimitFaults;
        public long Audits;
        public long PhaseGlitches;
        public long BadCompletions;
        public long OverBudget;
        public long LimitEvictions;
        public DeviceOracleReport? PinLimitOracle;

        public long DistinctInterleavings
        {
            get
            {
                lock (_interleavings)
                {
                    return _interleavings.Count;
                }
            }
        }

        public void RecordInterleaving(ulong hash)
        {
            lock (_interleavings)
            {
                _interleavings.Add(hash);
            }
        }
    }
}
