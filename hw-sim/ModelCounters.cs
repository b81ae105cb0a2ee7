namespace FpgaAccel.HwSim;

/// <summary>
/// What the model saw that a real device would not report: for tests and diagnostics.
/// Read with <see cref="Fa1Model.Counters"/>.
/// </summary>
internal readonly record struct ModelCounters(
    long RegisterReads,
    long RegisterWrites,
    long IgnoredWrites,
    long UnimplementedAccesses,
    long MsixMessages,
    long Resets);

/// <summary>
/// The model's oracle (<see cref="Fa1Model.Oracle"/>): what it saw that the spec forbids or that
/// shows a lost event. Tests assert the bad ones stay 0.
/// </summary>
/// <param name="DataAccesses">Data accesses (one page of one side of a command) the device made.</param>
/// <param name="StaleAccesses">
/// Data accesses through a translation that should be dead: its IOMMU page was unmapped (and maybe
/// mapped again) since the translation was read (every access records the IOMMU page generation it
/// used), or an invalidation issued after the translation was read completed its fence while the page
/// table no longer granted the access (spec 4.3).
/// </param>
/// <param name="FaultsRaised">Translation faults detected.</param>
/// <param name="LostFaults">Faults raised that have no answer yet (no response, or ended by a reset); 0 once a run has settled.</param>
/// <param name="IgnoredFaultResponses">FAULT_RESP writes naming a tag that was not live (spec 4.4).</param>
public readonly record struct ModelOracle(
    long DataAccesses,
    long StaleAccesses,
    long FaultsRaised,
    long LostFaults,
    long IgnoredFaultResponses)
{
    /// <summary>
    /// Device accesses (data, descriptors, completions, fault records, table walks) that landed in host memory
    /// its owner had already freed while the IOMMU still held it (decision D32): 0 when the driver keeps
    /// memory alive for as long as it is mapped.
    /// </summary>
    public long FreedMemoryAccesses { get; init; }

    /// <summary>
    /// DROPINs whose FAULT_PTE granted more than the page table did when installed and that no invalidation then
    /// dropped (pushed out of the TLB for room, or found by an audit still exceeding the table): decision D33.
    /// A DROPIN that raced with a removal and was dropped by its TLB_INV (spec 4.4) is not counted.
    /// </summary>
    public long DropinMismatches { get; init; }

    /// <summary>Violations found by every <see cref="Fa1Model.AuditTranslations"/> so far (D33).</summary>
    public long AuditViolations { get; init; }

    /// <summary>
    /// FQ_HEAD or CQ_HEAD writes ahead of the matching tail or more than a ring behind it (decisions D22, D36):
    /// the ring then looks full until the driver writes a sane value. 0 for a driver that never consumes what the
    /// device has not produced.
    /// </summary>
    public long BadRingHeadWrites { get; init; }
}
