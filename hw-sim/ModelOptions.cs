using System.Numerics;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>
/// Settings of the software model. Defaults follow the spec (sections 3 and 7); each cost is a setting.
/// </summary>
public sealed record ModelOptions
{
    /// <summary>Wall or virtual clock (spec 7).</summary>
    public ClockMode Clock { get; init; } = ClockMode.Wall;

    /// <summary>Seed for every random choice the model makes, for reproducible virtual-clock runs.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>CAPS.contexts: contexts the device offers (spec 3's model default: 16).</summary>
    public int Contexts { get; init; } = 16;

    /// <summary>CAPS.queues: queues the device offers (spec 3's model default: 8).</summary>
    public int Queues { get; init; } = 8;

    /// <summary>CAPS TLB ways (spec 7: 8).</summary>
    public int TlbWays { get; init; } = Fa1Timing.TlbWays;

    /// <summary>CAPS log2 of TLB sets (spec 7: 1024 entries in 8 ways, so 7).</summary>
    public int TlbSetsLog2 { get; init; } = BitOperations.Log2((uint)(Fa1Timing.TlbEntries / Fa1Timing.TlbWays));

    /// <summary>CAPS.HUGE_2M: a LEAF bit at level 2 makes a 2 MiB page (spec 4.1).</summary>
    public bool Huge2M { get; init; } = true;

    /// <summary>CAPS.DROPIN: the DROPIN fault response is supported (spec 4.4); without it a DROPIN is a RETRY (D26).</summary>
    public bool Dropin { get; init; } = true;

    /// <summary>CAPS VA bits: DVAs at or above 2^VaBits are a bad descriptor (spec 5).</summary>
    public int VaBits { get; init; } = PageTableFormat.VaBits;

    /// <summary>CAPS IOVA bits: the top of the model IOMMU's IOVA space (spec 3's default: 48).</summary>
    public int IovaBits { get; init; } = 48;

    /// <summary>What VERSION reads; change it to test the driver's version rule.</summary>
    public Fa1Version Version { get; init; } = Fa1Version.Current;

    /// <summary>What ID reads; change it to test identity checks.</summary>
    public ulong IdValue { get; init; } = Fa1Identity.IdValue;

    /// <summary>
    /// MSI-X vectors the host grants (spec 1): 3, or 1 when every cause shares vector 0.
    /// </summary>
    public int MsixVectors { get; init; } = Fa1Identity.MsixVectors;

    /// <summary>Cycles from a CTRL.RESET write until STATUS.READY.</summary>
    public ulong ResetCycles { get; init; } = Fa1Timing.Reset;

    /// <summary>
    /// Cost of one register read on the virtual clock (a PCIe non-posted read round trip, about
    /// 800 ns). On the wall clock the host's own access time is the cost.
    /// </summary>
    public ulong MmioReadCycles { get; init; } = 200;

    /// <summary>
    /// Bytes the model's IOMMU lets be pinned at once, as RLIMIT_MEMLOCK limits VFIO type1.
    /// Default: no limit of the model's own (the driver enforces the process's limit).
    /// </summary>
    public ulong MemlockLimitBytes { get; init; } = ulong.MaxValue;

    /// <summary>
    /// Commands of one queue the device runs at once (spec 5: without FENCE they may overlap; decision D35).
    /// Each has its own engine lane; completions may come out of order, and each command's stalled access
    /// holds a fault of its own. 1 runs a queue's commands one after another.
    /// </summary>
    public int CommandsInFlight { get; init; } = 4;

    /// <summary>
    /// Mappings the model's IOMMU holds at most at once, as vfio_iommu_type1's dma_entry_limit (default
    /// 65535): one more map is refused with ENOSPC (decision D31).
    /// </summary>
    public int IommuMappingLimit { get; init; } = ModelIommu.DefaultMappingLimit;

    /// <summary>Spec 7: cycles of one DMA read round trip (descriptor fetch, page-table entry, first data read).</summary>
    public ulong DmaReadCycles { get; init; } = Fa1Timing.DmaReadRoundTrip;

    /// <summary>Spec 7: cycles of one posted DMA write (a completion record, the tail of a data write).</summary>
    public ulong DmaWriteCycles { get; init; } = Fa1Timing.DmaWritePosted;

    /// <summary>Spec 7: data bandwidth in bytes per cycle, each way.</summary>
    public ulong BytesPerCycle { get; init; } = Fa1Timing.BytesPerCycle;

    /// <summary>Spec 7: cycles of a TLB hit.</summary>
    public ulong TlbHitCycles { get; init; } = Fa1Timing.TlbHit;

    /// <summary>Spec 7: cycles of an invalidation, before the wait for in-flight accesses.</summary>
    public ulong InvalidationCycles { get; init; } = Fa1Timing.Invalidation;

    /// <summary>Spec 7: cycles from a fault's detection to its MSI-X message.</summary>
    public ulong FaultToInterruptCycles { get; init; } = Fa1Timing.FaultToInterrupt;

    /// <summary>Spec 7: cycles from a fault response to the access's restart.</summary>
    public ulong FaultResponseCycles { get; init; } = Fa1Timing.FaultResponseToRestart;

    /// <summary>
    /// Entries of the walk cache (non-leaf page-table entries, spec 4.1). The spec gives no size;
    /// the driver never sees it except in timing.
    /// </summary>
    public int WalkCacheEntries { get; init; } = 64;

    /// <summary>Fault injection: a reset that never completes.</summary>
    public bool InjectStuckReset { get; init; }

    /// <summary>Fault injection: the device drops off the bus when a reset starts.</summary>
    public bool InjectDropOffBusOnReset { get; init; }

    /// <summary>CAPS as this model reports it.</summary>
    public Capabilities Capabilities => FirmwareInterface.Capabilities.Create(
        Contexts, Queues, TlbWays, TlbSetsLog2, isModel: true, Huge2M, Dropin, VaBits, IovaBits);

    /// <summary>Checks the settings and throws naming the first bad one.</summary>
    public void Validate()
    {
        Check(Contexts is >= 1 and <= Fa1Registers.MaxAddressableContexts, nameof(Contexts), Contexts, $"1..{Fa1Registers.MaxAddressableContexts}");
        Check(Queues is >= 1 and <= Fa1Registers.MaxAddressableQueues - 1, nameof(Queues), Queues, "1..255");
        Check(TlbWays is >= 1 and <= 255, nameof(TlbWays), TlbWays, "1..255");
        Check(TlbSetsLog2 is >= 0 and <= 16, nameof(TlbSetsLog2), TlbSetsLog2, "0..16");
        Check(MsixVectors is 1 or 3, nameof(MsixVectors), MsixVectors, "1 or 3");
        Check(VaBits is >= 32 and <= PageTableFormat.VaBits, nameof(VaBits), VaBits, $"32..{PageTableFormat.VaBits}");
        Check(IovaBits is >= 32 and <= 52, nameof(IovaBits), IovaBits, "32..52");
        Check(BytesPerCycle >= 1, nameof(BytesPerCycle), BytesPerCycle, "at least 1");
        Check(CommandsInFlight is >= 1 and <= 64, nameof(CommandsInFlight), CommandsInFlight, "1..64");
        Check(IommuMappingLimit >= 1, nameof(IommuMappingLimit), IommuMappingLimit, "at least 1");
        Check(WalkCacheEntries is >= 0 and <= 4096, nameof(WalkCacheEntries), WalkCacheEntries, "0..4096");
    }

    private static void Check(bool ok, string name, object value, string rule)
    {
        if (!ok)
        {
            throw new ArgumentOutOfRangeException(name, value, $"Model setting {name} = {value} is out of range; it must be {rule}.");
        }
    }
}
