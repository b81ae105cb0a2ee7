using FpgaAccel.Driver.Backends;
using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// A handle to a pinned range in one context. The handle, not the address, names the pin: two pins of
/// the same range are two handles. Disposing it unpins (once; a second dispose does nothing).
/// </summary>
public sealed class PinnedBuffer : IDisposable
{
    private int _state; // 0 pinned, 1 unpinned

    internal PinnedBuffer(DeviceContext context, long id, nint address, ulong length, DmaAccess access, HostBuffer? buffer)
    {
        Context = context;
        Buffer = buffer;
        Id = id;
        Address = address;
        Length = length;
        Access = access;
    }

    /// <summary>The context the pin belongs to.</summary>
    public DeviceContext Context { get; }

    /// <summary>Unique in the device for its lifetime.</summary>
    public long Id { get; }

    /// <summary>First byte pinned; also its device virtual address (DVA = VA).</summary>
    public nint Address { get; }

    /// <summary>Device virtual address of the first byte (spec 4: DVA = the process's own address).</summary>
    public ulong Dva => (ulong)Address;

    /// <summary>Bytes pinned from <see cref="Address"/>.</summary>
    public ulong Length { get; }

    /// <summary>What the device may do through this pin: read, write or both (a write pin lets it read too: spec 4.1).</summary>
    public DmaAccess Access { get; }

    /// <summary>The host buffer whose memory this pin covers, if it is one (it unpins the pin when disposed).</summary>
    internal HostBuffer? Buffer { get; }

    /// <summary>False once unpinned.</summary>
    public bool IsPinned => Volatile.Read(ref _state) == 0;

    /// <summary>Unpins; see <see cref="DeviceContext.Unpin"/>. Does nothing when already unpinned.</summary>
    public void Dispose()
    {
        if (IsPinned)
        {
            Context.UnpinIfPinned(this);
        }
    }

    /// <summary>Moves to unpinned; false when it already was (so exactly one caller unpins).</summary>
    internal bool MarkUnpinned() => Interlocked.Exchange(ref _state, 1) == 0;

    /// <summary>The pin for messages and logs: id, range, access and context.</summary>
    public override string ToString() => $"pin #{Id} [0x{Address:X}, +{Length}) {Access} in context {Context.Index}";
}
