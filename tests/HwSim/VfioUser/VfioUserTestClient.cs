using System.Buffers.Binary;
using System.Text;
using FpgaAccel.HwSim.VfioUser;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim.VfioUser;

/// <summary>
/// A vfio-user client for tests, over one end of a socketpair: sends commands (well-formed or not) with descriptors,
/// matches replies by ID, and answers the server's DMA_READ and DMA_WRITE from its own memory. Its receiving thread
/// records every message in arrival order, so a test can check that a reply came before a request.
/// </summary>
internal sealed class VfioUserTestClient : IDisposable
{
    private static readonly TimeSpan s_replyTimeout = TimeSpan.FromSeconds(10);
    private readonly UnixSocket _socket;
    private readonly Thread _receiver;
    private readonly Lock _lock = new();
    private readonly Lock _sendLock = new();
    private readonly Dictionary<ushort, TaskCompletionSource<Reply>> _pending = [];
    private readonly List<string> _arrivals = [];
    private ushort _nextId = 1;

    public VfioUserTestClient(UnixSocket socket)
    {
        _socket = socket;
        _receiver = new Thread(Receive) { Name = "vfio-user-test-client", IsBackground = true };
        _receiver.Start();
    }

    /// <summary>Client memory the server may read and write with DMA_READ/DMA_WRITE: IOVA of its first byte, and its bytes.</summary>
    public (ulong Iova, byte[] Bytes)? MessageMemory { get; set; }

    /// <summary>When set, the server's DMA requests get this errno instead of data.</summary>
    public Errno? RefuseDma { get; set; }

    /// <summary>Every message received, in order: "reply Command id", "request Command".</summary>
    public IReadOnlyList<string> Arrivals
    {
        get
        {
            lock (_lock)
            {
                return [.. _arrivals];
            }
        }
    }

    /// <summary>True once the server closed the connection.</summary>
    public bool ServerClosed { get; private set; }

    public static byte[] Struct(params object[] fields)
    {
        var bytes = new List<byte>();
        foreach (var field in fields)
        {
            switch (field)
            {
                case uint u:
                    bytes.AddRange(BitConverter.GetBytes(u));
                    break;
                case ulong u:
                    bytes.AddRange(BitConverter.GetBytes(u));
                    break;
                case ushort u:
                    bytes.AddRange(BitConverter.GetBytes(u));
                    break;
                case byte[] b:
                    bytes.AddRange(b);
                    break;
                default:
                    throw new ArgumentException($"field type {field.GetType()}");
            }
        }

        return [.. bytes];
    }

    /// <summary>VERSION 0.0 with QEMU's capabilities; returns the reply.</summary>
    public Reply Negotiate()
    {
        var json = "{\"capabilities\": {\"pgsizes\": 4096, \"max_msg_fds\": 16, \"max_dma_maps\": 65535, \"max_data_xfer_size\": 1048576}}";
        var reply = Send(VfioUserCommand.Version, Struct((ushort)0, (ushort)0, (byte[])[.. Encoding.UTF8.GetBytes(json), 0]));
        Assert.That(reply.Failed, Is.False, $"VERSION refused: {reply.Errno}");
        return reply;
    }

    /// <summary>
    /// Sends a command and waits for its reply (none for <see cref="VfioUserFlags.NoReply"/>: returns null).
    /// <paramref name="declaredSize"/> lies about the size in the header.
    /// </summary>
    public Reply Send(VfioUserCommand command, ReadOnlySpan<byte> body, SafeFileDescriptor[]? fds = null, VfioUserFlags flags = VfioUserFlags.Command, uint? declaredSize = null)
    {
        var id = NextId();
        var message = new byte[VfioUserHeader.Length + body.Length];
        new VfioUserHeader(id, command, declaredSize ?? (uint)message.Length, flags, 0).Write(message);
        body.CopyTo(message.AsSpan(VfioUserHeader.Length));
        return SendMessage(id, message, fds, (flags & VfioUserFlags.NoReply) != 0)!;
    }

    /// <summary>Sends a posted command (no reply wanted).</summary>
    public void Post(VfioUserCommand command, ReadOnlySpan<byte> body) => Send(command, body, flags: VfioUserFlags.NoReply);

    /// <summary>Sends raw bytes whose header has ID <paramref name="id"/> and waits for that ID's reply.</summary>
    public Reply? SendMessage(ushort id, byte[] message, SafeFileDescriptor[]? fds = null, bool posted = false)
    {
        var reply = new TaskCompletionSource<Reply>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!posted)
        {
            lock (_lock)
            {
                _pending[id] = reply;
            }
        }

        lock (_sendLock)
        {
            _socket.Send(message, fds ?? []);
        }

        if (posted)
        {
            return null;
        }

        Assert.That(reply.Task.Wait(s_replyTimeout), Is.True, $"no reply to message {id} within {s_replyTimeout.TotalSeconds} s");
        return reply.Task.Result;
    }

    public ushort NextId()
    {
        lock (_lock)
        {
            return _nextId++;
        }
    }

    public byte[] ReadRegion(uint region, ulong offset, uint count)
    {
        var reply = Send(VfioUserCommand.RegionRead, Struct(offset, region, count));
        Assert.That(reply.Failed, Is.False, $"REGION_READ of region {region} +0x{offset:X} ({count} bytes) refused with {reply.Errno}");
        Assert.That(reply.Body.Length, Is.EqualTo(16 + count), "the reply carries offset, region, count and the data");
        return reply.Body[16..];
    }

    public Reply WriteRegion(uint region, ulong offset, byte[] data) => Send(VfioUserCommand.RegionWrite, Struct(offset, region, (uint)data.Length, data));

    public uint ReadConfig32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(ReadRegion(7, (ulong)offset, 4));

    public ushort ReadConfig16(int offset) => BinaryPrimitives.ReadUInt16LittleEndian(ReadRegion(7, (ulong)offset, 2));

    public void WriteConfig16(int offset, ushort value)
    {
        var reply = WriteRegion(7, (ulong)offset, BitConverter.GetBytes(value));
        Assert.That(reply.Failed, Is.False, $"config write at 0x{offset:X} refused with {reply.Errno}");
    }

    public ulong ReadBar0(uint offset) => BinaryPrimitives.ReadUInt64LittleEndian(ReadRegion(0, offset, 8));

    public Reply DmaMap(ulong iova, ulong size, ulong offset = 0, uint flags = 3, SafeFileDescriptor? fd = null) =>
        Send(VfioUserCommand.DmaMap, Struct(32u, flags, offset, iova, size), fd is null ? null : [fd]);

    public Reply DmaUnmap(ulong iova, ulong size, uint flags = 0) => Send(VfioUserCommand.DmaUnmap, Struct(24u, flags, iova, size));

    public Reply SetIrqs(uint flags, uint index, uint start, uint count, byte[]? data = null, SafeFileDescriptor[]? fds = null)
    {
        data ??= [];
        return Send(VfioUserCommand.DeviceSetIrqs, Struct((uint)(20 + data.Length), flags, index, start, count, data), fds);
    }

    /// <summary>Closes the client's end: the server sees the client disconnect.</summary>
    public void Dispose()
    {
        _socket.Shutdown();
        _receiver.Join(TimeSpan.FromSeconds(10));
        _socket.Dispose();
    }

    private bool ReadExactly(Span<byte> into)
    {
        var done = 0;
        while (done < into.Length)
        {
            var n = _socket.Receive(into[done..]).Bytes;
            if (n == 0)
            {
                return false;
            }

            done += n;
        }

        return true;
    }

    private void Receive()
    {
        var headerBytes = new byte[VfioUserHeader.Length];
        try
        {
            while (ReadExactly(headerBytes))
            {
                var header = VfioUserHeader.Read(headerBytes);
                var body = new byte[header.Size - VfioUserHeader.Length];
                if (!ReadExactly(body))
                {
                    break;
                }

                if (header.Type == VfioUserFlags.Reply)
                {
                    TaskCompletionSource<Reply>? waiter;
                    lock (_lock)
                    {
                        _arrivals.Add($"reply {header.Command} {header.Id}");
                        _pending.Remove(header.Id, out waiter);
                    }

                    waiter?.TrySetResult(new Reply(header, body));
                }
                else
                {
                    lock (_lock)
                    {
                        _arrivals.Add($"request {header.Command}");
                    }

                    AnswerServer(header, body);
                }
            }
        }
        catch (SystemCallException)
        {
            // The socket was shut down under the receive.
        }

        ServerClosed = true;
        lock (_lock)
        {
            foreach (var waiter in _pending.Values)
            {
                waiter.TrySetException(new IOException("the server closed the connection"));
            }

            _pending.Clear();
        }
    }

    // The client side of DMA_READ and DMA_WRITE, from MessageMemory.
    private void AnswerServer(VfioUserHeader header, byte[] body)
    {
        var address = BinaryPrimitives.ReadUInt64LittleEndian(body);
        var count = (int)BinaryPrimitives.ReadUInt64LittleEndian(body.AsSpan(8));
        byte[] reply;
        if (RefuseDma is { } errno || MessageMemory is not { } memory || address < memory.Iova || address - memory.Iova + (ulong)count > (ulong)memory.Bytes.Length)
        {
            reply = new byte[VfioUserHeader.Length];
            new VfioUserHeader(header.Id, header.Command, VfioUserHeader.Length, VfioUserFlags.Reply | VfioUserFlags.Error, (uint)(RefuseDma ?? Errno.EFAULT)).Write(reply);
        }
        else
        {
            var at = (int)(address - memory.Iova);
            var data = header.Command == VfioUserCommand.DmaRead ? memory.Bytes.AsSpan(at, count).ToArray() : [];
            if (header.Command == VfioUserCommand.DmaWrite)
            {
                body.AsSpan(16, count).CopyTo(memory.Bytes.AsSpan(at));
            }

            reply = new byte[VfioUserHeader.Length + 16 + data.Length];
            new VfioUserHeader(header.Id, header.Command, (uint)reply.Length, VfioUserFlags.Reply, 0).Write(reply);
            body.AsSpan(0, 16).CopyTo(reply.AsSpan(VfioUserHeader.Length));
            data.CopyTo(reply.AsSpan(VfioUserHeader.Length + 16));
        }

        lock (_sendLock)
        {
            _socket.Send(reply);
        }
    }

    /// <summary>A reply: its header and payload.</summary>
    internal sealed record Reply(VfioUserHeader Header, byte[] Body)
    {
        public bool Failed => (Header.Flags & VfioUserFlags.Error) != 0;

        public Errno? Errno => Failed ? (Errno)Header.Error : null;

        public uint U32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(Body.AsSpan(offset));

        public ulong U64(int offset) => BinaryPrimitives.ReadUInt64LittleEndian(Body.AsSpan(offset));
    }
}
