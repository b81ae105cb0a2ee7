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

    internal OnDemandRegion(DeviceContext context, uint id, ulong first, ulong end, nint address, ulong length, DmaAccess access, HostBuffer? buffer)
    {
        Context = context;
        Buffer = buffer;
        Id = id;
        FirstPage = first;
        EndPage = end;
        Address = address;
        Length = length;
        Access = access;
    }

    /// <summary>The context whose page table the region's pages are faulted into.</summary>
    public DeviceContext Context { get; }

    /// <summary>Region id (also the id the mirror records for its pages).</summary>
    public uint Id { get; }

    /// <summary>First byte of the region; also its device virtual address (DVA = VA).</summary>
    public nint Address { get; }

    /// <summary>Bytes in the region from <see cref="Address"/>.</summary>
    public ulong Length { get; }

    /// <summary>What the device may do in the region; a fault asking for more is answered ABORT.</summary>
    public DmaAccess Access { get; }

    /// <summary>False once unregistered: its pages are unmapped and new faults in it are aborted.</summary>
    public bool IsRegistered => Volatile.Read(ref _state) == 0;

    /// <summary>The host buffer whose memory this region covers, if it is one (it unregisters the region when disposed).</summary>
    internal HostBuffer? Buffer { get; }

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

    /// <summary>The region for messages and logs: id, range, access and context.</summary>
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
