using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim.VfioUser;

/// <summary>Settings of a <see cref="VfioUserServer"/>: the PCI identity it presents and the protocol limits it offers.</summary>
public sealed record VfioUserServerOptions
{
    /// <summary>PCI vendor ID in config space (spec 1's default; a lab bitstream may differ).</summary>
    public ushort VendorId { get; init; } = Fa1Identity.DefaultVendorId;

    /// <summary>PCI device ID in config space.</summary>
    public ushort DeviceId { get; init; } = Fa1Identity.DefaultDeviceId;

    /// <summary>PCI revision ID in config space.</summary>
    public byte Revision { get; init; } = 1;

    /// <summary>
    /// max_data_xfer_size offered to the client: the most bytes one REGION_READ or REGION_WRITE may move. The
    /// protocol's default, 1 MiB.
    /// </summary>
    public int MaxDataTransferBytes { get; init; } = 1 << 20;

    /// <summary>max_msg_fds offered: the most descriptors one message may carry (QEMU accepts at most 16).</summary>
    public int MaxDescriptorsPerMessage { get; init; } = 16;

    /// <summary>max_dma_maps offered: the most DMA mappings held at once (type1's default dma_entry_limit, 65535).</summary>
    public int MaxDmaMappings { get; init; } = ushort.MaxValue;

    /// <summary>How long a DMA_READ or DMA_WRITE to the client waits for its reply (QEMU's own message timeout is 5 s).</summary>
    public TimeSpan ClientRequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The largest client range without an fd that is mirrored from DMA_READ messages (decision V3).</summary>
    public ulong MaxMirrorBytes { get; init; } = 16 << 20;

    /// <summary>
    /// When set, one line per message received and sent (time, ID, command, what it asked, and the errno of a refusal),
    /// for seeing what a client does. Written from the session's threads under a lock.
    /// </summary>
    public TextWriter? MessageTrace { get; init; }

    /// <summary>Checks the settings and throws naming the first bad one.</summary>
    public void Validate()
    {
        Check(MaxDataTransferBytes is >= 4096 and <= 64 << 20, nameof(MaxDataTransferBytes), MaxDataTransferBytes, "4096..64 MiB");
        Check(MaxDescriptorsPerMessage is >= 1 and <= 16, nameof(MaxDescriptorsPerMessage), MaxDescriptorsPerMessage, "1..16 (QEMU's limit)");
        Check(MaxDmaMappings >= 1, nameof(MaxDmaMappings), MaxDmaMappings, "at least 1");
        Check(ClientRequestTimeout > TimeSpan.Zero, nameof(ClientRequestTimeout), ClientRequestTimeout, "positive");
    }

    private static void Check(bool ok, string name, object value, string rule)
    {
        if (!ok)
        {
            throw new ArgumentOutOfRangeException(name, value, $"vfio-user server setting {name} = {value} is out of range; it must be {rule}.");
        }
    }
}

/// <summary>What a <see cref="VfioUserServer"/> has seen, cumulative since it was made.</summary>
public sealed record VfioUserStatistics
{
    /// <summary>Client connections served to their end.</summary>
    public long Sessions { get; init; }

    /// <summary>Messages received (commands and replies).</summary>
    public long Messages { get; init; }

    /// <summary>Commands received, by command.</summary>
    public IReadOnlyDictionary<VfioUserCommand, long> Commands { get; init; } = new Dictionary<VfioUserCommand, long>();

    /// <summary>Commands refused with an error reply (or dropped, when posted).</summary>
    public long Refused { get; init; }

    /// <summary>Posted commands (no reply wanted) that were refused: nothing could tell the client.</summary>
    public long RefusedPosted { get; init; }

    /// <summary>Replies that matched no request of the server's.</summary>
    public long StrayReplies { get; init; }

    /// <summary>DMA_MAP messages that added a mapping.</summary>
    public long DmaMaps { get; init; }

    /// <summary>Bytes those mappings covered.</summary>
    public long DmaMappedBytes { get; init; }

    /// <summary>DMA_UNMAP messages answered with success (including those that covered no mapping).</summary>
    public long DmaUnmaps { get; init; }

    /// <summary>Bytes those unmaps removed.</summary>
    public long DmaUnmappedBytes { get; init; }

    /// <summary>DMA_READ and DMA_WRITE requests the server sent to the client.</summary>
    public long ClientRequests { get; init; }

    /// <summary>Function-level resets (FLR and DEVICE_RESET).</summary>
    public long FunctionResets { get; init; }

    /// <summary>Returns of the device to the bus (BMC RESET, a removal's return) that config space followed (decision V11).</summary>
    public long PowerCycles { get; init; }

    /// <summary>
    /// Device accesses the model's IOMMU refused (an IOVA the client had not mapped, or not for that access): on a
    /// board each would be an IOMMU fault the host logs. A driver that quiesces the device before it unmaps makes none.
    /// </summary>
    public long DeviceAccessesRefused { get; init; }

    /// <summary>DMA mappings held now.</summary>
    public int MappingsHeld { get; init; }

    /// <summary>MSI-X vectors with an eventfd now.</summary>
    public int VectorsWired { get; init; }
}
