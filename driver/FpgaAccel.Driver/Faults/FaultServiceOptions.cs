using FpgaAccel.FirmwareInterface;

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

    /// <summary>
    /// Time each step of every fault's service (<see cref="FaultService.StageTimes"/>): where the service time goes. Off by
    /// default (a timestamp per step, and one CYCLES read per drain).
    /// </summary>
    public bool TraceStages { get; init; }

    /// <summary>
    /// Run the reclaim batch (decision F3) before answering a fault, while its access is stalled, instead of after the
    /// answered batch. Off by default: after the answer no fault waits for the batch's fence, but the batch's
    /// invalidation then meets the device's accesses at a point the host's timing decides. On, a virtual-clock run is
    /// reproducible (decision D34) at the cost of a fence on the path of one fault per batch.
    /// </summary>
    public bool ReclaimBeforeAnswer { get; init; }

    /// <summary>Checks every setting; throws <see cref="InvalidDeviceOptionException"/> naming the first one out of range.</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(Mode))
        {
            throw new InvalidDeviceOptionException(nameof(Mode), Mode, "the wait mode is Block or Adaptive");
        }

        if (SpinTime < TimeSpan.Zero || SpinTime > TimeSpan.FromSeconds(1))
        {
            throw new InvalidDeviceOptionException(nameof(SpinTime), SpinTime, "the adaptive spin lasts 0 to 1 second (it keeps a core busy)");
        }

        if (RingLog2 is < RingLimits.FaultRingMinLog2 or > RingLimits.FaultRingMaxLog2)
        {
            throw new InvalidDeviceOptionException(nameof(RingLog2), RingLog2, $"the fault ring takes 2^{RingLimits.FaultRingMinLog2} to 2^{RingLimits.FaultRingMaxLog2} entries (spec 4.4)");
        }

        if (IdlePoll < TimeSpan.FromMilliseconds(1) || IdlePoll > TimeSpan.FromMinutes(1))
        {
            throw new InvalidDeviceOptionException(nameof(IdlePoll), IdlePoll, "the idle poll is 1 ms to 1 minute (it bounds how long a lost interrupt delays a fault)");
        }
    }
}
