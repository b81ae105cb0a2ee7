namespace FpgaAccel.HwSim;

/// <summary>The thread that runs a queue, with its wake-up event and stop request.</summary>
internal sealed class EngineWorker : IDisposable
{
    private volatile bool _stop;

    public EngineWorker(string name, Action<EngineWorker> body) =>
        Thread = new Thread(() => body(this)) { IsBackground = true, Name = name };

    /// <summary>The engine thread; started by the queue's first doorbell, joined by the model once stopped.</summary>
    public Thread Thread { get; }

    /// <summary>Set by the doorbell, CQ_HEAD, CTRL and stop requests; the engine waits on it when idle.</summary>
    public AutoResetEvent Wake { get; } = new(false);

    /// <summary>The worker was told to stop: it abandons its command at the next check.</summary>
    public bool StopRequested => _stop;

    /// <summary>Tells the worker to stop, and wakes it wherever it waits.</summary>
    public void RequestStop()
    {
        _stop = true;
        Wake.Set();
    }

    /// <summary>Releases the wake-up event (after the thread was joined).</summary>
    public void Dispose() => Wake.Dispose();
}
