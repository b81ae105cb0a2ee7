using System.Diagnostics;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Health;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver;

/// <summary>What <see cref="FpgaDevice.Open(FpgaDeviceOptions?)"/> read from the device.</summary>
/// <param name="Backend">Board or model.</param>
/// <param name="BackendDescription">Which device, where.</param>
/// <param name="Id">The ID register.</param>
/// <param name="Version">The VERSION register.</param>
/// <param name="Capabilities">The CAPS register.</param>
/// <param name="ClockHz">The CLOCK_HZ register.</param>
/// <param name="InterruptVectors">MSI-X vectors granted: 3, or 1.</param>
public sealed record DeviceInfo(
    BackendKind Backend,
    string BackendDescription,
    ulong Id,
    Fa1Version Version,
    Capabilities Capabilities,
    ulong ClockHz,
    int InterruptVectors);

/// <summary>
/// An open FA-1: checked (ID, VERSION), reset, capabilities read, interrupts connected and enabled.
/// Dispose releases every descriptor, mapping and thread it holds.
/// </summary>
public sealed partial class FpgaDevice : IDisposable
{
    // The least DVA width the driver works with: buffers are placed at their process addresses (DVA = VA).
    private const int MinimumVaBits = 32;
    private const int MaximumTlbSetsLog2 = 24;
    private const ulong MinimumClockHz = 1_000;
    private const ulong MaximumClockHz = 10_000_000_000;
    private readonly ILogger _logger;
    private readonly FpgaDeviceOptions _options;
    private readonly List<CommandQueue> _queues = [];
    private readonly Lock _queueLock = new();
    private CommandQueue?[] _openQueues = [];

    // Copy-on-write under _queueLock: the health check and the release path read it without a lock.
    private volatile CommandQueue[] _queueArray = [];
    private readonly Lock _recoverLock = new();
    private DeviceHealth? _health;
    private long _healthHarvested;
    private long _spuriousErrors;
    private OnDemandPager? _pager;
    private DeviceInterrupts? _interrupts;
    private DeviceMmu? _mmu;
    private FaultService? _faults;
    private ulong _fatalRaw;
    private volatile bool _hasFatal;
    private int _disposed;

    private FpgaDevice(IDeviceBackend backend, FpgaDeviceOptions options)
    {
        Backend = backend;
        _options = options;
        _logger = options.LoggerFactory.CreateLogger<FpgaDevice>();
        Info = null!;
    }

    /// <summary>What the device reported when it was opened.</summary>
    public DeviceInfo Info { get; private set; }

    /// <summary>The backend seam, for the driver's own layers (MMU, queues, faults).</summary>
    internal IDeviceBackend Backend { get; }

    /// <summary>What the interrupt dispatcher saw: vectors granted, interrupts per cause, a lost device (observation only).</summary>
    public DeviceInterrupts Interrupts => _interrupts ?? throw new ObjectDisposedException(nameof(FpgaDevice));

    /// <summary>Bytes pinned through the IOMMU now (pins, rings and page tables), as charged against the memlock limit.</summary>
    public ulong PinnedBytes => Mmu.Accountant.PinnedBytes;

    /// <summary>The locked-memory limit pins are charged against, and whether it is enforced.</summary>
    public (ulong Limit, bool Enforced) PinLimit => (Mmu.Accountant.Limit, Mmu.Accountant.Enforced);

    /// <summary>4 KiB pages mapped in the platform IOMMU now.</summary>
    public int IommuMappedPages => Mmu.Iommu.MappedPages;

    internal DeviceMmu Mmu => _mmu ?? throw new DisposedResourceException("The FA-1 device");

    /// <summary>The MMU while the device is open, or null.</summary>
    internal DeviceMmu? TryMmu => _mmu;

    internal FpgaDeviceOptions Options => _options;

    /// <summary>
    /// The backend's oracle when it has one (the model: stale accesses, lost faults), for test harnesses such
    /// as the stress run; null on a board. It observes the device and changes nothing.
    /// </summary>
    public IDeviceOracle? Oracle => Backend.Oracle;

    /// <summary>
    /// What the driver knows of the device: Ready, or Lost, Fatal or Hung (every waiter released with
    /// <see cref="DeviceLostException"/>, <see cref="DeviceFatalException"/> or <see cref="DeviceHungException"/>, new
    /// commands refused with it) until <see cref="Recover"/> (or AutoRecover) brings it back.
    /// </summary>
    public DeviceState State => Health.State;

    /// <summary>
    /// Raised after each state change (lost, fatal, hung, recovering, back to ready), on the thread pool, in order. A
    /// handler may call <see cref="Recover"/>.
    /// </summary>
    public event EventHandler<DeviceStateChangedEventArgs>? StateChanged
    {
        add => Health.StateChanged += value;
        remove => Health.StateChanged -= value;
    }

    /// <summary>The exception waiters were released with while the device is not Ready; null while it is.</summary>
    public FpgaAccelException? Failure => Health.Failure;

    /// <summary>Times the device went Lost, Fatal or Hung since it was opened.</summary>
    public long Failures => Health.Failures;

    /// <summary>Recoveries completed since the device was opened.</summary>
    public long Recoveries => Health.Recoveries;

    /// <summary>Health checks run (they run only while something waits on the device).</summary>
    public long HealthChecks => Health.Sweeps;

    /// <summary>
    /// Completions the health check harvested from interrupt-mode queues: a lost (or not yet delivered) COMPLETION
    /// message would otherwise have left them pending.
    /// </summary>
    public long CompletionsFoundByHealthCheck => Interlocked.Read(ref _healthHarvested);

    /// <summary>ERROR interrupts with STATUS.FATAL clear: ignored (a glitch, not a failure).</summary>
    public long SpuriousErrorInterrupts => Interlocked.Read(ref _spuriousErrors);

    /// <summary>Pages whose TLB fence failed while the device was hung: kept mapped (pinned) until the device is known gone or reset.</summary>
    public int PagesAwaitingFence => Mmu.QuarantinedPages;

    internal DeviceHealth Health => _health ?? throw new DisposedResourceException("The FA-1 device");

    /// <summary>
    /// The backend's fault injection when it has one (the model: removal and return, a hung engine, lost MSI-X,
    /// a stuck INV_DONE, FATAL, garbage records), for test harnesses and the stress run; null on a board.
    /// </summary>
    public IDeviceFaultInjection? FaultInjection => Backend.FaultInjection;

    /// <summary>The fatal error the device reported, if any (spec 3 ERROR).</summary>
    public ErrorRegister? FatalError => _hasFatal ? ErrorRegister.FromRaw(Interlocked.Read(ref _fatalRaw)) : null;

    /// <summary>Opens an FA-1 as <paramref name="options"/> say: board, model, or auto.</summary>
    public static FpgaDevice Open(FpgaDeviceOptions? options = null)
    {
        options ??= new FpgaDeviceOptions();
        options.Validate();
        var logger = options.LoggerFactory.CreateLogger<FpgaDevice>();
        var backend = BackendFactory.Create(options, logger);
        return Open(backend, options);
    }

    /// <summary>Opens the device behind <paramref name="backend"/>, taking ownership of it (disposed on failure too).</summary>
    internal static FpgaDevice Open(IDeviceBackend backend, FpgaDeviceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        options ??= new FpgaDeviceOptions();
        var device = new FpgaDevice(backend, options);
        try
        {
            options.Validate();
            device.Initialize();
            return device;
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    /// <summary>Creates a hardware context with its own device page table.</summary>
    public DeviceContext CreateContext(ContextOptions? options = null) => Mmu.CreateContext(options ?? new ContextOptions());

    /// <summary>
    /// Opens command queue <paramref name="index"/> (0 .. CAPS.queues-1) with rings of <paramref name="entries"/> slots;
    /// <paramref name="continuations"/> says where the code after an await of a result runs.
    /// </summary>
    public CommandQueue OpenQueue(int index = 0, int entries = 256, CompletionMode mode = CompletionMode.Interrupt, ContinuationMode continuations = ContinuationMode.ThreadPool)
    {
        var caps = Info.Capabilities;
        if (index < 0 || index >= caps.Queues)
        {
            throw new InvalidDeviceOptionException("queue", index, $"the device has queues 0..{caps.Queues - 1}");
        }

        if (entries < 2 || entries > 1 << RingLimits.QueueRingMaxLog2 || (entries & (entries - 1)) != 0)
        {
            throw new InvalidDeviceOptionException("entries", entries, $"a ring holds a power of two from 2 to {1 << RingLimits.QueueRingMaxLog2} entries");
        }

        if (!Enum.IsDefined(mode))
        {
            throw new InvalidDeviceOptionException("mode", mode, "a queue completes by Interrupt or by Poll");
        }

        if (!Enum.IsDefined(continuations))
        {
            throw new InvalidDeviceOptionException("continuations", continuations, "continuations run on the ThreadPool or Inline on the harvesting thread");
        }

        if (Health.Failure is { } failure)
        {
            throw failure;
        }

        lock (_queueLock)
        {
            if (_queues.Any(q => q.Index == index && !q.IsDisposed))
            {
                throw new InvalidDeviceOptionException("queue", index, "that queue is already open; dispose it first or open another index");
            }

            // Issue 11, defect 12: every open queue may have a COPY stalled on faults, which needs two pages at once.
            var minimum = OnDemandPager.MinimumBudgetFor(_queues.Count(q => !q.IsDisposed) + 1);
            if (Mmu.Pager.Budget < minimum)
            {
                throw new InvalidDeviceOptionException(nameof(FpgaDeviceOptions.OnDemandBudgetPages), Mmu.Pager.Budget,
                    $"{minimum / OnDemandPager.MinimumBudget} open queues need an on-demand budget of at least {minimum} pages (a COPY stalled on a fault needs its source and its destination page); raise the budget or open fewer queues");
            }

            var queue = new CommandQueue(this, index, entries, mode, continuations, _options.LoggerFactory.CreateLogger<CommandQueue>());
            _queues.RemoveAll(q => q.IsDisposed);
            _queues.Add(queue);
            _queueArray = [.. _queues];
            Volatile.Write(ref _openQueues[index], queue);
            return queue;
        }
    }

    /// <summary>
    /// Starts the device page-fault service (spec 4.4): faults in contexts that are not NOFAULT are
    /// resolved from the contexts' pins and on-demand regions. One per device; disposed with it.
    /// </summary>
    public FaultService StartFaultService(FaultServiceOptions? options = null)
    {
        lock (_queueLock)
        {
            if (_faults is not null)
            {
                throw new InvalidDeviceOptionException("fault service", "running", "one fault service per device is running already; use FpgaDevice.Faults");
            }

            _faults = new FaultService(this, options ?? new FaultServiceOptions(), _options.LoggerFactory.CreateLogger<FaultService>());
            return _faults;
        }
    }

    /// <summary>The running fault service, or null.</summary>
    public FaultService? Faults => Volatile.Read(ref _faults);

    /// <summary>2^CAPS.VA bits: the first DVA the device cannot address (CAPS checked at open, so the shift cannot wrap).</summary>
    internal ulong VaLimit { get; private set; }

    /// <summary>A queue closed: the pager stops keeping pages for its commands.</summary>
    internal void OnQueueClosed(CommandQueue queue)
    {
        Interlocked.CompareExchange(ref _openQueues[queue.Index], null, queue);
        lock (_queueLock)
        {
            _queueArray = [.. _queues.Where(q => q != queue && !q.IsDisposed)];
        }

        Volatile.Read(ref _pager)?.ForgetQueue(queue.Index);
    }

    // The pager's view of a queue: commands in flight, or -1 when it is not open. Lock-free (the fault path asks).
    private int CommandsInFlight(int queue) =>
        (uint)queue < (uint)_openQueues.Length && Volatile.Read(ref _openQueues[queue]) is { } open ? (int)Math.Min(open.Outstanding, int.MaxValue) : -1;

    /// <summary>A fault service that stopped: a new one may start.</summary>
    internal void OnFaultServiceStopped(FaultService service)
    {
        lock (_queueLock)
        {
            if (_faults == service)
            {
                _faults = null;
            }
        }
    }

    /// <summary>
    /// Changes the on-demand budget while the device runs; pages above a smaller budget are evicted by the next faults.
    /// It must hold two pages per open queue and at most half the locked-memory limit.
    /// </summary>
    public void SetOnDemandBudget(int pages)
    {
        lock (_queueLock)
        {
            var minimum = OnDemandPager.MinimumBudgetFor(_queues.Count(q => !q.IsDisposed));
            var maximum = Mmu.Accountant.Enforced ? (long)(Mmu.Accountant.Limit / 2 / 4096) : 1 << 24;
            if (pages < minimum || pages > Math.Max(minimum, Math.Min(maximum, 1 << 24)))
            {
                throw new InvalidDeviceOptionException(nameof(FpgaDeviceOptions.OnDemandBudgetPages), pages,
                    $"with {minimum / OnDemandPager.MinimumBudget} open queues the budget is {minimum} to {Math.Max(minimum, Math.Min(maximum, 1 << 24))} pages (two per open queue; at most half the locked-memory limit)");
            }

            Mmu.Pager.SetBudget(pages);
        }
    }

    /// <summary>Faults that took a place over the on-demand budget so that a stalled access kept the pages it needs (normally 0).</summary>
    public long OnDemandOverBudget => Mmu.Pager.OverBudget;

    /// <summary>Pages pinned on demand now, and the budget.</summary>
    public (int Pinned, int Budget, long Evictions) OnDemand => (Mmu.Pager.PinnedPages, Mmu.Pager.Budget, Mmu.Pager.Evictions);

    /// <summary>The on-demand pager's counters now: watermarks, eviction batches and fences, fault-around, prefetch (issue 15).</summary>
    public OnDemandStatistics OnDemandStatistics => OnDemandStatistics.Read(Mmu);

    /// <summary>Reads CYCLES, the device's free-running cycle counter.</summary>
    public ulong ReadCycles() => ReadChecked(Fa1Registers.Cycles, "reading CYCLES");

    /// <summary>
    /// Writes SCRATCH and reads it back: a liveness check. Returns true when the value came back.
    /// All ones is refused as a pattern: it is what a device that dropped off the bus reads (spec 2).
    /// </summary>
    public bool CheckLiveness(ulong pattern)
    {
        if (pattern == Fa1Identity.DeviceLost)
        {
            throw new ArgumentOutOfRangeException(nameof(pattern), pattern, "All ones cannot prove liveness: a lost device reads all ones. Use another pattern.");
        }

        Backend.Write64(Fa1Registers.Scratch, pattern);
        var value = Backend.Read64(Fa1Registers.Scratch);
        if (value == Fa1Identity.DeviceLost && Backend.Read64(Fa1Registers.Id) == Fa1Identity.DeviceLost)
        {
            throw new DeviceLostException("during the SCRATCH liveness check", Backend.Description);
        }

        return value == pattern;
    }

    /// <summary>Resets the device (spec 3 CTRL.RESET) and waits for READY within the reset timeout.</summary>
    internal void Reset()
    {
        Backend.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Reset);
        var timeout = _options.ResetTimeout;
        var clock = Stopwatch.StartNew();
        var spins = 0;
        while (true)
        {
            var status = Backend.Read64(Fa1Registers.Status);
            if (status == Fa1Identity.DeviceLost)
            {
                throw new DeviceLostException("while waiting for its reset to complete", Backend.Description);
            }

            if ((status & (ulong)StatusBits.Resetting) == 0 && (status & (ulong)StatusBits.Ready) != 0)
            {
                LogResetDone(_logger, clock.Elapsed.TotalMicroseconds);
                return;
            }

            if (clock.Elapsed > timeout)
            {
                throw new DeviceResetTimeoutException(timeout, status);
            }

            // Spin briefly (a model reset takes ~100 us), then yield the core: these machines have two.
            if (++spins < 200)
            {
                Thread.SpinWait(64);
            }
            else
            {
                Thread.Sleep(1);
            }
        }
    }

    /// <summary>
    /// Closes the device: its queues (waiting, bounded, for commands in flight), the fault service, every context
    /// and pin, the interrupt dispatcher, then the backend. Safe to call twice.
    /// </summary>
    /// <exception cref="InvalidOperationException">Called from an inline continuation (<see cref="ContinuationMode.Inline"/>).</exception>
    public void Dispose()
    {
        CommandQueue.ThrowIfInInlineContinuation("the device");
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            // A device lost before anything noticed: find out now, so every waiter is released at once and the
            // queues below have nothing to wait for (issue 12: dispose of a lost device is not a timeout per queue).
            if (_health is { IsReady: true } && _mmu is not null)
            {
                try
                {
                    CheckRegisters("while the device was being disposed");
                }
                catch (FpgaAccelException ex)
                {
                    LogDisposeCheckFailed(_logger, ex);
                }
            }

            CommandQueue[] queues;
            lock (_queueLock)
            {
                queues = [.. _queues];
                _queues.Clear();
                _queueArray = [];
            }

            foreach (var q in queues)
            {
                q.Dispose();
            }

            _faults?.Dispose();
            _faults = null;
            _health?.Dispose();
            _mmu?.Dispose();
            _mmu = null;
            _interrupts?.Dispose();
            _interrupts = null;
        }
        finally
        {
            Backend.Dispose();
        }
    }

    private void Initialize()
    {
        var id = Backend.Read64(Fa1Registers.Id);
        if (id == Fa1Identity.DeviceLost)
        {
            throw new DeviceLostException("at open (ID register)", Backend.Description);
        }

        if (id != Fa1Identity.IdValue)
        {
            throw new UnexpectedDeviceIdException(id, Backend.Description);
        }

        var version = Fa1Version.FromRaw(ReadChecked(Fa1Registers.Version, "at open (VERSION register)"));
        if (!version.SatisfiesRequirement(_options.RequiredVersion))
        {
            throw new IncompatibleDeviceVersionException(version, _options.RequiredVersion);
        }

        Reset();
        var caps = new Capabilities(ReadChecked(Fa1Registers.Caps, "at open (CAPS register)"));
        var clockHz = ReadChecked(Fa1Registers.ClockHz, "at open (CLOCK_HZ register)");
        CheckCapabilities(caps, clockHz);
        VaLimit = 1UL << caps.VaBits; // 32..48: checked above
        _interrupts = new DeviceInterrupts(Backend, _options.LoggerFactory.CreateLogger<DeviceInterrupts>());
        _health = new DeviceHealth(this, _options, _options.LoggerFactory.CreateLogger<DeviceHealth>());
        _interrupts.AllOnes = when => Health.ReportAllOnes(when);
        _interrupts.Subscribe(InterruptCauses.Error, OnErrorInterrupt);
        _interrupts.Subscribe(InterruptCauses.Completion, OnCompletionInterrupt);
        _openQueues = new CommandQueue?[caps.Queues];
        _mmu = new DeviceMmu(Backend, caps, _options, _options.LoggerFactory, CommandsInFlight);
        _pager = _mmu.Pager;
        _mmu.Invalidator.Health = _health;
        _mmu.DeviceGone = () => _health.State == DeviceState.Lost;
        Backend.Write64(Fa1Registers.IrqMask, 0);
        Backend.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Enable);
        Info = new DeviceInfo(Backend.Kind, Backend.Description, id, version, caps, clockHz, _interrupts.GrantedVectors);
        LogOpened(_logger, Backend.Kind, version.ToString(), caps.Contexts, caps.Queues, _interrupts.GrantedVectors);
    }

    // Spec 2: the device is not trusted. Every CAPS field and CLOCK_HZ is range-checked here, once, before a shift by a
    // device count (1 << VA bits wraps at 64), an array sized by one, or a division by the clock can use it.
    private static void CheckCapabilities(Capabilities caps, ulong clockHz)
    {
        // Spec 4.1: four levels of 512 entries translate 48-bit DVAs; DVA = the process's address needs room for it.
        Check("VA bits", (ulong)caps.VaBits, caps.VaBits is >= MinimumVaBits and <= PageTableFormat.VaBits,
            $"the FA-1 page table translates {MinimumVaBits} to {PageTableFormat.VaBits}-bit DVAs (spec 4.1: four levels of 512 entries)");
        // IovaLayout: the driver's IOVAs are process addresses (below 2^47 on x86-64), plus 2^47 when the device and the
        // IOMMU reach 48 bits; a device that cannot emit 47-bit IOVAs could not reach any of them.
        Check("IOVA bits", (ulong)caps.IovaBits, caps.IovaBits is >= 47 and <= 64,
            "the driver places DMA memory at IOVA = its process address (below 2^47), so the device must emit 47 to 64-bit IOVAs");
        Check("TLB ways", (ulong)caps.TlbWays, caps.TlbWays >= 1, "a device MMU has a TLB of at least one way (spec 4.1)");
        Check("TLB sets", (ulong)caps.TlbSetsLog2, caps.TlbSetsLog2 <= MaximumTlbSetsLog2, $"log2 of the TLB sets is at most {MaximumTlbSetsLog2}");

        // Decision D1: context blocks live at 0x1000..0x1FFF.
        Check("contexts", (ulong)caps.Contexts, caps.Contexts is >= 1 and <= Fa1Registers.MaxAddressableContexts,
            $"the register map holds 1 to {Fa1Registers.MaxAddressableContexts} contexts (decision D1)");
        Check("queues", (ulong)caps.Queues, caps.Queues is >= 1 and <= Fa1Registers.MaxAddressableQueues - 1,
            $"the register map holds 1 to {Fa1Registers.MaxAddressableQueues - 1} queues (spec 5)");
        Check("CLOCK_HZ", clockHz, clockHz is >= MinimumClockHz and <= MaximumClockHz,
            $"the fabric clock is {MinimumClockHz} Hz to {MaximumClockHz} Hz (cycle counts are turned into time with it)");

        void Check(string field, ulong value, bool ok, string rule)
        {
            if (!ok)
            {
                throw new InvalidCapabilitiesException(field, value, field == "CLOCK_HZ" ? clockHz : caps.Raw, rule);
            }
        }
    }

    // Runs on the dispatcher thread: every open queue harvests its completion ring.
    private void OnCompletionInterrupt()
    {
        lock (_queueLock)
        {
            foreach (var q in _queues)
            {
                q.OnCompletionInterrupt();
            }
        }
    }

    // Spec 3: entering FATAL latches ERROR and sends vector 2. STATUS tells a real FATAL from a glitch: an ERROR
    // message with STATUS.FATAL clear is counted and ignored (issue 12: it must not take a working device down).
    private void OnErrorInterrupt()
    {
        var status = Backend.Read64(Fa1Registers.Status);
        if (status == Fa1Identity.DeviceLost)
        {
            Health.ReportAllOnes("in STATUS after an ERROR interrupt");
            return;
        }

        if ((status & (ulong)StatusBits.Fatal) == 0)
        {
            Interlocked.Increment(ref _spuriousErrors);
            LogSpuriousError(_logger, status);
            return;
        }

        DeclareFatal("after an ERROR interrupt");
    }

    private void DeclareFatal(string when)
    {
        var raw = Backend.Read64(Fa1Registers.Error);
        if (raw == Fa1Identity.DeviceLost && Health.ReportAllOnes("in ERROR " + when))
        {
            return;
        }

        var error = ErrorRegister.FromRaw(raw);

        // Raw first, then the flag: a reader that sees the flag sees the value (volatile write is a release).
        Interlocked.Exchange(ref _fatalRaw, error.Raw);
        _hasFatal = true;
        LogFatal(_logger, error.Cause, error.Detail);
        Health.Fail(DeviceState.Fatal, $"STATUS.FATAL {when}: ERROR cause {error.Cause} ({(uint)error.Cause}), detail 0x{error.Detail:X8}", new DeviceFatalException(error));
    }

    // Reads STATUS (and ID when it reads all ones): true when the device looks healthy; otherwise declares it lost or
    // FATAL and returns false.
    private bool CheckRegisters(string when)
    {
        var status = Backend.Read64(Fa1Registers.Status);
        if (status == Fa1Identity.DeviceLost)
        {
            return !Health.ReportAllOnes("in STATUS " + when);
        }

        if ((status & (ulong)StatusBits.Fatal) != 0)
        {
            DeclareFatal(when);
            return false;
        }

        return true;
    }

    /// <summary>True while anything waits on the device: commands in flight (and so credit waiters and held faults), fence waiters.</summary>
    internal bool AnythingWaits()
    {
        foreach (var q in _queueArray)
        {
            if (q.Outstanding > 0)
            {
                return true;
            }
        }

        return Volatile.Read(ref _mmu) is { } mmu && mmu.Invalidator.Waiters > 0;
    }

    /// <summary>
    /// One health check, on the health thread (issue 12): ID and STATUS; completion rings harvested in case an MSI-X
    /// message was lost (as NVMe drivers poll for lost interrupts); the fault service woken when FQ_TAIL moved; command
    /// deadlines.
    /// </summary>
    internal void HealthSweep()
    {
        if (!Health.IsReady || !CheckRegisters("during the health check"))
        {
            return;
        }

        var limit = (long)(_options.DeviceTimeout.TotalSeconds * Stopwatch.Frequency);
        foreach (var q in _queueArray)
        {
            var found = q.HealthHarvest();
            if (found > 0)
            {
                Interlocked.Add(ref _healthHarvested, found);
            }

            if (q.FindOverdue(Stopwatch.GetTimestamp(), limit, out var tag, out var age))
            {
                var what = $"command tag 0x{tag:X8} in queue {q.Index}";
                var registers = q.DescribeProgress();
                Health.Fail(DeviceState.Hung, $"{what} in flight for {age.TotalMilliseconds:0} ms, past the {_options.DeviceTimeout.TotalMilliseconds:0} ms deadline ({registers})",
                    new DeviceHungException(what, _options.DeviceTimeout, registers));
                return;
            }
        }

        Volatile.Read(ref _faults)?.HealthSweep();
    }

    /// <summary>
    /// Releases every waiter with <paramref name="error"/> (issue 12): commands in flight, submitters waiting for ring
    /// space; fence waiters see the failure on their next look. Pages whose fence failed are released when the device is
    /// known gone. Called by <see cref="DeviceHealth"/> after each move into a failed state; idempotent.
    /// </summary>
    internal void ReleaseWaiters(FpgaAccelException error, DeviceState state)
    {
        // The failure's number: a queue a recovery has already reattached since then ignores it (the releasing thread may
        // lag behind a recovery that the released waiters started).
        var failure = Health.Failures;
        foreach (var q in _queueArray)
        {
            q.Fail(error, failure);
        }

        if (state == DeviceState.Lost)
        {
            // Off the bus the device can reach no memory, and a device that comes back is unconfigured (spec 8).
            Volatile.Read(ref _mmu)?.ReleaseQuarantined();
        }
    }

    /// <summary>
    /// Brings a lost, FATAL or hung device back without restarting the process (issue 12): waits (at most
    /// <see cref="FpgaDeviceOptions.RecoverTimeout"/>) for the device to answer again, resets it, and restores the
    /// driver's state on it: every context with its page table (pins and regions stay valid handles: their IOMMU
    /// mappings live in the host), every open queue with fresh rings, the fault ring and its service, the interrupt
    /// masks, ENABLE. Commands that were in flight already failed with the loss exception; resubmit them. Returns false
    /// when the device was Ready (nothing to do), true when it recovered; throws the failure when it could not.
    /// </summary>
    public bool Recover() => RecoverCore(_options.RecoverTimeout, automatic: false);

    internal bool RecoverCore(TimeSpan wait, bool automatic)
    {
        lock (_recoverLock)
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                throw new DisposedResourceException("The FA-1 device");
            }

            var health = Health;
            if (health.IsReady && CheckRegisters("when Recover() looked") && health.IsReady)
            {
                return false;
            }

            if (!health.BeginRecovery(automatic ? "automatic recovery started" : "Recover() called"))
            {
                return false;
            }

            try
            {
                WaitForDevice(wait);
                // R19: a device back from a power cycle has bus mastering off (spec 1 cold reset); set it again
                // before the reset and the rings, which the device fetches by DMA.
                Backend.RestoreFunction();
                Reset();
                Interrupts.Reconnect();
                var mmu = Mmu;
                mmu.Invalidator.Resync();
                var contexts = mmu.RestoreContexts();

                // The reset dropped every translation and stopped every access: no page whose fence failed can be reached.
                mmu.ReleaseQuarantined();
                var queues = _queueArray;
                foreach (var q in queues)
                {
                    q.Reattach();
                }

                var faults = Volatile.Read(ref _faults);
                faults?.Reattach();
                Backend.Write64(Fa1Registers.IrqMask, 0);
                Backend.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Enable);
                _hasFatal = false;
                if (!CheckRegisters("right after recovery"))
                {
                    throw Health.Failure ?? new DeviceLostException("right after recovery", Backend.Description);
                }

                health.EndRecovery($"reset; {contexts} context(s), {queues.Length} queue(s){(faults is null ? string.Empty : ", the fault ring")} restored");
                return true;
            }
            catch (DeviceLostException ex)
            {
                health.Fail(DeviceState.Lost, "while recovering: " + ex.When, ex);
                throw;
            }
            catch (DeviceResetTimeoutException ex)
            {
                var hung = new DeviceHungException("reset", ex.Timeout, $"STATUS 0x{ex.Status:X}");
                health.Fail(DeviceState.Hung, "while recovering: the reset did not complete", hung);
                throw hung;
            }
            catch (FpgaAccelException ex)
            {
                if (health.State == DeviceState.Recovering)
                {
                    health.Fail(DeviceState.Hung, "while recovering: " + ex.Message, ex as DeviceHungException ?? new DeviceHungException("recovery", ex.Message));
                }

                throw;
            }
        }
    }

    // Spec 8: a management reset drops the device for about a second. ID reads the FA-1's value again when it is back.
    private void WaitForDevice(TimeSpan wait)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var id = Backend.Read64(Fa1Registers.Id);
            if (id == Fa1Identity.IdValue)
            {
                return;
            }

            if (id != Fa1Identity.DeviceLost)
            {
                throw new UnexpectedDeviceIdException(id, Backend.Description);
            }

            if (clock.Elapsed >= wait)
            {
                throw new DeviceLostException($"and did not come back within {wait.TotalMilliseconds:0} ms of the recovery", Backend.Description);
            }

            if (Volatile.Read(ref _disposed) != 0)
            {
                throw new DisposedResourceException("The FA-1 device");
            }

            Thread.Sleep(5);
        }
    }

    private ulong ReadChecked(uint offset, string when)
    {
        var value = Backend.Read64(offset);
        if (value == Fa1Identity.DeviceLost)
        {
            throw new DeviceLostException(when, Backend.Description);
        }

        return value;
    }

    [LoggerMessage(EventId = 20, Level = LogLevel.Information, Message = "FA-1 opened: {Backend}, interface {Version}, {Contexts} contexts, {Queues} queues, {Vectors} MSI-X vector(s)")]
    private static partial void LogOpened(ILogger logger, BackendKind backend, string version, int contexts, int queues, int vectors);

    [LoggerMessage(EventId = 21, Level = LogLevel.Debug, Message = "Reset complete in {Microseconds:0} us")]
    private static partial void LogResetDone(ILogger logger, double microseconds);

    [LoggerMessage(EventId = 22, Level = LogLevel.Critical, Message = "FA-1 fatal error: cause {Cause}, detail 0x{Detail:X8}")]
    private static partial void LogFatal(ILogger logger, FatalCause cause, uint detail);

    [LoggerMessage(EventId = 23, Level = LogLevel.Warning, Message = "ERROR interrupt with STATUS 0x{Status:X} (FATAL clear): ignored")]
    private static partial void LogSpuriousError(ILogger logger, ulong status);

    [LoggerMessage(EventId = 24, Level = LogLevel.Warning, Message = "The device could not be checked before dispose")]
    private static partial void LogDisposeCheckFailed(ILogger logger, Exception ex);
}
