using System.Buffers.Binary;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim.VfioUser;

/// <summary>A server-to-client request (DMA_READ, DMA_WRITE) failed: error reply, no reply in time, or the session ended.</summary>
public sealed class VfioUserClientRequestException : IOException
{
    internal VfioUserClientRequestException(string message)
        : base(message)
    {
    }
}

/// <summary>
/// The server's own requests to the client and their replies: DMA_READ and DMA_WRITE of client memory that came
/// without an fd. A caller blocks until the receiving thread hands it the reply, bounded by a timeout.
/// </summary>
/// <remarks>
/// <para>Deadlock rule: never call from the session's receiving thread. QEMU holds its big lock while it waits for
/// the reply to a non-posted access and answers DMA_READ/DMA_WRITE from its main loop, so a handler that sent one
/// and waited for the answer would stall both sides until QEMU's message timeout. <see cref="Call"/> refuses that
/// thread; the session answers first and reaches client memory from workers.</para>
/// <para>Concurrency: <see cref="_lock"/> guards the pending table; a reply completes its entry under the lock and
/// the caller reads the entry after its event is set, so each reply is handed over exactly once.</para>
/// </remarks>
internal sealed class ClientRequests
{
    private readonly VfioUserTransport _transport;
    private readonly Lock _lock = new();
    private readonly Dictionary<ushort, Pending> _pending = [];
    private readonly Func<bool> _onReceivingThread;
    private readonly Action<VfioUserHeader, ReadOnlySpan<byte>>? _onSent;
    private ushort _nextId;
    private bool _closed;
    private long _sent;

    public ClientRequests(VfioUserTransport transport, Func<bool> onReceivingThread, Action<VfioUserHeader, ReadOnlySpan<byte>>? onSent = null)
    {
        _transport = transport;
        _onReceivingThread = onReceivingThread;
        _onSent = onSent;
    }

    /// <summary>Requests sent to the client.</summary>
    public long Sent => Interlocked.Read(ref _sent);

    /// <summary>Most bytes one DMA_READ or DMA_WRITE moves: the client's max_data_xfer_size.</summary>
    public int MaxTransfer { get; set; } = 1 << 20;

    /// <summary>Reads client memory at <paramref name="address"/> into <paramref name="into"/> with DMA_READ messages.</summary>
    public void Read(ulong address, Span<byte> into, TimeSpan timeout)
    {
        Span<byte> request = stackalloc byte[16];
        for (var done = 0; done < into.Length;)
        {
            var count = Math.Min(into.Length - done, MaxTransfer);
            BinaryPrimitives.WriteUInt64LittleEndian(request, address + (ulong)done);
            BinaryPrimitives.WriteUInt64LittleEndian(request[8..], (ulong)count);
            var reply = Call(VfioUserCommand.DmaRead, request, timeout);
            if (reply.Length != VfioUserLayout.DmaAccessData + count
                || BinaryPrimitives.ReadUInt64LittleEndian(reply) != address + (ulong)done
                || BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(VfioUserLayout.DmaAccessCount)) != (ulong)count)
            {
                throw new VfioUserClientRequestException(
                    $"DMA_READ of {count} bytes at 0x{address + (ulong)done:X}: the reply's {reply.Length} bytes do not echo the address and count and carry the data");
            }

            reply.AsSpan(VfioUserLayout.DmaAccessData, count).CopyTo(into[done..]);
            done += count;
        }
    }

    /// <summary>Writes <paramref name="data"/> to client memory at <paramref name="address"/> with DMA_WRITE messages.</summary>
    public void Write(ulong address, ReadOnlySpan<byte> data, TimeSpan timeout)
    {
        for (var done = 0; done < data.Length;)
        {
            var count = Math.Min(data.Length - done, MaxTransfer);
            var request = new byte[VfioUserLayout.DmaAccessData + count];
            BinaryPrimitives.WriteUInt64LittleEndian(request, address + (ulong)done);
            BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(VfioUserLayout.DmaAccessCount), (ulong)count);
            data.Slice(done, count).CopyTo(request.AsSpan(VfioUserLayout.DmaAccessData));
            var reply = Call(VfioUserCommand.DmaWrite, request, timeout);
            // The reply echoes the address and the count (QEMU sends the count as a u64, the spec's table a u32).
            if (reply.Length < 12 || BinaryPrimitives.ReadUInt64LittleEndian(reply) != address + (ulong)done)
            {
                throw new VfioUserClientRequestException($"DMA_WRITE of {count} bytes at 0x{address + (ulong)done:X}: the reply's {reply.Length} bytes do not echo the address and count");
            }

            done += count;
        }
    }

    /// <summary>
    /// The receiving thread got a reply: hands it to its caller. False when no request of ours waits for that ID and
    /// command (a stray reply, which the session logs and drops).
    /// </summary>
    public bool Complete(in VfioUserHeader header, ReadOnlySpan<byte> body)
    {
        lock (_lock)
        {
            if (!_pending.TryGetValue(header.Id, out var pending) || pending.Command != header.Command)
            {
                return false;
            }

            _pending.Remove(header.Id);
            pending.Error = (header.Flags & VfioUserFlags.Error) != 0 ? (Errno)header.Error : null;
            pending.Reply = body.ToArray();
            pending.Done.Set();
            return true;
        }
    }

    /// <summary>The session is ending: every waiting caller fails now, and later calls fail at once.</summary>
    public void Close()
    {
        lock (_lock)
        {
            _closed = true;
            foreach (var pending in _pending.Values)
            {
                pending.Done.Set();
            }

            _pending.Clear();
        }
    }

    private byte[] Call(VfioUserCommand command, ReadOnlySpan<byte> body, TimeSpan timeout)
    {
        if (_onReceivingThread())
        {
            throw new InvalidOperationException(
                $"{command} from the session's receiving thread would deadlock with a client that waits for a reply while it holds its lock; call it from a worker.");
        }

        var pending = new Pending(command);
        ushort id;
        lock (_lock)
        {
            if (_closed)
            {
                throw new VfioUserClientRequestException($"{command}: the session has ended");
            }

            // IDs belong to the sender; one not waiting now is free (at most 65536 may wait at once).
            while (_pending.ContainsKey(_nextId))
            {
                _nextId++;
            }

            id = _nextId++;
            _pending[id] = pending;
        }

        var message = new byte[VfioUserHeader.Length + body.Length];
        var header = new VfioUserHeader(id, command, (uint)message.Length, VfioUserFlags.Command, 0);
        header.Write(message);
        body.CopyTo(message.AsSpan(VfioUserHeader.Length));
        try
        {
            _onSent?.Invoke(header, body);
            _transport.Send(message);
            Interlocked.Increment(ref _sent);
            if (!pending.Done.Wait(timeout))
            {
                throw new VfioUserClientRequestException($"{command} got no reply within {timeout.TotalSeconds:0.#} s");
            }
        }
        catch (SystemCallException ex)
        {
            throw new VfioUserClientRequestException($"{command}: sending failed: {ex.Message}");
        }
        finally
        {
            lock (_lock)
            {
                _pending.Remove(id);
            }

            pending.Done.Dispose();
        }

        if (pending.Reply is null)
        {
            throw new VfioUserClientRequestException($"{command}: the session ended before the reply came");
        }

        if (pending.Error is { } error)
        {
            throw new VfioUserClientRequestException($"{command}: the client answered {error}");
        }

        return pending.Reply;
    }

    private sealed class Pending(VfioUserCommand command)
    {
        public VfioUserCommand Command { get; } = command;

        public ManualResetEventSlim Done { get; } = new();

        public byte[]? Reply { get; set; }

        public Errno? Error { get; set; }
    }
}
