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
