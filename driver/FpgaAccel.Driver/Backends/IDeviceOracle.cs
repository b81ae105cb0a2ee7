namespace FpgaAccel.Driver.Backends;

/// <summary>
/// What a backend that sees inside the device can tell about the driver's correctness: accesses and
/// faults a real device performs but never reports. The model offers one through
/// <see cref="IDeviceBackend.Oracle"/>; a board has none. Test harnesses (the stress run) assert that
/// its bad counters stay 0.
/// </summary>
public interface IDeviceOracle
{
    /// <summary>Reads every counter at once, cumulative since the backend was created (a device reset does not clear them).</summary>
    DeviceOracleReport Read();
}

/// <summary>
/// The oracle's counters at one moment. Counters are added as new properties; the existing ones keep
/// their meaning, so a harness written against this report keeps compiling and keeps its checks.
/// </summary>
public sealed record DeviceOracleReport
{
    /// <summary>Data accesses the device made (one page of one side of a command): the denominator for the counters below.</summary>
    public long DataAccesses { get; init; }

    /// <summary>
    /// Device accesses through a translation the driver had removed and fenced, or through an IOMMU mapping it
    /// had removed: 0 whenever the removal protocol holds (spec 4.3).
    /// </summary>
    public long StaleAccesses { get; init; }

    /// <summary>Translation faults the device raised on the fault ring (spec 4.4).</summary>
    public long FaultsRaised { get; init; }

    /// <summary>Faults raised that have no answer (no response, or ended by a reset): 0 once a run has settled.</summary>
    public long LostFaults { get; init; }

    /// <summary>
    /// Device accesses to host memory the process had already freed while the IOMMU still pinned it (the
    /// device wrote or read an orphaned page): 0 when nothing is freed before it is unmapped.
    /// </summary>
    public long FreedMemoryAccesses { get; init; }
}
