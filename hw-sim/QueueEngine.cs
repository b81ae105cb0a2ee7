using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>
/// One queue (spec 5): its registers (<see cref="QueueRegisters"/>), its engine lanes
/// (<see cref="EngineWorker"/>s), and the cycle each lane runs: take the next descriptor in order, have the
/// <see cref="CommandExecutor"/> run it, have the <see cref="CompletionWriter"/> post its completion. Up to
/// <see cref="ModelOptions.CommandsInFlight"/> commands of the queue run at once, so completions may come
/// out of order and each command's stalled access holds a fault of its own (decision D35).
/// </summary>
/// <remarks>
/// <para>Threads: one <see cref="EngineWorker"/> per lane, the first started by the first doorbell, more
/// while descriptors wait and every lane is busy, up to the limit; idle on their events (no polling) while
/// there is nothing to do, stopped by reset and dispose.</para>
/// <para>Spec 5 (decision D35). In-order start: one lane at a time holds the fetch right
/// (<see cref="_fetcher"/>): it reads the descriptor at SQ_HEAD, waits for the command's conditions, and
/// consumes it (SQ_HEAD + 1) before giving the right up, so commands start in ring order. Conditions: the
/// command N places earlier (N = the limit) has ended, so at most N are in flight; with FENCE, every earlier
/// command has ended. Without FENCE commands overlap. Invariant: <see cref="_inFlight"/> counts the commands
/// started and not yet ended (posted, or abandoned), and <see cref="_active"/>[s mod N] is set exactly while
/// command s is in flight. Argument: both change only under the register lock, together, when a command is
/// consumed and when it ends (<see cref="CommandEnded"/>), each time after checking the lane is current.</para>
/// <para>Modelled time (decision D35): a command's descriptor read starts at the later of its doorbell's
/// cycle and the previous command's start; the command starts when the read is done (150), and no earlier than
/// the end of the command N places before it, nor, with FENCE, than the end of every earlier command. Each
/// command then runs on its own lane's timeline at the full bandwidth (sharing is not modelled, as between
/// queues in D24). A stream submitted one command at a time has the same timestamps as with one lane.</para>
/// <para>Invariant: the queue's registers change only under the model's register lock, and a lane changes them
/// (or any device state) only while it is one of the queue's current lanes (<see cref="IsCurrent"/>, checked
/// under that lock by every piece of the engine). Reset and dispose retire every lane under that lock, so a
/// stopped lane still finishing a page can no longer touch the queue or the device, and Fa1Model joins it
/// after releasing the lock (never waiting while holding it). Modelled work and DMA run with no lock held.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "Lanes are handed to Fa1Model.Retire, which disposes them after joining their threads.")]
internal sealed class QueueEngine
{
    private readonly QueueRegisters _registers;
    private readonly CommandExecutor _executor;
    private readonly CompletionWriter _completions;
    private readonly List<EngineWorker> _lanes = [];
    private readonly bool[] _active;
    private readonly ulong[] _endOf;
    private EngineWorker? _fetcher;
    private long _nextCommand;
    private int _inFlight;
    private int _busy;
    private ulong _lastStart;
    private ulong _lastEnd;
    private bool _hung;

    public QueueEngine(Fa1Model model, MmuBlock mmu, FaultRing faultRing, int queue)
    {
        Model = model;
        Queue = queue;
        _registers = new QueueRegisters(model, queue, OnDoorbell, Wake);
        _executor = new CommandExecutor(this, mmu, new FaultStall(this, mmu, faultRing));
        _completions = new CompletionWriter(this, _registers);
        _active = new bool[model.Options.CommandsInFlight];
        _endOf = new ulong[model.Options.CommandsInFlight];
    }

    /// <summary>The device this queue belongs to.</summary>
    public Fa1Model Model { get; }

    /// <summary>The queue's number.</summary>
    public int Queue { get; }

    /// <summary>The model's settings (costs, contexts, VA bits).</summary>
    public ModelOptions Options => Model.Options;

    /// <summary>Register lock held: engine lanes (threads) this queue has now.</summary>
    public int Lanes => _lanes.Count;

    /// <summary>Register lock held: commands of this queue started and not yet ended.</summary>
    public int InFlight => _inFlight;

    /// <summary>Adds the queue's registers to the table.</summary>
    public void Declare(RegisterTable table) => _registers.Declare(table);

    /// <summary>The queue's registers (for fault injection and the oracle's counts).</summary>
    public QueueRegisters Registers => _registers;

    /// <summary>Register lock held: the engine is hung by fault injection (R4).</summary>
    public bool IsHung => _hung;

    /// <summary>Register lock held. Spec 3: a reset clears the queue (and an injected hang, R4) and stops its lanes.</summary>
    public void Reset()
    {
        StopWorker();
        _registers.Reset();
        _hung = false;
    }

    /// <summary>
    /// Register lock held. Fault injection (R4): the engine stops consuming descriptors, and the commands it has
    /// started move no more data and post nothing; doorbells still latch SQ_TAIL. Only a reset ends it. False when
    /// already hung.
    /// </summary>
    public bool Hang()
    {
        if (_hung)
        {
            return false;
        }

        _hung = true;
        return true;
    }

    /// <summary>Register lock held: stops every lane; the model joins them once the lock is released.</summary>
    public void StopWorker()
    {
        foreach (var lane in _lanes)
        {
            Model.Retire(lane);
        }

        _lanes.Clear();
        _fetcher = null;
        _inFlight = _busy = 0;
        _nextCommand = 0;
        _lastStart = _lastEnd = 0;
        Array.Clear(_active);
        Array.Clear(_endOf);
    }

    /// <summary>Register lock held: CTRL, CQ_HEAD, a fault response or a command's end changed; idle or waiting lanes re-check.</summary>
    public void Wake()
    {
        foreach (var lane in _lanes)
        {
            lane.Wake.Set();
        }
    }

    /// <summary>Register lock held: <paramref name="worker"/> is still one of this queue's lanes (see the remarks).</summary>
    public bool IsCurrent(EngineWorker worker) => _lanes.Contains(worker);

    /// <summary>
    /// Register lock held, the calling lane current: command <paramref name="command"/> ended at
    /// <paramref name="endCycle"/> (posted, or abandoned without a completion). Frees its place in the window
    /// and wakes lanes waiting for it (FENCE, the window, idle lanes).
    /// </summary>
    public void CommandEnded(long command, ulong endCycle)
    {
        var at = (int)(command % _active.Length);
        if (!_active[at])
        {
            return;
        }

        _active[at] = false;
        _endOf[at] = endCycle;
        _lastEnd = Math.Max(_lastEnd, endCycle);
        _inFlight--;
        _busy--;
        Wake();
    }

    /// <summary>
    /// Spec 3, 6: a ring or table access the IOMMU refused makes the device FATAL, cause 1, unless
    /// <paramref name="worker"/> was stopped meanwhile. Takes the register lock: call it outside an
    /// IOMMU access scope.
    /// </summary>
    public void FatalUnmapped(EngineWorker worker, ulong iova)
    {
        lock (Model.RegisterLock)
        {
            if (IsCurrent(worker))
            {
                Model.EnterFatal(ErrorRegister.ForUnmappedIova(iova));
            }
        }
    }

    // SQ_TAIL was written (register lock held): the first doorbell starts a lane, later ones wake the lanes.
    private void OnDoorbell()
    {
        // D35: a doorbell that finds every lane busy (running a command, perhaps stalled on a fault) starts another, up to
        // the limit; waking the busy ones would leave the new command waiting for a stalled one to end.
        if (_lanes.Count == 0 || (_busy == _lanes.Count && _lanes.Count < _active.Length))
        {
            StartLane();
        }
        else
        {
            Wake();
        }
    }

    // Register lock held.
    private void StartLane()
    {
        var lane = new EngineWorker($"FA-1 queue {Queue} lane {_lanes.Count}", Run);
        _lanes.Add(lane);
        lane.Thread.Start();
    }

    // A lane thread's root. A bug in the model must not take the host process down with it:
    // anything unexpected makes the device FATAL with cause 3 (internal), as a hardware assertion would.
    private void Run(EngineWorker worker)
    {
        var timeline = new EngineTimeline(Model.Clock);
        try
        {
            while (!worker.StopRequested)
            {
                // A stop request may have been consumed by a wait inside Step (CQ space, a fault's
                // response): check the flag again before sleeping, or the thread would never wake.
                if (!Step(worker, timeline) && !worker.StopRequested)
                {
                    worker.Wake.WaitOne();
                }
            }
        }
        catch (Exception)
        {
            lock (Model.RegisterLock)
            {
                if (IsCurrent(worker))
                {
                    Model.EnterFatal(new ErrorRegister(FatalCause.Internal, (uint)Queue));
                }
            }
        }
    }

    // One command: take the fetch right, read the descriptor, wait for its start conditions, consume it,
    // execute, post. Returns false when there is nothing to do (wait for a wake).
    private unsafe bool Step(EngineWorker worker, EngineTimeline timeline)
    {
        ulong descriptorIova;
        ulong fetchAt;
        lock (Model.RegisterLock)
        {
            if (!IsCurrent(worker) || _fetcher is not null || _hung || !Model.IsRunnableLocked || !_registers.HasSubmissions)
            {
                return false;
            }

            if (!_registers.RingsAreValid())
            {
                return false;
            }

            _fetcher = worker;
            _busy++;
            descriptorIova = _registers.NextDescriptor(out var doorbellCycle);
            fetchAt = Math.Max(_lastStart, doorbellCycle);
        }

        // spec 5, 6: the descriptor is read from the ring through the IOMMU; a refusal is FATAL cause 1.
        // A 64-byte slot of a 4 KiB aligned ring never crosses a page. The slot is read whole, as
        // SubmissionDescriptor lays it out: the driver filled it before its doorbell, and the register
        // lock that SQ_TAIL was written and read under orders those stores before this read.
        SubmissionDescriptor descriptor = default;
        bool fetched;
        using (Model.Iommu.BeginDeviceAccess())
        {
            fetched = Model.Iommu.TryTranslate(descriptorIova, DmaAccess.DeviceRead, out var slot);
            if (fetched)
            {
                descriptor = *(SubmissionDescriptor*)slot.Host;
            }
        }

        if (!fetched)
        {
            GiveUpFetch(worker);
            FatalUnmapped(worker, descriptorIova); // outside the access scope: it takes the register lock
            return false;
        }

        timeline.StartAt(fetchAt);
        timeline.Spend(Options.DmaReadCycles);

        // Spec 5: wait (holding the fetch right, so nothing later starts) until the command N places back has
        // ended, and with FENCE until every earlier command has.
        var fence = (descriptor.Flags & DescriptorFlags.Fence) != 0;
        long command;
        while (true)
        {
            lock (Model.RegisterLock)
            {
                if (!IsCurrent(worker))
                {
                    return false;
                }

                if (!Model.IsRunnableLocked || _hung)
                {
                    // D10 and spec 3: a FATAL or disabled device (or a hung engine, R4) starts nothing; the
                    // descriptor is read again later.
                    _fetcher = null;
                    _busy--;
                    return false;
                }

                command = _nextCommand;
                var at = (int)(command % _active.Length);
                if (!_active[at] && (!fence || _inFlight == 0))
                {
                    timeline.AtLeast(Math.Max(_endOf[at], fence ? _lastEnd : 0));
                    _active[at] = true;
                    _nextCommand++;
                    _inFlight++;
                    _registers.ConsumeDescriptor();
                    _lastStart = timeline.Now;
                    _fetcher = null;

                    // More waiting and no lane free to take it: another lane, up to the limit; else a free one wakes.
                    if (_registers.HasSubmissions)
                    {
                        if (_busy == _lanes.Count && _lanes.Count < _active.Length)
                        {
                            StartLane();
                        }
                        else
                        {
                            Wake();
                        }
                    }

                    break;
                }
            }

            worker.Wake.WaitOne();
            if (worker.StopRequested)
            {
                return false;
            }
        }

        var start = timeline.Now;
        var outcome = _executor.Execute(worker, timeline, descriptor);
        if (outcome is null)
        {
            // Stopped, or the device went FATAL (D10): no completion; its place in the window is free.
            lock (Model.RegisterLock)
            {
                if (IsCurrent(worker))
                {
                    CommandEnded(command, timeline.Now);
                }
            }

            return false;
        }

        return _completions.Post(worker, timeline, descriptor, outcome.Value, start, command);
    }

    /// <summary>
    /// Fault injection (R4), on a lane with no lock held: while the engine is hung the lane waits here, moving no data
    /// and posting nothing. True to go on; false when the lane was stopped (reset, removal, dispose), which ends the
    /// wait: stopping a lane sets its event.
    /// </summary>
    public bool WaitWhileHung(EngineWorker worker)
    {
        while (true)
        {
            lock (Model.RegisterLock)
            {
                if (!IsCurrent(worker) || worker.StopRequested)
                {
                    return false;
                }

                if (!_hung)
                {
                    return true;
                }
            }

            worker.Wake.WaitOne();
        }
    }

    private void GiveUpFetch(EngineWorker worker)
    {
        lock (Model.RegisterLock)
        {
            if (IsCurrent(worker) && ReferenceEquals(_fetcher, worker))
            {
                _fetcher = null;
                _busy--;
            }
        }
    }
}
