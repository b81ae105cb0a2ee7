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
    private int _faultAroundLog2;

    internal OnDemandRegion(DeviceContext context, uint id, ulong first, ulong end, nint address, ulong length, DmaAccess access, HostBuffer? buffer, int faultAroundLog2)
    {
        _faultAroundLog2 = faultAroundLog2;
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

    /// <summary>
    /// Pages a fault in this region maps at once (fault-around, issue 15): the faulting page and the absent pages of the
    /// region around it, in a window of this many pages aligned to its size, as far as the on-demand budget has room
    /// without evicting. A power of two from 1 (off: one page per fault) to <see cref="DeviceContext.MaxFaultAroundPages"/>;
    /// the device's default is <see cref="FpgaDeviceOptions.FaultAroundPages"/> (16: 64 KiB, as the kernel's
    /// fault_around_bytes). Setting it takes effect for the next fault.
    /// </summary>
    public int FaultAroundPages
    {
        get => 1 << Volatile.Read(ref _faultAroundLog2);
        set
        {
            if (value < 1 || value > DeviceContext.MaxFaultAroundPages || (value & (value - 1)) != 0)
            {
                throw new InvalidDeviceOptionException(nameof(FaultAroundPages), value,
                    $"fault-around is a power of two from 1 (off) to {DeviceContext.MaxFaultAroundPages} pages; to map more ahead of a DMA, use Prefetch");
            }

            Context.SetFaultAround(this, System.Numerics.BitOperations.Log2((uint)value));
        }
    }

    /// <summary>
    /// Maps the pages of [<paramref name="offset"/>, + <paramref name="length"/>) of this region now, ahead of the DMA
    /// that will use them (this driver's <c>ibv_advise_mr</c> prefetch or <c>MADV_WILLNEED</c>): each absent page is
    /// pinned and installed, so the device's accesses to it hit without faulting. The pages count against the
    /// on-demand budget like faulted ones (least recently mapped pages are evicted, in batches, to make room) and
    /// may be evicted again later like them. Returns the pages it mapped (0 when all were present).
    /// </summary>
    /// <exception cref="PrefetchRejectedException">The range is outside the region, empty, or larger than the budget.</exception>
    public int Prefetch(ulong offset, ulong length)
    {
        if (!IsRegistered)
        {
            throw new InvalidPinHandleException(ToString(), "it was unregistered; register the range again before prefetching it");
        }

        return Context.Prefetch(this, offset, length);
    }

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

    /// <summary>The mirror entry of the region's pages while absent: its id, access, and fault-around window.</summary>
    internal Faults.MirrorEntry AbsentEntry => Faults.MirrorEntry.Create(Id,
        Faults.MirrorFlags.Valid | Faults.MirrorFlags.OnDemand | Faults.MirrorFlags.Read | ((Access & DmaAccess.DeviceWrite) != 0 ? Faults.MirrorFlags.Write : Faults.MirrorFlags.None),
        Volatile.Read(ref _faultAroundLog2));

    internal void SetFaultAroundLog2(int log2) => Volatile.Write(ref _faultAroundLog2, log2);

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
