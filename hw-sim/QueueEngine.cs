using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>
/// One queue (spec 5): its registers (<see cref="QueueRegisters"/>), its engine thread
/// (<see cref="EngineWorker"/>), and the cycle that thread runs: fetch a descriptor, have the
/// <see cref="CommandExecutor"/> run it, have the <see cref="CompletionWriter"/> post its completion.
/// </summary>
/// <remarks>
/// <para>Threads: one <see cref="EngineWorker"/> per queue, started by the first doorbell, idle on its
/// event (no polling) while there is nothing to do, stopped by reset and dispose.</para>
/// <para>Invariant: the queue's registers change only under the model's register lock, and an engine
/// thread changes them (or any device state) only while it is the queue's current worker
/// (<see cref="IsCurrent"/>, checked under that lock by every piece of the engine). Reset and dispose
/// replace the worker under that lock, so a stopped worker that is still finishing a page can no longer
/// touch the queue or the device state, and Fa1Model joins it after releasing the lock (never waiting
/// while holding it). Modelled work and DMA run with no lock held; commands of one queue run one after
/// another, which satisfies FENCE and in-order start (spec 5).</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "A worker is handed to Fa1Model.Retire, which disposes it after joining its thread.")]
internal sealed class QueueEngine
{
    private readonly QueueRegisters _registers;
    private readonly CommandExecutor _executor;
    private readonly CompletionWriter _completions;
    private EngineWorker? _worker;

    public QueueEngine(Fa1Model model, MmuBlock mmu, FaultRing faultRing, int queue)
    {
        Model = model;
        Queue = queue;
        _registers = new QueueRegisters(model, queue, OnDoorbell, Wake);
        _executor = new CommandExecutor(this, mmu, new FaultStall(this, mmu, faultRing));
        _completions = new CompletionWriter(this, _registers);
    }

    /// <summary>The device this queue belongs to.</summary>
    public Fa1Model Model { get; }

    /// <summary>The queue's number.</summary>
    public int Queue { get; }

    /// <summary>The model's settings (costs, contexts, VA bits).</summary>
    public ModelOptions Options => Model.Options;

    /// <summary>Register lock held: this queue has an engine thread.</summary>
    public bool HasWorker => _worker is not null;

    /// <summary>Adds the queue's registers to the table.</summary>
    public void Declare(RegisterTable table) => _registers.Declare(table);

    /// <summary>Register lock held. Spec 3: a reset clears the queue and stops its engine.</summary>
    public void Reset()
    {
        StopWorker();
        _registers.Reset();
    }

    /// <summary>Register lock held: stops the engine thread; the model joins it once the lock is released.</summary>
    public void StopWorker()
    {
        if (_worker is { } worker)
        {
            _worker = null;
            Model.Retire(worker);
        }
    }

    /// <summary>Register lock held: CTRL, CQ_HEAD or a fault response changed; an idle or waiting engine re-checks.</summary>
    public void Wake() => _worker?.Wake.Set();

    /// <summary>Register lock held: <paramref name="worker"/> is still this queue's engine (see the remarks).</summary>
    public bool IsCurrent(EngineWorker worker) => ReferenceEquals(_worker, worker);

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

    // SQ_TAIL was written (register lock held): the first doorbell starts the engine, later ones wake it.
    private void OnDoorbell()
    {
        if (_worker is null)
        {
            _worker = new EngineWorker($"FA-1 queue {Queue}", Run);
            _worker.Thread.Start();
        }
        else
        {
            _worker.Wake.Set();
        }
    }

    // The engine thread's root. A bug in the model must not take the host process down with it:
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

    // One command: fetch, execute, post. Returns false when there is nothing to do (wait for a wake).
    private unsafe bool Step(EngineWorker worker, EngineTimeline timeline)
    {
        ulong descriptorIova;
        ulong doorbellCycle;
        lock (Model.RegisterLock)
        {
            if (!IsCurrent(worker) || !Model.IsRunnableLocked || !_registers.HasSubmissions)
            {
                return false;
            }

            if (!_registers.RingsAreValid())
            {
                return false;
            }

            descriptorIova = _registers.NextDescriptor(out doorbellCycle);
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
            FatalUnmapped(worker, descriptorIova); // outside the access scope: it takes the register lock
            return false;
        }

        timeline.BeginCommand(doorbellCycle);
        timeline.Spend(Options.DmaReadCycles);
        lock (Model.RegisterLock)
        {
            if (!IsCurrent(worker))
            {
                return false;
            }

            _registers.ConsumeDescriptor();
        }

        var start = timeline.Now;
        var outcome = _executor.Execute(worker, timeline, descriptor);
        if (outcome is null)
        {
            return false; // stopped, or the device went FATAL (D10): no completion
        }

        return _completions.Post(worker, timeline, descriptor, outcome.Value, start);
    }
}
