using System.Threading.Tasks.Sources;

namespace FpgaAccel.Driver.Queues;

/// <summary>
/// The awaitable behind one submitted command. Pooled: returned to its pool when the awaiter reads
/// the result, so a steady stream of commands allocates nothing.
/// </summary>
/// <remarks>
/// Continuations never run on the harvesting thread (the interrupt dispatcher or the poller): the
/// harvester stores the result and queues this object itself to the thread pool as a work item, and
/// the pool thread completes the core, which then runs the continuation inline. Queuing an
/// <see cref="IThreadPoolWorkItem"/> allocates nothing, where the core's own asynchronous dispatch
/// allocates a work item per completion.
/// </remarks>
internal sealed class CompletionSource : IValueTaskSource<CommandResult>, IThreadPoolWorkItem
{
    private readonly CompletionSourcePool _pool;
    private ManualResetValueTaskSourceCore<CommandResult> _core;
    private CommandResult _result;
    private Exception? _error;

    public CompletionSource(CompletionSourcePool pool)
    {
        _pool = pool;
        _core.RunContinuationsAsynchronously = false;
    }

    public short Version => _core.Version;

    public ValueTask<CommandResult> Task => new(this, _core.Version);

    public void Complete(in CommandResult result)
    {
        _result = result;
        _error = null;
        ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    /// <summary>Inline continuations (F25): completes the core here, so the awaiter's continuation runs on this thread.</summary>
    public void CompleteInline(in CommandResult result)
    {
        _result = result;
        _error = null;
        ((IThreadPoolWorkItem)this).Execute();
    }

    public void Fail(Exception error)
    {
        _error = error;
        ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    // On a pool thread: completing the core runs the awaiter's continuation here.
    void IThreadPoolWorkItem.Execute()
    {
        if (_error is { } error)
        {
            _core.SetException(error);
        }
        else
        {
            _core.SetResult(_result);
        }
    }

    public CommandResult GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
            _pool.Return(this);
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}

/// <summary>A lock-protected stack of <see cref="CompletionSource"/>s; grows only past its high-water mark.</summary>
internal sealed class CompletionSourcePool
{
    private readonly Stack<CompletionSource> _free = new();
    private readonly Lock _lock = new();

    public CompletionSource Rent()
    {
        lock (_lock)
        {
            if (_free.TryPop(out var s))
            {
                return s;
            }
        }

        return new CompletionSource(this);
    }

    public void Return(CompletionSource source)
    {
        lock (_lock)
        {
            _free.Push(source);
        }
    }
}
