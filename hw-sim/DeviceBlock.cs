namespace FpgaAccel.HwSim;

/// <summary>
/// A part of the device that owns registers (the global block, the MMU, the fault ring, the queues).
/// Each declares its registers and their side effects into the one <see cref="RegisterTable"/>,
/// and puts its state back on reset. Both run with the model's register lock held.
/// </summary>
internal abstract class DeviceBlock
{
    /// <summary>Adds this block's registers to the table.</summary>
    public abstract void Declare(RegisterTable table);

    /// <summary>Clears this block's state (CTRL.RESET, spec 3).</summary>
    public abstract void Reset();

    /// <summary>STATUS bits this block contributes (e.g. FQ_FULL).</summary>
    public virtual ulong StatusBits => 0;
}
