using System.Threading.Tasks.Sources;

namespace FpgaAccel.Driver.Queues;

/// <summary>
/// The awaitable behind one submitted command. Pooled: returned to its pool when the awaiter reads
/// the result, so a steady stream of commands allocates nothing.
/// </summary>
internal sealed class CompletionSource : IValueTaskSource<CommandResult>
{
    private readonly CompletionSourcePool _pool;
    private ManualResetValueTaskSourceCore<CommandResult> _core;

    public CompletionSource(CompletionSourcePool pool)
    {
        _pool = pool;

        // Continuations never run on the harvesting thread (the interrupt dispatcher or the poller).
        _core.RunContinuationsAsynchronously = true;
    }

    public short Version => _core.Version;

    public ValueTask<CommandResult> Task => new(this, _core.Version);

    public void Complete(in CommandResult result) => _core.SetResult(result);

    public void Fail(Exception error) => _core.SetException(error);

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
