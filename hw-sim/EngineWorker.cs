using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>The thread that runs a queue, with its wake-up event and stop request.</summary>
internal sealed class EngineWorker : IDisposable
{
    private volatile bool _stop;

    public EngineWorker(string name, Action<EngineWorker> body) =>
        Thread = new Thread(() => body(this)) { IsBackground = true, Name = name };

    /// <summary>The engine thread; started by the queue's first doorbell, joined by the model once stopped.</summary>
    public Thread Thread { get; }

    /// <summary>Set by the doorbell, CQ_HEAD, CTRL, fault responses and stop requests; the engine waits on it when idle.</summary>
    public LaneSignal Wake { get; } = new();

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

/// <summary>
/// An auto-reset event on a blocking eventfd (decision D38): <see cref="Set"/> is one write(2), <see cref="WaitOne"/>
/// one read(2) that sleeps until the count is non-zero and takes it. A set with no waiter stays latched for the next
/// wait, as AutoResetEvent's does, and several sets before a wait release it once. Chosen over AutoResetEvent because
/// the thread that sets it is the driver's (a FAULT_RESP, a doorbell): a single system call is all a register write
/// should cost it, where the managed event takes locks around a condition variable on top of that.
/// </summary>
internal sealed class LaneSignal : IDisposable
{
    private readonly EventFd _fd = EventFd.Create(nonBlocking: false);

    /// <summary>Wakes the waiter, or latches for the next wait.</summary>
    public void Set()
    {
        try
        {
            _fd.Signal();
        }
        catch (ObjectDisposedException)
        {
            // The lane was joined and disposed: nobody is left to wake.
        }
    }

    /// <summary>Sleeps until set (returns at once when a set is latched), and resets.</summary>
    public void WaitOne() => _fd.TryRead(out _);

    public void Dispose() => _fd.Dispose();
}
