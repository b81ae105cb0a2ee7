using FpgaAccel.Driver.Backends;
using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// A range registered for on-demand use: its pages are pinned when the device first touches them
/// (an IO page fault), and may be evicted again under the on-demand budget.
/// </summary>
public sealed class OnDemandRegion : IDisposable
{
    private int _state;

    internal OnDemandRegion(DeviceContext context, uint id, ulong first, ulong end, nint address, ulong length, DmaAccess access)
    {
        Context = context;
        Id = id;
        FirstPage = first;
        EndPage = end;
        Address = address;
        Length = length;
        Access = access;
    }

    public DeviceContext Context { get; }

    /// <summary>Region id (also the id the mirror records for its pages).</summary>
    public uint Id { get; }

    public nint Address { get; }

    public ulong Length { get; }

    public DmaAccess Access { get; }

    public bool IsRegistered => Volatile.Read(ref _state) == 0;

    internal ulong FirstPage { get; }

    internal ulong EndPage { get; }

    /// <summary>Unregisters; see <see cref="DeviceContext.Unregister"/>. Does nothing when already unregistered.</summary>
    public void Dispose()
    {
        if (IsRegistered)
        {
            Context.UnregisterIfRegistered(this);
        }
    }

    internal bool MarkUnregistered() => Interlocked.Exchange(ref _state, 1) == 0;

    public override string ToString() => $"on-demand region #{Id} [0x{Address:X}, +{Length}) {Access} in context {Context.Index}";
}

/// <summary>What the fault service should answer for one fault (spec 4.4 responses).</summary>
internal enum FaultOutcome
{
    /// <summary>The translation is in the table: answer DROPIN with the leaf (or RETRY without DROPIN).</summary>
    Resolved,

    /// <summary>Nothing the device may touch is there, or the access lacks the permission: ABORT.</summary>
    Abort,
}
