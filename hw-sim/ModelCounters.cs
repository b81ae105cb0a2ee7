namespace FpgaAccel.HwSim;

/// <summary>
/// What the model saw that a real device would not report: for tests and diagnostics.
/// Read with <see cref="Fa1Model.Counters"/>.
/// </summary>
public readonly record struct ModelCounters(
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
/// <param name="FaultsRaised">Translation faults detected.</param>
/// <param name="LostFaults">Faults raised that have no answer yet (no response, or ended by a reset); 0 once a run has settled.</param>
/// <param name="IgnoredFaultResponses">FAULT_RESP writes naming a tag that was not live (spec 4.4).</param>
public readonly record struct ModelOracle(
    long FaultsRaised,
    long LostFaults,
    long IgnoredFaultResponses);
