using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver.Queues;

/// <summary>How a queue learns that commands completed.</summary>
public enum CompletionMode
{
    /// <summary>Commands ask for the COMPLETION interrupt; the eventfd wakes the harvester.</summary>
    Interrupt,

    /// <summary>A poller thread watches the completion ring's PHASE bits in host memory; no interrupts.</summary>
    Poll,
}

/// <summary>Where the code after an await of a command's result (its continuation) runs (decision F25).</summary>
public enum ContinuationMode
{
    /// <summary>On a thread-pool thread: nothing the caller does after the await can hold up the driver's harvest.</summary>
    ThreadPool,

    /// <summary>
    /// On the thread that harvested the completion (the interrupt dispatcher, the poller, the health check, or a caller
    /// of <see cref="CommandQueue.Harvest"/>), once the harvest has released its lock: no hop through the thread pool, and
    /// no pool worker left spinning for more work on a core the fault service may need. For run-to-completion callers
    /// (await, then submit the next command). The continuation must not block, since that thread harvests nothing while
    /// it runs (other queues' completions wait for it, or for the health check's next sweep), and must not dispose the
    /// queue or the device (that would wait for the very thread it runs on: <see cref="CommandQueue.Dispose"/> refuses);
    /// leave the thread first (<c>await Task.Yield()</c>). A result already there when the await looks is taken on the
    /// awaiting thread, as in either mode; one that lands in the moment between the await's look and its registration of
    /// the continuation is found done on registering, and the continuation goes to the thread pool (as an await of a
    /// <see cref="Task"/> does in the same race), since running it inside the registration would nest it in the awaiting
    /// frame.
    /// </summary>
    Inline,
}

/// <summary>A completed command, as the device reported it (spec 5 completion record).</summary>
/// <param name="Tag">The tag the queue gave the command.</param>
/// <param name="Status">OK, FAULT, BAD_DESC, DMA_ERROR or CTX_DISABLED.</param>
/// <param name="Faults">Translation faults the command took.</param>
/// <param name="Result">CRC32C for CRC commands, else 0.</param>
/// <param name="StartCycle">Device cycle (CYCLES) the command started.</param>
/// <param name="EndCycle">Device cycle it completed.</param>
public readonly record struct CommandResult(uint Tag, CompletionStatus Status, ushort Faults, ulong Result, ulong StartCycle, ulong EndCycle)
{
    /// <summary>True when the device completed the command OK; any other status means it did not do all of it.</summary>
    public bool Succeeded => Status == CompletionStatus.Ok;

    /// <summary>Device cycles from start to completion.</summary>
    public ulong DeviceCycles => EndCycle >= StartCycle ? EndCycle - StartCycle : 0;
}

/// <summary>A command the driver refuses before it reaches the device.</summary>
public sealed class InvalidCommandException : FpgaAccelException
{
    /// <summary>The command was refused; <paramref name="message"/> names the value, the rule and the fix.</summary>
    public InvalidCommandException(string message)
        : base(message)
    {
    }
}
