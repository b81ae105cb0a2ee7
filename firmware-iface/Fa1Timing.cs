namespace FpgaAccel.FirmwareInterface;

/// <summary>
/// Spec 7: the model's default costs, in fabric cycles. Each one is a setting of the model;
/// the driver uses <see cref="ClockHz"/> only to turn cycles into time.
/// </summary>
public static class Fa1Timing
{
    /// <summary>Fabric clock (CLOCK_HZ).</summary>
    public const ulong ClockHz = 250_000_000;

    public const int DmaReadRoundTrip = 150;
    public const int DmaWritePosted = 20;
    public const int BytesPerCycle = 32;
    public const int TlbHit = 2;
    public const int FaultToInterrupt = 250;
    public const int FaultResponseToRestart = 20;
    public const int Invalidation = 50;
    public const int TlbEntries = 1024;
    public const int TlbWays = 8;

    /// <summary>
    /// Decision (the spec is silent): a reset takes 25 000 cycles (100 us) from the CTRL.RESET
    /// write until STATUS.READY. Drivers wait with a timeout well above this.
    /// </summary>
    public const int Reset = 25_000;
}
