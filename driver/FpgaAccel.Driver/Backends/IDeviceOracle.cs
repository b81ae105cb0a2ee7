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

    /// <summary>
    /// Audits what the device caches against the page tables in memory: every TLB and walk-cache entry of
    /// <paramref name="context"/> (every context when null) serving DVAs in [<paramref name="dva"/>,
    /// + <paramref name="length"/>) that grants more than the table does now is returned as a violation (a TLB
    /// leaf with an IOVA or a permission the table lacks: a removal or downgrade without its TLB_INV; a
    /// walk-cache entry pointing at a table the live table no longer links: a retired table still reachable).
    /// </summary>
    /// <remarks>
    /// Call it after a driver operation that removes or downgrades translations (unpin, unregister, eviction,
    /// a 2 MiB promotion or split, context dispose) has returned, while no other such operation covering the
    /// range is in progress: between a removal's table change and its fence, cached entries legitimately exceed
    /// the table, and the device cannot tell that from a forgotten invalidation. Each violation also counts in
    /// <see cref="DeviceOracleReport.AuditViolations"/>.
    /// </remarks>
    IReadOnlyList<DeviceAuditViolation> Audit(int? context = null, ulong dva = 0, ulong length = ulong.MaxValue);
}

/// <summary>What an audit found cached that the page table does not back.</summary>
public enum DeviceAuditViolationKind
{
    /// <summary>A TLB entry translates a DVA page the table no longer maps.</summary>
    TlbEntryNotInTable,

    /// <summary>A TLB entry sends a DVA page to another IOVA than the table does.</summary>
    TlbEntryAddressDiffers,

    /// <summary>A TLB entry grants a permission the table's entry no longer grants.</summary>
    TlbEntryPermissionExceedsTable,

    /// <summary>A walk-cache entry points at a table the live table no longer links (a retired table still reachable).</summary>
    WalkCacheEntryStale,
}

/// <summary>One audit finding: a cached translation that grants more than the page table in memory.</summary>
/// <param name="Kind">What differs.</param>
/// <param name="Context">The context of the cached entry.</param>
/// <param name="Dva">The DVA page (TLB) or the first DVA of the span (walk cache).</param>
/// <param name="Level">The page-table level the entry caches (3, or 2 for a 2 MiB leaf; 0-2 for the walk cache).</param>
/// <param name="CachedEntry">The cached entry, raw.</param>
/// <param name="TableEntry">What the table holds there now, raw (0 when the walk stops above that level).</param>
/// <param name="InstalledByDropin">The TLB entry came from a DROPIN that already exceeded the table when installed.</param>
/// <param name="Description">One line naming the context, the DVA and what the cache and the table say.</param>
public sealed record DeviceAuditViolation(
    DeviceAuditViolationKind Kind, int Context, ulong Dva, int Level, ulong CachedEntry, ulong TableEntry, bool InstalledByDropin, string Description)
{
    /// <inheritdoc/>
    public override string ToString() => Description;
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

    /// <summary>
    /// DROPIN responses whose entry granted more than the page table when the device installed it, and that no
    /// invalidation then dropped (a DROPIN racing a removal whose TLB_INV drops it is not counted): 0 when the
    /// fault service only drops in what the table holds.
    /// </summary>
    public long DropinMismatches { get; init; }

    /// <summary>Violations found by every <see cref="IDeviceOracle.Audit"/> so far: 0 when every removal invalidated what it removed.</summary>
    public long AuditViolations { get; init; }

    /// <summary>
    /// FQ_HEAD or CQ_HEAD writes ahead of the device's tail or more than a ring behind it (the ring then looks
    /// full to the device): 0 when the driver consumes only what the device produced.
    /// </summary>
    public long BadRingHeadWrites { get; init; }
}
