namespace FpgaAccel.FirmwareInterface;

/// <summary>
/// Spec 7: the model's default costs, in fabric cycles. Each one is a setting of the model;
/// the driver uses <see cref="ClockHz"/> only to turn cycles into time.
/// </summary>
public static class Fa1Timing
{
    /// <summary>Fabric clock (CLOCK_HZ).</summary>
    public const ulong ClockHz = 250_000_000;

    /// <summary>Cycles of one DMA read round trip (600 ns).</summary>
    public const int DmaReadRoundTrip = 150;

    /// <summary>Cycles of one posted DMA write.</summary>
    public const int DmaWritePosted = 20;

    /// <summary>Data bandwidth in bytes per cycle, each way (8 GB/s).</summary>
    public const int BytesPerCycle = 32;

    /// <summary>Cycles of a TLB hit.</summary>
    public const int TlbHit = 2;

    /// <summary>Cycles from a fault's detection to its MSI-X message.</summary>
    public const int FaultToInterrupt = 250;

    /// <summary>Cycles from a fault response to the stalled access's restart.</summary>
    public const int FaultResponseToRestart = 20;

    /// <summary>Cycles of an invalidation, before the wait for in-flight accesses.</summary>
    public const int Invalidation = 50;

    /// <summary>TLB entries (ways x sets).</summary>
    public const int TlbEntries = 1024;

    /// <summary>TLB ways.</summary>
    public const int TlbWays = 8;

    /// <summary>
    /// Decision (the spec is silent): a reset takes 25 000 cycles (100 us) from the CTRL.RESET
    /// write until STATUS.READY. Drivers wait with a timeout well above this.
    /// </summary>
    public const int Reset = 25_000;
}
