using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim;

/// <summary>How a register answers loads and stores.</summary>
internal enum RegisterAccess
{
    /// <summary>Reads return the value; writes are ignored (and counted).</summary>
    ReadOnly,

    /// <summary>Reads return the stored value; writes store it, then run the side effect.</summary>
    ReadWrite,

    /// <summary>Reads return the value; writing 1 to a bit clears it (W1C).</summary>
    WriteOneToClear,

    /// <summary>Reads return 0; writes run the side effect only.</summary>
    WriteOnly,
}

/// <summary>
/// One register of BAR0: its name, access rule and side effects. Side effects run with the
/// model's register lock held, so they see and leave the device in a consistent state.
/// </summary>
internal sealed class Register
{
    public required string Name { get; init; }

    public required uint Offset { get; init; }

    public required RegisterAccess Access { get; init; }

    /// <summary>Computes the value for registers that are not plain storage (ID, CYCLES, STATUS...).</summary>
    public Func<ulong>? OnRead { get; init; }

    /// <summary>Runs after a write is applied (RW: after storing; WO: instead of storing; W1C: after clearing).</summary>
    public Action<ulong>? OnWrite { get; init; }

    /// <summary>Bits a write may change (RW); others keep their value.</summary>
    public ulong WritableMask { get; init; } = ulong.MaxValue;

    /// <summary>What the storage holds after a reset.</summary>
    public ulong ResetValue { get; init; }

    /// <summary>Storage for RW and W1C registers.</summary>
    public ulong Value { get; set; }
}

/// <summary>
/// The model's register map: one slot per 64-bit offset of BAR0. Every register's side effect
/// is declared here, in one table, by the block that owns it; dispatch is an array index.
/// </summary>
internal sealed class RegisterTable
{
    private readonly Register?[] _slots = new Register?[Fa1Identity.Bar0Size / Fa1Registers.Width];

    /// <summary>All declared registers, in declaration order.</summary>
    public List<Register> All { get; } = [];

    public void Add(Register register)
    {
        if (register.Offset % Fa1Registers.Width != 0 || register.Offset >= Fa1Identity.Bar0Size)
        {
            throw new ArgumentException($"Register {register.Name} at 0x{register.Offset:X} is not an aligned BAR0 offset.", nameof(register));
        }

        ref var slot = ref _slots[register.Offset / Fa1Registers.Width];
        if (slot is not null)
        {
            throw new ArgumentException($"Register {register.Name} at 0x{register.Offset:X} overlaps {slot.Name}.", nameof(register));
        }

        register.Value = register.ResetValue;
        slot = register;
        All.Add(register);
    }

    /// <summary>The register at <paramref name="offset"/>, or null for an unimplemented or misaligned offset.</summary>
    public Register? Find(uint offset) =>
        offset % Fa1Registers.Width == 0 && offset < Fa1Identity.Bar0Size ? _slots[offset / Fa1Registers.Width] : null;

    /// <summary>Puts every stored register back to its reset value.</summary>
    public void ResetStorage()
    {
        foreach (var register in All)
        {
            register.Value = register.ResetValue;
        }
    }
}
