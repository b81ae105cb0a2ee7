using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.HwSim.VfioUser;

/// <summary>
/// One client connection: reads its messages in order, checks each against its declared size and the protocol
/// before a field is used (the client is not trusted), dispatches it to the function, DMA table or vectors, and
/// answers. A malformed message gets an error reply with its errno and the session goes on; a client that
/// disconnects ends the session, which then closes every descriptor, mapping and thread it held. The device's
/// own state (registers, config space) outlives the session, as the protocol asks.
/// </summary>
/// <remarks>
/// <para>Threads: <see cref="Run"/>'s thread receives and handles every client command, in order, and never waits
/// for the client (see <see cref="ClientRequests"/> for why). Mirror fills of client memory without an fd run as
/// tasks that the session waits for (bounded) before it ends. Replies and the server's own requests share the
/// transport's send lock.</para>
/// </remarks>
internal sealed partial class VfioUserSession : IDisposable
{
    private static readonly TimeSpan s_fillDrainTimeout = TimeSpan.FromSeconds(10);

    private readonly VfioUserTransport _transport;
    private readonly Fa1PciFunction _function;
    private readonly DmaMapTable _dma;
    private readonly VfioUserServerOptions _options;
    private readonly VfioUserCounters _counters;
    private readonly ILogger _logger;
    private readonly ClientRequests _requests;
    private readonly byte[] _reply;
    private readonly List<Task> _fills = [];
    private readonly Lock _traceLock;
    private readonly long _started = System.Diagnostics.Stopwatch.GetTimestamp();
    private Thread? _receiver;
    private bool _negotiated;
    private Action? _afterReply;

    public VfioUserSession(UnixSocket socket, Fa1PciFunction function, ModelIommu iommu, VfioUserServerOptions options, VfioUserCounters counters, Lock traceLock, ILogger logger)
    {
        _function = function;
        _options = options;
        _counters = counters;
        _traceLock = traceLock;
        _logger = logger;
        // The largest command is a REGION_WRITE of max_data_xfer_size bytes; the largest reply a REGION_READ's.
        var largest = VfioUserHeader.Length + VfioUserLayout.RegionAccessData + options.MaxDataTransferBytes;
        _transport = new VfioUserTransport(socket, largest, options.MaxDescriptorsPerMessage);
        _reply = new byte[largest];
        _dma = new DmaMapTable(iommu, options.MaxDmaMappings);
        _requests = new ClientRequests(_transport, () => Thread.CurrentThread == _receiver, (header, body) => Trace(header, body, 0, null, "->"));
    }

    /// <summary>Mappings the session holds now.</summary>
    public int MappingsHeld => _dma.Count;

    /// <summary>The DMA_READ/DMA_WRITE channel to the client (workers only; see <see cref="ClientRequests"/>).</summary>
    public ClientRequests Client => _requests;

    /// <summary>
    /// Serves the connection on the calling thread until the client disconnects or <see cref="Stop"/> is called,
    /// then releases everything the session held. Never throws for anything the client sends.
    /// </summary>
    public void Run()
    {
        _receiver = Thread.CurrentThread;
        LogSessionStarted(_logger);
        _function.BusMasterChanged = OnBusMasterChanged;
        _dma.SetDeviceAccess(_function.BusMaster, []);
        try
        {
            while (_transport.TryReceive(out var message))
            {
                Handle(message);
            }
        }
        catch (SystemCallException ex)
        {
            // Sending a reply failed: the client is gone.
            LogSendFailed(_logger, ex.Message);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Nothing the client sends gets here (handlers refuse it); a fault of the server ends this session only,
            // never the process that hosts it.
            LogSessionFailed(_logger, ex);
        }
        finally
        {
            End();
        }
    }

    /// <summary>Ends <see cref="Run"/> from another thread (it returns once the session has released everything).</summary>
    public void Stop() => _transport.Shutdown();

    /// <summary>Closes the connection of a session that never ran (<see cref="Run"/> releases everything itself).</summary>
    public void Dispose() => _transport.Dispose();

    private void End()
    {
        _requests.Close();
        Task[] fills;
        lock (_fills)
        {
            fills = [.. _fills];
        }

        if (!Task.WaitAll(fills, s_fillDrainTimeout))
        {
            LogFillsStuck(_logger, fills.Count(f => !f.IsCompleted));
        }

        // The client is gone, so are its eventfds and memory (the protocol's rule for a client disconnect).
        _function.BusMasterChanged = null;
        _function.Vectors.ReleaseAll();
        var mappings = _dma.Count;
        _dma.Clear();
        _transport.Dispose();
        _counters.SessionEnded();
        _counters.ClientRequests(_requests.Sent);
        LogSessionEnded(_logger, mappings);
    }

    private void Handle(IncomingMessage message)
    {
        var header = message.Header;
        var isCommand = header.Type == VfioUserFlags.Command;
        _counters.Message(header.Command, isCommand);
        var posted = (header.Flags & VfioUserFlags.NoReply) != 0;
        try
        {
            if (header.Type == VfioUserFlags.Reply)
            {
                // A reply to one of our DMA_READ/DMA_WRITE requests; nothing is ever answered to a reply.
                Trace(header, message.Body, message.Descriptors.Count, null, "<-");
                if (message.Problem is not null || !_requests.Complete(header, message.Body))
                {
                    _counters.StrayReply();
                    LogStrayReply(_logger, header.Id, header.Command);
                }

                return;
            }

            var body = message.Body.AsSpan();
            // Counted now: a handler that keeps descriptors takes them out of the list.
            var descriptors = message.Descriptors.Count;
            int replyLength;
            try
            {
                if (message.Problem is { } problem)
                {
                    throw problem;
                }

                if (!isCommand)
                {
                    throw new VfioUserException(Errno.EINVAL, $"message type {(uint)header.Type} is neither a command (0) nor a reply (1)");
                }

                replyLength = Dispatch(header, body, message.Descriptors);
            }
            catch (VfioUserException ex)
            {
                Refuse(header, body, descriptors, posted, ex.Errno, ex.Message);
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // A fault of this server, not of the message: the client gets EIO and the session goes on.
                LogHandlerFailed(_logger, header.Command, header.Id, ex);
                Refuse(header, body, descriptors, posted, Errno.EIO, ex.Message);
                return;
            }

            Trace(header, body, descriptors, null, "<-");
            if (!posted)
            {
                SendReply(header, replyLength, null);
            }

            StartAfterReply();
        }
        finally
        {
            // Descriptors the handler kept were taken out of the list; the rest are closed.
            foreach (var fd in message.Descriptors)
            {
                fd.Dispose();
            }

            message.Descriptors.Clear();
        }
    }

    private void Refuse(in VfioUserHeader header, ReadOnlySpan<byte> body, int descriptors, bool posted, Errno errno, string reason)
    {
        _counters.Refused(posted);
        Trace(header, body, descriptors, errno, "<-");
        LogRefused(_logger, header.Command, header.Id, errno, reason);
        if (!posted)
        {
            SendReply(header, 0, errno);
        }

        // A refusal can come after a change that made client memory reachable (the bus master bit): its fills start too.
        StartAfterReply();
    }

    // Work that talks to the client again (a mirror fill) starts only once the command that made it possible is answered.
    private void StartAfterReply()
    {
        var after = _afterReply;
        _afterReply = null;
        after?.Invoke();
    }

    // Returns the reply body's length (written at _reply[16..]); throws VfioUserException to refuse.
    private int Dispatch(in VfioUserHeader header, ReadOnlySpan<byte> body, List<SafeFileDescriptor> fds)
    {
        var command = header.Command;
        if (fds.Count > 0 && command is not (VfioUserCommand.DmaMap or VfioUserCommand.DeviceSetIrqs))
        {
            throw new VfioUserException(Errno.EINVAL, $"{command} carries no descriptors, but {fds.Count} came with it");
        }

        if (!_negotiated && command != VfioUserCommand.Version)
        {
            throw new VfioUserException(Errno.EINVAL, $"{command} before VERSION: the session starts with the version negotiation");
        }

        var reply = _reply.AsSpan(VfioUserHeader.Length);
        return command switch
        {
            VfioUserCommand.Version => Version(header, body, reply),
            VfioUserCommand.DmaMap => DmaMap(body, fds),
            VfioUserCommand.DmaUnmap => DmaUnmap(body, reply),
            VfioUserCommand.DeviceGetInfo => DeviceInfo(body, reply),
            VfioUserCommand.DeviceGetRegionInfo => RegionInfo(body, reply),
            VfioUserCommand.DeviceGetIrqInfo => IrqInfo(body, reply),
            VfioUserCommand.DeviceSetIrqs => SetIrqs(body, fds),
            VfioUserCommand.RegionRead => RegionRead(body, reply),
            VfioUserCommand.RegionWrite => RegionWrite(body, reply, (header.Flags & VfioUserFlags.NoReply) != 0),
            VfioUserCommand.DeviceReset => DeviceReset(body),
            VfioUserCommand.DmaRead or VfioUserCommand.DmaWrite =>
                throw new VfioUserException(Errno.EINVAL, $"{command} goes from server to client, never the other way"),
            VfioUserCommand.DeviceGetRegionIoFds or VfioUserCommand.RegionWriteMulti or VfioUserCommand.DeviceFeature
                or VfioUserCommand.MigrationDataRead or VfioUserCommand.MigrationDataWrite =>
                throw new VfioUserException(Errno.EOPNOTSUPP, $"{command} is not offered by this server (nor advertised in its capabilities)"),
            _ => throw new VfioUserException(Errno.EINVAL, $"command {(ushort)command} is not a vfio-user command"),
        };
    }

    private static void ExpectLength(VfioUserCommand command, ReadOnlySpan<byte> body, int length)
    {
        if (body.Length != length)
        {
            throw new VfioUserException(Errno.EINVAL, $"{command} has a {length}-byte payload; the message's size says {body.Length}");
        }
    }

    private static void ExpectReplyRoom(VfioUserCommand command, uint argsz, int needed)
    {
        if (argsz < needed)
        {
            throw new VfioUserException(Errno.EINVAL, $"{command} argsz {argsz} leaves no room for the {needed}-byte reply");
        }
    }

    private int Version(in VfioUserHeader header, ReadOnlySpan<byte> body, Span<byte> reply)
    {
        if (_negotiated)
        {
            throw new VfioUserException(Errno.EINVAL, "VERSION again: the version was negotiated at the start of the session");
        }

        if (body.Length < VfioUserLayout.VersionJson)
        {
            throw new VfioUserException(Errno.EINVAL, $"VERSION has at least a 4-byte payload (major, minor); the message's size says {body.Length}");
        }

        var major = BinaryPrimitives.ReadUInt16LittleEndian(body);
        if (major != VfioUserLayout.Major)
        {
            throw new VfioUserException(Errno.EOPNOTSUPP, $"protocol version {major}.x: this server speaks {VfioUserLayout.Major}.{VfioUserLayout.Minor}");
        }

        var json = body[VfioUserLayout.VersionJson..];
        if (!json.IsEmpty)
        {
            var end = json.IndexOf((byte)0);
            if (end < 0)
            {
                throw new VfioUserException(Errno.EINVAL, "VERSION's capabilities are not NUL-terminated");
            }

            ReadClientCapabilities(json[..end]);
        }

        BinaryPrimitives.WriteUInt16LittleEndian(reply, VfioUserLayout.Major);
        BinaryPrimitives.WriteUInt16LittleEndian(reply[VfioUserLayout.VersionMinor..], VfioUserLayout.Minor);

        // Every capability is optional, with a default; the reply must fit the client's buffer, which is the size
        // of its own VERSION message, so capabilities are left out (from the last) until it does.
        string[] capabilities =
        [
            $"\"max_msg_fds\":{_options.MaxDescriptorsPerMessage}",
            $"\"max_data_xfer_size\":{_options.MaxDataTransferBytes}",
            $"\"pgsizes\":4096",
            $"\"max_dma_maps\":{_options.MaxDmaMappings}",
        ];
        for (var count = capabilities.Length; count >= 0; count--)
        {
            var text = count == 0 ? string.Empty : "{\"capabilities\":{" + string.Join(',', capabilities.Take(count)) + "}}";
            var bytes = Encoding.UTF8.GetByteCount(text) + (count == 0 ? 0 : 1);
            if (VfioUserHeader.Length + VfioUserLayout.VersionJson + bytes <= header.Size)
            {
                if (count > 0)
                {
                    Encoding.UTF8.GetBytes(text, reply[VfioUserLayout.VersionJson..]);
                    reply[VfioUserLayout.VersionJson + bytes - 1] = 0;
                }

                _negotiated = true;
                LogNegotiated(_logger, count, _requests.MaxTransfer);
                return VfioUserLayout.VersionJson + bytes;
            }
        }

        throw new InvalidOperationException("unreachable: a reply with no capabilities fits any VERSION");
    }

    private void ReadClientCapabilities(ReadOnlySpan<byte> json)
    {
        try
        {
            using var document = JsonDocument.Parse(json.ToArray());
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new VfioUserException(Errno.EINVAL, "VERSION's capabilities are not a JSON object");
            }

            if (document.RootElement.TryGetProperty("capabilities", out var capabilities) && capabilities.ValueKind == JsonValueKind.Object
                && capabilities.TryGetProperty("max_data_xfer_size", out var transfer))
            {
                // How much one of our DMA_READ/DMA_WRITE may move; an absurd value is clamped, not trusted.
                if (!transfer.TryGetUInt32(out var bytes) || bytes < 512)
                {
                    throw new VfioUserException(Errno.EINVAL, $"VERSION's max_data_xfer_size {transfer} is not a number of at least 512");
                }

                _requests.MaxTransfer = (int)Math.Min(bytes, (uint)_options.MaxDataTransferBytes);
            }
        }
        catch (JsonException ex)
        {
            throw new VfioUserException(Errno.EINVAL, $"VERSION's capabilities are not JSON: {ex.Message}");
        }
    }

    private int DmaMap(ReadOnlySpan<byte> body, List<SafeFileDescriptor> fds)
    {
        ExpectLength(VfioUserCommand.DmaMap, body, VfioUserLayout.DmaMapLength);
        var argsz = BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.DmaMapArgsz..]);
        if (argsz != VfioUserLayout.DmaMapLength)
        {
            throw new VfioUserException(Errno.EINVAL, $"DMA_MAP argsz {argsz} is not the structure's {VfioUserLayout.DmaMapLength} bytes");
        }

        if (fds.Count > 1)
        {
            throw new VfioUserException(Errno.EINVAL, $"DMA_MAP carries one fd (or none); {fds.Count} came with it");
        }

        var flags = (VfioDmaMapFlags)BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.DmaMapFlags..]);
        var offset = BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.DmaMapOffset..]);
        var iova = BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.DmaMapAddress..]);
        var size = BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.DmaMapSize..]);
        var mapping = _dma.Map(iova, size, offset, flags, fds.Count == 1 ? fds[0] : null, _options.MaxMirrorBytes);
        _counters.Mapped(size);
        if (mapping.MessageOnly && mapping.Memory is null)
        {
            LogNotMirrored(_logger, iova, size, _options.MaxMirrorBytes);
        }
        else if (mapping.MessageOnly && _dma.TryStartFill(mapping))
        {
            _afterReply += () => StartMirrorFill(mapping);
        }

        return 0;
    }

    // Decision V6: the bus master bit gates the device's reach into client memory; when it comes on, mirrors that
    // wait for a fill start one (after the reply: QEMU answers DMA_READ from the loop that waits for this one).
    private void OnBusMasterChanged(bool enabled)
    {
        var refused = new List<string>();
        foreach (var mapping in _dma.SetDeviceAccess(enabled, refused))
        {
            if (_dma.TryStartFill(mapping))
            {
                _afterReply += () => StartMirrorFill(mapping);
            }
        }

        foreach (var reason in refused)
        {
            LogRemapRefused(_logger, reason);
        }
    }

    // Decision V3: client memory without an fd is copied in with DMA_READ messages from a worker, after the command
    // that made it reachable was answered, and reaches the model's IOMMU read-only once complete.
    private void StartMirrorFill(ClientMapping mapping)
    {
        var fill = Task.Run(() =>
        {
            var memory = mapping.Memory!;
            var added = false;
            var filled = false;
            try
            {
                // Held while the bytes land: an unmap meanwhile defers the munmap until the fill lets go.
                memory.DangerousAddRef(ref added);
                unsafe
                {
                    var into = new Span<byte>((void*)memory.Address, checked((int)mapping.Size));
                    _requests.Read(mapping.Iova, into, _options.ClientRequestTimeout);
                }

                filled = true;
            }
            catch (VfioUserClientRequestException ex)
            {
                LogMirrorFailed(_logger, mapping.Iova, mapping.Size, ex.Message);
            }
            catch (ObjectDisposedException)
            {
                // Unmapped before the fill began.
            }
            finally
            {
                if (added)
                {
                    memory.DangerousRelease();
                }
            }

            try
            {
                if (_dma.FinishFill(mapping, filled))
                {
                    LogMirrored(_logger, mapping.Iova, mapping.Size);
                }
            }
            catch (VfioUserException ex)
            {
                LogRemapRefused(_logger, ex.Message);
            }
        });
        lock (_fills)
        {
            _fills.RemoveAll(f => f.IsCompleted);
            _fills.Add(fill);
        }
    }

    private int DmaUnmap(ReadOnlySpan<byte> body, Span<byte> reply)
    {
        ExpectLength(VfioUserCommand.DmaUnmap, body, VfioUserLayout.DmaUnmapLength);
        var argsz = BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.DmaUnmapArgsz..]);
        var flags = (VfioDmaUnmapFlags)BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.DmaUnmapFlags..]);
        var iova = BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.DmaUnmapAddress..]);
        var size = BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.DmaUnmapSize..]);
        if ((flags & ~VfioDmaUnmapFlags.All) != 0)
        {
            // VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP and VADDR: no dirty tracking or vaddr updates here.
            throw new VfioUserException(Errno.EINVAL, $"DMA_UNMAP flags 0x{(uint)flags:X}: only VFIO_DMA_UNMAP_FLAG_ALL is taken");
        }

        var all = flags == VfioDmaUnmapFlags.All;
        if (all && (iova != 0 || size != 0))
        {
            throw new VfioUserException(Errno.EINVAL, $"DMA_UNMAP with VFIO_DMA_UNMAP_FLAG_ALL takes IOVA 0 and size 0, not 0x{iova:X} and 0x{size:X}");
        }

        var removed = _dma.Unmap(iova, size, all);
        _counters.Unmapped(removed);

        // The reply echoes the request's entry when the client left room for it.
        if (argsz < VfioUserLayout.DmaUnmapLength)
        {
            return 0;
        }

        body.CopyTo(reply);
        return VfioUserLayout.DmaUnmapLength;
    }

    private static int DeviceInfo(ReadOnlySpan<byte> body, Span<byte> reply)
    {
        ExpectLength(VfioUserCommand.DeviceGetInfo, body, VfioUserLayout.DeviceInfoLength);
        ExpectReplyRoom(VfioUserCommand.DeviceGetInfo, BinaryPrimitives.ReadUInt32LittleEndian(body), VfioUserLayout.DeviceInfoLength);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.DeviceInfoArgsz..], VfioUserLayout.DeviceInfoLength);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.DeviceInfoFlags..], (uint)(VfioDeviceFlags.Reset | VfioDeviceFlags.Pci));
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.DeviceInfoRegions..], VfioPciRegion.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.DeviceInfoIrqs..], VfioPciIrq.Count);
        return VfioUserLayout.DeviceInfoLength;
    }

    private static int RegionInfo(ReadOnlySpan<byte> body, Span<byte> reply)
    {
        ExpectLength(VfioUserCommand.DeviceGetRegionInfo, body, VfioUserLayout.RegionInfoLength);
        ExpectReplyRoom(VfioUserCommand.DeviceGetRegionInfo, BinaryPrimitives.ReadUInt32LittleEndian(body), VfioUserLayout.RegionInfoLength);
        var index = BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.RegionInfoIndex..]);
        if (index >= VfioPciRegion.Count)
        {
            throw new VfioUserException(Errno.EINVAL, $"region index {index} is out of range: the function has regions 0..{VfioPciRegion.Count - 1}");
        }

        var region = Fa1PciFunction.Region(index);
        reply[..VfioUserLayout.RegionInfoLength].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.RegionInfoArgsz..], VfioUserLayout.RegionInfoLength);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.RegionInfoFlags..], (uint)region.Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.RegionInfoIndex..], index);
        BinaryPrimitives.WriteUInt64LittleEndian(reply[VfioUserLayout.RegionInfoSize..], region.Size);
        return VfioUserLayout.RegionInfoLength;
    }

    private static int IrqInfo(ReadOnlySpan<byte> body, Span<byte> reply)
    {
        ExpectLength(VfioUserCommand.DeviceGetIrqInfo, body, VfioUserLayout.IrqInfoLength);
        ExpectReplyRoom(VfioUserCommand.DeviceGetIrqInfo, BinaryPrimitives.ReadUInt32LittleEndian(body), VfioUserLayout.IrqInfoLength);
        var index = BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.IrqInfoIndex..]);
        if (index >= VfioPciIrq.Count)
        {
            throw new VfioUserException(Errno.EINVAL, $"IRQ index {index} is out of range: the function has IRQ types 0..{VfioPciIrq.Count - 1}");
        }

        var (count, flags) = Fa1PciFunction.Irq(index);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.IrqInfoArgsz..], VfioUserLayout.IrqInfoLength);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.IrqInfoFlags..], (uint)flags);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.IrqInfoIndex..], index);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[VfioUserLayout.IrqInfoCount..], count);
        return VfioUserLayout.IrqInfoLength;
    }

    private int SetIrqs(ReadOnlySpan<byte> body, List<SafeFileDescriptor> fds)
    {
        if (body.Length < VfioUserLayout.IrqSetData)
        {
            throw new VfioUserException(Errno.EINVAL, $"DEVICE_SET_IRQS has at least a {VfioUserLayout.IrqSetData}-byte payload; the message's size says {body.Length}");
        }

        var argsz = BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.IrqSetArgsz..]);
        var flags = (VfioIrqSetFlags)BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.IrqSetFlags..]);
        var index = BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.IrqSetIndex..]);
        var start = BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.IrqSetStart..]);
        var count = BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.IrqSetCount..]);
        if (argsz != body.Length)
        {
            throw new VfioUserException(Errno.EINVAL, $"DEVICE_SET_IRQS argsz {argsz} differs from the payload's {body.Length} bytes");
        }

        var data = flags & VfioIrqSetFlags.DataMask;
        var action = flags & VfioIrqSetFlags.ActionMaskAll;
        if ((flags & ~(VfioIrqSetFlags.DataMask | VfioIrqSetFlags.ActionMaskAll)) != 0
            || !System.Numerics.BitOperations.IsPow2((uint)data) || !System.Numerics.BitOperations.IsPow2((uint)action))
        {
            throw new VfioUserException(Errno.EINVAL, $"DEVICE_SET_IRQS flags 0x{(uint)flags:X}: exactly one DATA_ and one ACTION_ flag, and no other");
        }

        if (index >= VfioPciIrq.Count)
        {
            throw new VfioUserException(Errno.EINVAL, $"IRQ index {index} is out of range: the function has IRQ types 0..{VfioPciIrq.Count - 1}");
        }

        var boolData = ReadOnlySpan<byte>.Empty;
        if (data == VfioIrqSetFlags.DataBool)
        {
            if (body.Length != VfioUserLayout.IrqSetData + (long)count)
            {
                throw new VfioUserException(Errno.EINVAL, $"DEVICE_SET_IRQS DATA_BOOL for {count} vectors carries {count} bytes of data; the payload has {body.Length - VfioUserLayout.IrqSetData}");
            }

            boolData = body[VfioUserLayout.IrqSetData..];
        }
        else if (body.Length != VfioUserLayout.IrqSetData)
        {
            throw new VfioUserException(Errno.EINVAL, $"DEVICE_SET_IRQS with {data} carries no data after the structure; the payload has {body.Length - VfioUserLayout.IrqSetData} more bytes");
        }

        if (fds.Count > 0 && data != VfioIrqSetFlags.DataEventFd)
        {
            throw new VfioUserException(Errno.EINVAL, $"DEVICE_SET_IRQS with {data} takes no descriptors; {fds.Count} came with it");
        }

        if (index != VfioPciIrq.Msix)
        {
            // INTx, MSI, ERR and REQ have no vectors: only "disable the index" (DATA_NONE, count 0) applies, and does nothing.
            if (data == VfioIrqSetFlags.DataNone && action == VfioIrqSetFlags.ActionTrigger && count == 0 && start == 0)
            {
                return 0;
            }

            throw new VfioUserException(Errno.EINVAL, $"IRQ index {index} has no vectors on this function (only MSI-X, index {VfioPciIrq.Msix}, has)");
        }

        _function.Vectors.Set(flags, start, count, boolData, fds);
        return 0;
    }

    private int RegionRead(ReadOnlySpan<byte> body, Span<byte> reply)
    {
        ExpectLength(VfioUserCommand.RegionRead, body, VfioUserLayout.RegionAccessData);
        var (offset, region, count) = ReadRegionAccess(body);
        body[..VfioUserLayout.RegionAccessData].CopyTo(reply);
        _function.Read(region, offset, reply.Slice(VfioUserLayout.RegionAccessData, (int)count));
        return VfioUserLayout.RegionAccessData + (int)count;
    }

    private int RegionWrite(ReadOnlySpan<byte> body, Span<byte> reply, bool posted)
    {
        if (body.Length < VfioUserLayout.RegionAccessData)
        {
            throw new VfioUserException(Errno.EINVAL, $"REGION_WRITE has at least a {VfioUserLayout.RegionAccessData}-byte payload; the message's size says {body.Length}");
        }

        var (offset, region, count) = ReadRegionAccess(body);
        if (body.Length - VfioUserLayout.RegionAccessData != count)
        {
            throw new VfioUserException(Errno.EINVAL, $"REGION_WRITE count {count} differs from the {body.Length - VfioUserLayout.RegionAccessData} data bytes the message carries");
        }

        _function.Write(region, offset, body.Slice(VfioUserLayout.RegionAccessData, (int)count), posted);
        body[..VfioUserLayout.RegionAccessData].CopyTo(reply);
        return VfioUserLayout.RegionAccessData;
    }

    private (ulong Offset, uint Region, uint Count) ReadRegionAccess(ReadOnlySpan<byte> body)
    {
        var offset = BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.RegionAccessOffset..]);
        var region = BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.RegionAccessRegion..]);
        var count = BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.RegionAccessCount..]);
        if (region >= VfioPciRegion.Count)
        {
            throw new VfioUserException(Errno.EINVAL, $"region index {region} is out of range: the function has regions 0..{VfioPciRegion.Count - 1}");
        }

        if (count > _options.MaxDataTransferBytes)
        {
            throw new VfioUserException(Errno.E2BIG, $"region access of {count} bytes is over max_data_xfer_size ({_options.MaxDataTransferBytes})");
        }

        return (offset, region, count);
    }

    private int DeviceReset(ReadOnlySpan<byte> body)
    {
        ExpectLength(VfioUserCommand.DeviceReset, body, 0);
        _function.Reset();
        return 0;
    }

    private void SendReply(in VfioUserHeader request, int bodyLength, Errno? error)
    {
        var flags = VfioUserFlags.Reply | (error is null ? 0 : VfioUserFlags.Error);
        var size = VfioUserHeader.Length + bodyLength;
        new VfioUserHeader(request.Id, request.Command, (uint)size, flags, error is { } e ? (uint)e : 0).Write(_reply);
        _transport.Send(_reply.AsSpan(0, size));
    }

    // One trace line per message: seconds since the session began (microsecond resolution), direction, ID, command,
    // and what it asked.
    private void Trace(in VfioUserHeader header, ReadOnlySpan<byte> body, int fds, Errno? refused, string direction)
    {
        if (_options.MessageTrace is not { } trace)
        {
            return;
        }

        var line = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        line.Append(inv, $"{System.Diagnostics.Stopwatch.GetElapsedTime(_started).TotalSeconds:F6} {direction} id={header.Id} {(header.Type == VfioUserFlags.Reply ? "reply " : string.Empty)}{header.Command}");
        if (header.Type == VfioUserFlags.Command && refused is null)
        {
            switch (header.Command)
            {
                case VfioUserCommand.DmaMap when body.Length >= VfioUserLayout.DmaMapLength:
                    line.Append(inv, $" iova=0x{BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.DmaMapAddress..]):x} size=0x{BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.DmaMapSize..]):x} flags={BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.DmaMapFlags..])} fds={fds}");
                    break;
                case VfioUserCommand.DmaUnmap when body.Length >= VfioUserLayout.DmaUnmapLength:
                    line.Append(inv, $" iova=0x{BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.DmaUnmapAddress..]):x} size=0x{BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.DmaUnmapSize..]):x} flags={BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.DmaUnmapFlags..])}");
                    break;
                case VfioUserCommand.RegionRead or VfioUserCommand.RegionWrite when body.Length >= VfioUserLayout.RegionAccessData:
                    line.Append(inv, $" region={BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.RegionAccessRegion..])}+0x{BinaryPrimitives.ReadUInt64LittleEndian(body):x} count={BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.RegionAccessCount..])}{((header.Flags & VfioUserFlags.NoReply) != 0 ? " posted" : string.Empty)}");
                    break;
                case VfioUserCommand.DmaRead or VfioUserCommand.DmaWrite when body.Length >= VfioUserLayout.DmaAccessData:
                    line.Append(inv, $" iova=0x{BinaryPrimitives.ReadUInt64LittleEndian(body):x} count={BinaryPrimitives.ReadUInt64LittleEndian(body[VfioUserLayout.DmaAccessCount..])}");
                    break;
                case VfioUserCommand.DeviceSetIrqs when body.Length >= VfioUserLayout.IrqSetData:
                    line.Append(inv, $" index={BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.IrqSetIndex..])} flags=0x{BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.IrqSetFlags..]):x} start={BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.IrqSetStart..])} count={BinaryPrimitives.ReadUInt32LittleEndian(body[VfioUserLayout.IrqSetCount..])} fds={fds}");
                    break;
            }
        }

        if (refused is { } errno)
        {
            line.Append(inv, $" => refused {errno}");
        }

        lock (_traceLock)
        {
            trace.WriteLine(line.ToString());
        }
    }

    [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "vfio-user client connected")]
    private static partial void LogSessionStarted(ILogger logger);

    [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "vfio-user client gone; released {Mappings} DMA mapping(s), its eventfds and descriptors")]
    private static partial void LogSessionEnded(ILogger logger, int mappings);

    [LoggerMessage(EventId = 202, Level = LogLevel.Information, Message = "vfio-user version 0.0 negotiated ({Capabilities} capabilities offered; DMA_READ/DMA_WRITE up to {Transfer} bytes)")]
    private static partial void LogNegotiated(ILogger logger, int capabilities, int transfer);

    [LoggerMessage(EventId = 203, Level = LogLevel.Warning, Message = "vfio-user {Command} (id {Id}) refused with {Errno}: {Reason}")]
    private static partial void LogRefused(ILogger logger, VfioUserCommand command, ushort id, Errno errno, string reason);

    [LoggerMessage(EventId = 204, Level = LogLevel.Warning, Message = "vfio-user reply id {Id} ({Command}) matches no request of the server's; dropped")]
    private static partial void LogStrayReply(ILogger logger, ushort id, VfioUserCommand command);

    [LoggerMessage(EventId = 205, Level = LogLevel.Information, Message = "vfio-user: the client is gone ({Reason})")]
    private static partial void LogSendFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 206, Level = LogLevel.Debug, Message = "client memory 0x{Iova:X} (+0x{Size:X}, no fd) mirrored with DMA_READ, device-readable")]
    private static partial void LogMirrored(ILogger logger, ulong iova, ulong size);

    [LoggerMessage(EventId = 207, Level = LogLevel.Warning, Message = "client memory 0x{Iova:X} (+0x{Size:X}, no fd) could not be mirrored, the device cannot reach it: {Reason}")]
    private static partial void LogMirrorFailed(ILogger logger, ulong iova, ulong size, string reason);

    [LoggerMessage(EventId = 208, Level = LogLevel.Warning, Message = "client memory 0x{Iova:X} (+0x{Size:X}) came without an fd and is over the mirror limit of {Limit} bytes; the device cannot reach it")]
    private static partial void LogNotMirrored(ILogger logger, ulong iova, ulong size, ulong limit);

    [LoggerMessage(EventId = 213, Level = LogLevel.Warning, Message = "a client mapping could not enter the model's IOMMU when bus mastering came on: {Reason}")]
    private static partial void LogRemapRefused(ILogger logger, string reason);

    [LoggerMessage(EventId = 214, Level = LogLevel.Error, Message = "vfio-user {Command} (id {Id}) failed inside the server; answered EIO")]
    private static partial void LogHandlerFailed(ILogger logger, VfioUserCommand command, ushort id, Exception ex);

    [LoggerMessage(EventId = 215, Level = LogLevel.Error, Message = "vfio-user session ended by a fault of the server")]
    private static partial void LogSessionFailed(ILogger logger, Exception ex);

    [LoggerMessage(EventId = 209, Level = LogLevel.Warning, Message = "{Count} mirror fill(s) still running at the end of the session")]
    private static partial void LogFillsStuck(ILogger logger, int count);
}
