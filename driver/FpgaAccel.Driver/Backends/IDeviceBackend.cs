using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Backends;

/// <summary>Which device the driver talks to.</summary>
public enum BackendKind
{
    /// <summary>The board when a VFIO-bound FA-1 is found and usable, otherwise the model.</summary>
    Auto,

    /// <summary>A real FA-1 through VFIO.</summary>
    Board,

    /// <summary>The software model in hw-sim.</summary>
    Model,
}

/// <summary>
/// The one seam between the driver and a device: the board through VFIO, or the model.
/// Everything above it is the same code for both.
/// </summary>
/// <remarks>
/// MMIO: one 64-bit load or store per call (spec 2). Interrupts: eventfds the driver owns, one per
/// MSI-X vector, connected as VFIO_DEVICE_SET_IRQS connects them. DMA: IOVA mappings through the
/// platform IOMMU (VFIO type1 on the board, the model's IOMMU in CI); mapping a page pins it.
/// </remarks>
internal interface IDeviceBackend : IDisposable
{
    /// <summary>Board or model.</summary>
    BackendKind Kind { get; }

    /// <summary>One line a person can read: which device, where.</summary>
    string Description { get; }

    /// <summary>One 64-bit register read of BAR0.</summary>
    ulong Read64(uint offset);

    /// <summary>One 64-bit register write of BAR0.</summary>
    void Write64(uint offset, ulong value);

    /// <summary>
    /// Connects MSI-X vectors 0..n-1 to <paramref name="vectors"/>. Returns how many vectors the host
    /// granted: all three, or one (every cause then arrives on vector 0).
    /// </summary>
    int ConnectInterrupts(IReadOnlyList<EventFd> vectors);

    /// <summary>Disconnects every vector; safe to call when none is connected.</summary>
    void DisconnectInterrupts();

    /// <summary>
    /// Restores what a power cycle of the function cleared and only the host can set again, once the device answers:
    /// on the board the command register's memory space and bus master bits (spec 1: a cold reset clears them, and a
    /// function without bus mastering makes no DMA). The recovery calls it before its reset, and reconnects MSI-X
    /// after (<see cref="ConnectInterrupts"/>). The model has no config space (R1): nothing to do.
    /// </summary>
    void RestoreFunction()
    {
    }

    /// <summary>IOVA windows the platform IOMMU accepts (inclusive), from VFIO's IOVA-range capability on the board.</summary>
    IReadOnlyList<IovaRange> IovaRanges { get; }

    /// <summary>
    /// Maps <paramref name="length"/> bytes of host memory at <paramref name="hostAddress"/> to
    /// <paramref name="iova"/> in the platform IOMMU (VFIO_IOMMU_MAP_DMA on the board). Mapping pins the
    /// pages. All three numbers are 4 KiB multiples. Throws <see cref="DmaMappingException"/> when refused.
    /// </summary>
    void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access);

    /// <summary>
    /// Removes the IOMMU mapping of the range (VFIO_IOMMU_UNMAP_DMA), unpinning its pages. Returns the bytes
    /// unmapped. Callers unmap only after the device can no longer reach the range (spec 4.3 fence).
    /// </summary>
    ulong UnmapDma(ulong iova, ulong length);

    /// <summary>
    /// The device's oracle when this backend can see inside the device (the model), for test harnesses; null
    /// for a backend that cannot (the board).
    /// </summary>
    /// <remarks>
    /// Optional capabilities of a backend are nullable members with a default of null, as this one: a backend
    /// that lacks one needs no code, and adding another (fault injection, say) breaks no backend. The driver's
    /// own layers (MMU, faults, queues) never use them, so it runs the same on every backend; FpgaDevice only
    /// hands them out.
    /// </remarks>
    IDeviceOracle? Oracle => null;

    /// <summary>
    /// True when devices of this kind attached to one <see cref="Mmu.AddressSpace"/> are charged once per page against
    /// the locked-memory limit, because the platform pins a page once for all of them (devices whose IOMMU groups share
    /// one type1 container, or one iommufd IOAS: decision F21); false (the default, and the board's: one type1 container
    /// per device, each charging the process's locked_vm for its own pin) charges every device's mapping.
    /// </summary>
    bool PinsChargedOncePerAddressSpace => false;

    /// <summary>
    /// Fault injection when this backend can make its device misbehave on demand (the model), for test harnesses and
    /// the stress run; null for a backend that cannot (the board). An optional capability, as <see cref="Oracle"/>.
    /// </summary>
    IDeviceFaultInjection? FaultInjection => null;
}

/// <summary>A window of usable IOVAs, inclusive at both ends.</summary>
internal readonly record struct IovaRange(ulong Start, ulong End)
{
    public bool Contains(ulong iova, ulong length) => length != 0 && iova >= Start && iova + length - 1 >= iova && iova + length - 1 <= End;
}
