namespace FpgaAccel.Driver.Faults;

/// <summary>How the fault service waits for faults.</summary>
public enum FaultWaitMode
{
    /// <summary>Block on the FAULT eventfd (epoll) whenever the ring is empty.</summary>
    Block,

    /// <summary>
    /// Spin on FQ_TAIL for <see cref="FaultServiceOptions.SpinTime"/> after the ring empties, then block:
    /// a fault that follows soon is seen without an interrupt wake-up (like MPF's VTP service thread).
    /// </summary>
    Adaptive,
}

/// <summary>Settings of the fault service.</summary>
public sealed record FaultServiceOptions
{
    /// <summary>How the service waits when the ring is empty: block on the eventfd, or spin a little first (adaptive).</summary>
    public FaultWaitMode Mode { get; init; } = FaultWaitMode.Block;

    /// <summary>How long the adaptive mode spins on FQ_TAIL before it blocks.</summary>
    public TimeSpan SpinTime { get; init; } = TimeSpan.FromMicroseconds(50);

    /// <summary>log2 of the fault ring's entries (spec 4.4: 6..16).</summary>
    public int RingLog2 { get; init; } = 10;

    /// <summary>Answer resolved faults with DROPIN (saves the device a walk) when CAPS.DROPIN; else RETRY.</summary>
    public bool UseDropin { get; init; } = true;

    /// <summary>
    /// Longest the blocked service sleeps without an interrupt before it looks at the ring anyway: a
    /// bound on how long a lost MSI-X message could delay a fault.
    /// </summary>
    public TimeSpan IdlePoll { get; init; } = TimeSpan.FromMilliseconds(100);
}
