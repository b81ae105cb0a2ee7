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

    /// <summary>CTRL was written (ENABLE may have changed); engines that wait for it wake.</summary>
    public virtual void ControlChanged(bool enabled)
    {
    }

    /// <summary>Declares one register of this block into <paramref name="table"/>.</summary>
    internal static void Declare(
        RegisterTable table, uint offset, string name, RegisterAccess access,
        Func<ulong>? read = null, Action<ulong>? write = null, ulong mask = ulong.MaxValue) =>
        table.Add(new Register { Offset = offset, Name = name, Access = access, OnRead = read, OnWrite = write, WritableMask = mask });
}
