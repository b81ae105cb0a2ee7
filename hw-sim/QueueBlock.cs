namespace FpgaAccel.HwSim;

/// <summary>The queues of spec 5 as one register block.</summary>
internal sealed class QueueBlock : DeviceBlock
{
    private readonly QueueEngine[] _engines;

    public QueueBlock(Fa1Model model, MmuBlock mmu, FaultRing faultRing)
    {
        _engines = new QueueEngine[model.Options.Queues];
        for (var q = 0; q < _engines.Length; q++)
        {
            _engines[q] = new QueueEngine(model, mmu, faultRing, q);
        }

        // Register lock held: a fault response wakes its queue's engine; ring space wakes them all.
        faultRing.WakeEngines = queue =>
        {
            if (queue is { } q && q < _engines.Length)
            {
                _engines[q].Wake();
            }
            else
            {
                foreach (var engine in _engines)
                {
                    engine.Wake();
                }
            }
        };
    }

    public override void Declare(RegisterTable table)
    {
        foreach (var engine in _engines)
        {
            engine.Declare(table);
        }
    }

    public override void Reset()
    {
        foreach (var engine in _engines)
        {
            engine.Reset();
        }
    }

    // spec 3: CTRL.ENABLE gates new commands; setting it wakes idle engines.
    public override void ControlChanged(bool enabled)
    {
        foreach (var engine in _engines)
        {
            engine.Wake();
        }
    }

    /// <summary>Queue <paramref name="queue"/>'s engine.</summary>
    public QueueEngine this[int queue] => _engines[queue];

    /// <summary>CQ_HEAD writes out of range on every queue (D22).</summary>
    public long BadHeadWrites => _engines.Sum(e => e.Registers.BadHeadWrites);

    /// <summary>Register lock held: engine lanes (threads) of every queue.</summary>
    public int LiveWorkers => _engines.Sum(e => e.Lanes);

    /// <summary>Register lock held: every engine thread stops (model dispose).</summary>
    public void StopAll()
    {
        foreach (var engine in _engines)
        {
            engine.StopWorker();
        }
    }
}
