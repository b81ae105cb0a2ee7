namespace FpgaAccel.HwSim.VfioUser;

/// <summary>The server's counters, shared by its sessions; each is changed with one interlocked operation.</summary>
internal sealed class VfioUserCounters
{
    private const int CommandSlots = 32;
    private readonly long[] _commands = new long[CommandSlots];
    private long _sessions;
    private long _messages;
    private long _refused;
    private long _refusedPosted;
    private long _strayReplies;
    private long _dmaMaps;
    private long _dmaMappedBytes;
    private long _dmaUnmaps;
    private long _dmaUnmappedBytes;
    private long _clientRequests;

    public void Message(VfioUserCommand command, bool isCommand)
    {
        Interlocked.Increment(ref _messages);
        if (isCommand && (int)command < CommandSlots)
        {
            Interlocked.Increment(ref _commands[(int)command]);
        }
    }

    public void SessionEnded() => Interlocked.Increment(ref _sessions);

    public void Refused(bool posted)
    {
        Interlocked.Increment(ref _refused);
        if (posted)
        {
            Interlocked.Increment(ref _refusedPosted);
        }
    }

    public void StrayReply() => Interlocked.Increment(ref _strayReplies);

    public void Mapped(ulong bytes)
    {
        Interlocked.Increment(ref _dmaMaps);
        Interlocked.Add(ref _dmaMappedBytes, (long)bytes);
    }

    public void Unmapped(ulong bytes)
    {
        Interlocked.Increment(ref _dmaUnmaps);
        Interlocked.Add(ref _dmaUnmappedBytes, (long)bytes);
    }

    public void ClientRequests(long count) => Interlocked.Add(ref _clientRequests, count);

    public VfioUserStatistics Snapshot(long functionResets, long powerCycles, int mappingsHeld, int vectorsWired, long refusedAccesses)
    {
        var commands = new Dictionary<VfioUserCommand, long>();
        for (var i = 0; i < CommandSlots; i++)
        {
            var n = Interlocked.Read(ref _commands[i]);
            if (n != 0)
            {
                commands[(VfioUserCommand)i] = n;
            }
        }

        return new VfioUserStatistics
        {
            Sessions = Interlocked.Read(ref _sessions),
            Messages = Interlocked.Read(ref _messages),
            Commands = commands,
            Refused = Interlocked.Read(ref _refused),
            RefusedPosted = Interlocked.Read(ref _refusedPosted),
            StrayReplies = Interlocked.Read(ref _strayReplies),
            DmaMaps = Interlocked.Read(ref _dmaMaps),
            DmaMappedBytes = Interlocked.Read(ref _dmaMappedBytes),
            DmaUnmaps = Interlocked.Read(ref _dmaUnmaps),
            DmaUnmappedBytes = Interlocked.Read(ref _dmaUnmappedBytes),
            ClientRequests = Interlocked.Read(ref _clientRequests),
            FunctionResets = functionResets,
            PowerCycles = powerCycles,
            DeviceAccessesRefused = refusedAccesses,
            MappingsHeld = mappingsHeld,
            VectorsWired = vectorsWired,
        };
    }
}
