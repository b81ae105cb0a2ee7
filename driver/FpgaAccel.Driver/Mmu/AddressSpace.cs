using FpgaAccel.Driver.Dma;
using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// One process address space mirrored into several devices, as HMM mirrors a process's mm into every device that
/// attaches to it (issue 15, item 4): a pin or an on-demand region registered here once is translated by every attached
/// <see cref="FpgaDevice"/> at the same DVA (the process's own address). Each device keeps its own context, page table
/// and IOMMU mappings (each has its own IOMMU domain); a removal clears the entry on every device, issues every device's
/// TLB invalidation, and only then waits on the fences (decision F20). A single device with its own contexts is the
/// same thing with one device, and keeps working unchanged.
/// </summary>
/// <remarks>
/// Lock order: a host buffer's user lock (<see cref="HostBuffer"/> runs a pin under it), then this address space's lock,
/// then a context's lock, then IOMMU mappings. The address space's lock guards the lists of attachments, pins and
/// regions and each pin's and region's per-device parts; it is not held while a removal waits for its fences (only on
/// the failure path of a pin or an attach, where the fences are bounded), and the fault path never takes it. The
/// protocol's argument for several devices is written beside <see cref="DeviceContext.CompleteRemoval"/>.
/// </remarks>
public sealed class AddressSpace : IDisposable
{
    private readonly Lock _lock = new();
    private readonly List<AddressSpaceAttachment> _attachments = [];
    private readonly List<MirroredPin> _pins = [];
    private readonly List<MirroredRegion> _regions = [];
    private long _removals;
    private long _unfenced;
    private bool _disposed;

    /// <summary>Creates an empty address space; attach devices with <see cref="Attach"/>.</summary>
    public AddressSpace()
        : this(null)
    {
    }

    internal AddressSpace(ProcessPinLedger? ledger) => Ledger = new AddressSpacePinLedger(ledger);

    /// <summary>The devices attached now.</summary>
    public IReadOnlyList<AddressSpaceAttachment> Attachments
    {
        get
        {
            lock (_lock)
            {
                return [.. _attachments];
            }
        }
    }

    /// <summary>
    /// Bytes charged to the process's locked-memory limit for pages that devices attached here map and that are charged
    /// once for all of them (decision F21: the model's devices; a board's are charged per device, as type1 does).
    /// </summary>
    public ulong ChargedBytes => Ledger.ChargedBytes;

    /// <summary>Removals (unpins and unregistrations) run across the attached devices.</summary>
    public long Removals => Interlocked.Read(ref _removals);

    /// <summary>Per-device parts of removals whose fence failed (the device lost or hung): those pages stay quarantined on that device (R14).</summary>
    public long UnfencedRemovals => Interlocked.Read(ref _unfenced);

    internal AddressSpacePinLedger Ledger { get; }

    /// <summary>
    /// Attaches <paramref name="device"/>: creates a context on it and maps every pin and region of this address space
    /// there. A device attaches to one address space at a time. Dispose the attachment (or <see cref="Detach"/>) to
    /// detach; disposing the device detaches it too.
    /// </summary>
    public AddressSpaceAttachment Attach(FpgaDevice device, ContextOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        var mmu = device.Mmu;
        lock (_lock)
        {
            ThrowIfDisposed();
            if (!mmu.TryJoin(this))
            {
                throw new InvalidDeviceOptionException("device", device.Info.BackendDescription,
                    ReferenceEquals(mmu.AddressSpace, this)
                        ? "it is attached to this address space already; use its attachment"
                        : "it is attached to another address space, and a device has one IOMMU container; detach it there first");
            }

            // F21: charged once for every device of the address space when the platform pins a page once for all of them.
            var shared = device.Backend.PinsChargedOncePerAddressSpace;
            if (shared)
            {
                mmu.Accountant.Shared = Ledger;
            }

            DeviceContext? context = null;
            AddressSpaceAttachment? attachment = null;
            try
            {
                context = device.CreateContext(options);
                attachment = new AddressSpaceAttachment(this, device, context);
                foreach (var pin in _pins)
                {
                    pin.Add(attachment, context.PinForAddressSpace(pin.Address, pin.Length, pin.Access));
                }

                foreach (var region in _regions)
                {
                    var part = context.RegisterForAddressSpace(region.Address, region.Length, region.Access);
                    part.FaultAroundPages = region.FaultAroundPagesOrDefault(part.FaultAroundPages);
                    region.Add(attachment, part);
                }
            }
            catch
            {
                if (attachment is not null)
                {
                    foreach (var pin in _pins)
                    {
                        pin.Remove(attachment);
                    }

                    foreach (var region in _regions)
                    {
                        region.Remove(attachment);
                    }
                }

                context?.Dispose(); // unpins what this attach mapped there, with its fence
                if (shared)
                {
                    mmu.Accountant.Shared = null;
                }

                mmu.Leave(this);
                throw;
            }

            _attachments.Add(attachment);
            return attachment;
        }
    }

    /// <summary>
    /// Detaches a device: its context is disposed (its translations of every pin and region invalidated and fenced,
    /// its IOMMU mappings released); the other devices keep theirs. Does nothing for an attachment already detached.
    /// </summary>
    public void Detach(AddressSpaceAttachment attachment)
    {
        ArgumentNullException.ThrowIfNull(attachment);
        if (attachment.AddressSpace != this)
        {
            throw new InvalidPinHandleException(attachment.ToString(), "it belongs to another address space");
        }

        lock (_lock)
        {
            if (!_attachments.Remove(attachment))
            {
                return;
            }

            foreach (var pin in _pins)
            {
                pin.Remove(attachment);
            }

            foreach (var region in _regions)
            {
                region.Remove(attachment);
            }
        }

        attachment.MarkDetached();
        attachment.Context.Dispose();
        if (attachment.Device.TryMmu is { } mmu)
        {
            // Units charged through the ledger stay charged there until unmapped (IommuMappings remembers the ledger).
            if (ReferenceEquals(mmu.Accountant.Shared, Ledger))
            {
                mmu.Accountant.Shared = null;
            }

            mmu.Leave(this);
        }
    }

    /// <summary>Pins a <see cref="HostBuffer"/> whole on every attached device (and on devices attached later).</summary>
    public MirroredPin Pin(HostBuffer buffer, DmaAccess access)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return buffer.AddUser(buffer.Start, buffer.Length, () => PinCore(buffer.Start, buffer.Length, access, buffer));
    }

    /// <summary>
    /// Pins [address, address + length) with <paramref name="access"/> on every attached device (and on devices attached
    /// later): each maps the pages in its IOMMU and its context's page table at DVA = address. All or nothing: when one
    /// device refuses, the others' pins are removed again and the refusal is thrown.
    /// </summary>
    public MirroredPin Pin(nint address, ulong length, DmaAccess access)
    {
        var owner = DeviceContext.OwningBuffer(address, length);
        return owner is null
            ? PinCore(address, length, access, null)
            : owner.AddUser(address, length, () => PinCore(address, length, access, owner));
    }

    private MirroredPin PinCore(nint address, ulong length, DmaAccess access, HostBuffer? owner)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            var pin = new MirroredPin(this, address, length, access, owner);
            try
            {
                foreach (var a in _attachments)
                {
                    pin.Add(a, a.Context.PinForAddressSpace(address, length, access));
                }
            }
            catch
            {
                RemoveEverywhere(BeginUnpins(pin.TakeParts()));
                throw;
            }

            _pins.Add(pin);
            return pin;
        }
    }

    /// <summary>
    /// Unpins on every device: clears the translations on each, issues each device's TLB invalidation, then waits for
    /// every fence, and releases each device's IOMMU mapping after its own fence (a device whose fence fails keeps its
    /// pages quarantined, R14). After it returns no attached device can reach the pages through this pin.
    /// </summary>
    public void Unpin(MirroredPin pin)
    {
        ArgumentNullException.ThrowIfNull(pin);
        if (pin.AddressSpace != this)
        {
            throw new InvalidPinHandleException(pin.ToString(), "it belongs to another address space");
        }

        List<(AddressSpaceAttachment Attachment, PinnedBuffer Part)> parts;
        lock (_lock)
        {
            if (!_pins.Remove(pin) || !pin.MarkUnpinned())
            {
                throw new InvalidPinHandleException(pin.ToString(), "it was already unpinned");
            }

            parts = pin.TakeParts();
        }

        pin.Buffer?.RemoveUser(pin);
        RemoveEverywhere(BeginUnpins(parts));
    }

    /// <summary>Registers a <see cref="HostBuffer"/> whole for on-demand use on every attached device.</summary>
    public MirroredRegion RegisterOnDemand(HostBuffer buffer, DmaAccess access)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return buffer.AddUser(buffer.Start, buffer.Length, () => RegisterCore(buffer.Start, buffer.Length, access, buffer));
    }

    /// <summary>
    /// Registers [address, address + length) for on-demand use on every attached device (and on devices attached later):
    /// each device faults the pages it touches into its own context, under its own on-demand budget.
    /// </summary>
    public MirroredRegion RegisterOnDemand(nint address, ulong length, DmaAccess access)
    {
        var owner = DeviceContext.OwningBuffer(address, length);
        return owner is null
            ? RegisterCore(address, length, access, null)
            : owner.AddUser(address, length, () => RegisterCore(address, length, access, owner));
    }

    private MirroredRegion RegisterCore(nint address, ulong length, DmaAccess access, HostBuffer? owner)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            var region = new MirroredRegion(this, address, length, access, owner);
            try
            {
                foreach (var a in _attachments)
                {
                    region.Add(a, a.Context.RegisterForAddressSpace(address, length, access));
                }
            }
            catch
            {
                RemoveEverywhere(BeginUnregisters(region.TakeParts()));
                throw;
            }

            _regions.Add(region);
            return region;
        }
    }

    /// <summary>Unregisters on every device, with the batched removal of <see cref="Unpin"/>.</summary>
    public void Unregister(MirroredRegion region)
    {
        ArgumentNullException.ThrowIfNull(region);
        if (region.AddressSpace != this)
        {
            throw new InvalidPinHandleException(region.ToString(), "it belongs to another address space");
        }

        List<(AddressSpaceAttachment Attachment, OnDemandRegion Part)> parts;
        lock (_lock)
        {
            if (!_regions.Remove(region) || !region.MarkUnregistered())
            {
                throw new InvalidPinHandleException(region.ToString(), "it was already unregistered");
            }

            parts = region.TakeParts();
        }

        region.Buffer?.RemoveUser(region);
        RemoveEverywhere(BeginUnregisters(parts));
    }

    /// <summary>Unpins every pin, unregisters every region (each with one batched removal), then detaches every device.</summary>
    public void Dispose()
    {
        MirroredPin[] pins;
        MirroredRegion[] regions;
        AddressSpaceAttachment[] attachments;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            pins = [.. _pins];
            regions = [.. _regions];
            attachments = [.. _attachments];
        }

        foreach (var pin in pins)
        {
            pin.Dispose();
        }

        foreach (var region in regions)
        {
            region.Dispose();
        }

        foreach (var a in attachments)
        {
            Detach(a);
        }
    }

    internal void UnpinIfPinned(MirroredPin pin)
    {
        try
        {
            Unpin(pin);
        }
        catch (InvalidPinHandleException)
        {
            // Unpinned already, by this or another thread.
        }
    }

    internal void UnregisterIfRegistered(MirroredRegion region)
    {
        try
        {
            Unregister(region);
        }
        catch (InvalidPinHandleException)
        {
            // Unregistered already, by this or another thread.
        }
    }

    // Step 1 on every device. A device whose context is gone (the device disposed) has nothing left to remove.
    private static List<ContextRemoval> BeginUnpins(List<(AddressSpaceAttachment Attachment, PinnedBuffer Part)> parts)
    {
        var begun = new List<ContextRemoval>(parts.Count);
        foreach (var (_, part) in parts)
        {
            try
            {
                begun.Add(part.Context.BeginUnpin(part));
            }
            catch (InvalidPinHandleException)
            {
                // Its context was disposed (device closed or detached): the context's dispose fenced and released it.
            }
        }

        return begun;
    }

    private static List<ContextRemoval> BeginUnregisters(List<(AddressSpaceAttachment Attachment, OnDemandRegion Part)> parts)
    {
        var begun = new List<ContextRemoval>(parts.Count);
        foreach (var (_, part) in parts)
        {
            try
            {
                begun.Add(part.Context.BeginUnregister(part));
            }
            catch (InvalidPinHandleException)
            {
                // As in BeginUnpins.
            }
        }

        return begun;
    }

    // Steps 2, then 3 and 4, across devices (F20): every device's TLB_INV is issued before the first fence is waited on,
    // so the fences overlap; each device's pages leave its IOMMU only after its own fence. Every wait is bounded
    // (DeviceTimeout; a failed device ends it at once), and a failed fence quarantines that device's pages only.
    private void RemoveEverywhere(List<ContextRemoval> begun)
    {
        foreach (var removal in begun)
        {
            removal.Context.IssueInvalidation(removal);
        }

        foreach (var removal in begun)
        {
            if (!removal.Context.CompleteRemoval(removal))
            {
                Interlocked.Increment(ref _unfenced);
            }
        }

        Interlocked.Increment(ref _removals);
    }

    private void ThrowIfDisposed()
    {
        if (_disposed)
        {
            throw new DisposedResourceException("The address space");
        }
    }
}

/// <summary>One device attached to an <see cref="AddressSpace"/>: the context its commands name.</summary>
public sealed class AddressSpaceAttachment : IDisposable
{
    private int _detached;

    internal AddressSpaceAttachment(AddressSpace space, FpgaDevice device, DeviceContext context)
    {
        AddressSpace = space;
        Device = device;
        Context = context;
    }

    /// <summary>The address space.</summary>
    public AddressSpace AddressSpace { get; }

    /// <summary>The device.</summary>
    public FpgaDevice Device { get; }

    /// <summary>The device's context that mirrors the address space: give it to the device's queues' commands.</summary>
    public DeviceContext Context { get; }

    /// <summary>False once detached, or once the device (and so the context) was disposed.</summary>
    public bool IsAttached => Volatile.Read(ref _detached) == 0 && !Context.IsDisposed;

    /// <summary>Detaches (see <see cref="AddressSpace.Detach"/>).</summary>
    public void Dispose() => AddressSpace.Detach(this);

    internal void MarkDetached() => Volatile.Write(ref _detached, 1);

    /// <summary>The attachment for messages: device and context.</summary>
    public override string ToString() => $"attachment of {Device.Info.BackendDescription} (context {Context.Index})";
}

/// <summary>A pin of an <see cref="AddressSpace"/>: one <see cref="PinnedBuffer"/> per attached device. Disposing it unpins.</summary>
public sealed class MirroredPin : IDisposable
{
    private readonly List<(AddressSpaceAttachment Attachment, PinnedBuffer Part)> _parts = [];
    private int _state;

    internal MirroredPin(AddressSpace space, nint address, ulong length, DmaAccess access, HostBuffer? buffer)
    {
        AddressSpace = space;
        Address = address;
        Length = length;
        Access = access;
        Buffer = buffer;
    }

    /// <summary>The address space.</summary>
    public AddressSpace AddressSpace { get; }

    /// <summary>First byte pinned; also its DVA on every device.</summary>
    public nint Address { get; }

    /// <summary>Device virtual address of the first byte on every device (DVA = VA).</summary>
    public ulong Dva => (ulong)Address;

    /// <summary>Bytes pinned.</summary>
    public ulong Length { get; }

    /// <summary>What the devices may do through it.</summary>
    public DmaAccess Access { get; }

    /// <summary>False once unpinned.</summary>
    public bool IsPinned => Volatile.Read(ref _state) == 0;

    internal HostBuffer? Buffer { get; }

    /// <summary>The pin on <paramref name="attachment"/>'s device, or null when that device does not map it (detached).</summary>
    public PinnedBuffer? On(AddressSpaceAttachment attachment)
    {
        ArgumentNullException.ThrowIfNull(attachment);
        lock (_parts)
        {
            foreach (var (a, part) in _parts)
            {
                if (a == attachment)
                {
                    return part;
                }
            }

            return null;
        }
    }

    /// <summary>Unpins (see <see cref="AddressSpace.Unpin"/>); does nothing when already unpinned.</summary>
    public void Dispose()
    {
        if (IsPinned)
        {
            AddressSpace.UnpinIfPinned(this);
        }
    }

    /// <summary>The pin for messages and logs.</summary>
    public override string ToString() => $"address-space pin [0x{Address:X}, +{Length}) {Access}";

    internal bool MarkUnpinned() => Interlocked.Exchange(ref _state, 1) == 0;

    internal void Add(AddressSpaceAttachment attachment, PinnedBuffer part)
    {
        lock (_parts)
        {
            _parts.Add((attachment, part));
        }
    }

    internal void Remove(AddressSpaceAttachment attachment)
    {
        lock (_parts)
        {
            _parts.RemoveAll(p => p.Attachment == attachment);
        }
    }

    internal List<(AddressSpaceAttachment Attachment, PinnedBuffer Part)> TakeParts()
    {
        lock (_parts)
        {
            List<(AddressSpaceAttachment, PinnedBuffer)> taken = [.. _parts];
            _parts.Clear();
            return taken;
        }
    }
}

/// <summary>An on-demand region of an <see cref="AddressSpace"/>: one <see cref="OnDemandRegion"/> per attached device. Disposing it unregisters.</summary>
public sealed class MirroredRegion : IDisposable
{
    private readonly List<(AddressSpaceAttachment Attachment, OnDemandRegion Part)> _parts = [];
    private int _state;
    private int _faultAround;

    internal MirroredRegion(AddressSpace space, nint address, ulong length, DmaAccess access, HostBuffer? buffer)
    {
        AddressSpace = space;
        Address = address;
        Length = length;
        Access = access;
        Buffer = buffer;
    }

    /// <summary>The address space.</summary>
    public AddressSpace AddressSpace { get; }

    /// <summary>First byte; also its DVA on every device.</summary>
    public nint Address { get; }

    /// <summary>Bytes in the region.</summary>
    public ulong Length { get; }

    /// <summary>What the devices may do in it.</summary>
    public DmaAccess Access { get; }

    /// <summary>False once unregistered.</summary>
    public bool IsRegistered => Volatile.Read(ref _state) == 0;

    internal HostBuffer? Buffer { get; }

    /// <summary>
    /// Fault-around of the region on every device (see <see cref="OnDemandRegion.FaultAroundPages"/>); a device attached
    /// later takes it too. Reads the first device's, or 0 when none is attached and none was set.
    /// </summary>
    public int FaultAroundPages
    {
        get
        {
            lock (_parts)
            {
                return _parts.Count > 0 ? _parts[0].Part.FaultAroundPages : _faultAround;
            }
        }

        set
        {
            lock (_parts)
            {
                foreach (var (_, part) in _parts)
                {
                    part.FaultAroundPages = value;
                }

                _faultAround = value;
            }
        }
    }

    /// <summary>The region on <paramref name="attachment"/>'s device, or null when that device does not map it (detached).</summary>
    public OnDemandRegion? On(AddressSpaceAttachment attachment)
    {
        ArgumentNullException.ThrowIfNull(attachment);
        lock (_parts)
        {
            foreach (var (a, part) in _parts)
            {
                if (a == attachment)
                {
                    return part;
                }
            }

            return null;
        }
    }

    /// <summary>Prefetches the range on every attached device (<see cref="OnDemandRegion.Prefetch"/>); returns the pages mapped in all.</summary>
    public int Prefetch(ulong offset, ulong length)
    {
        if (!IsRegistered)
        {
            throw new InvalidPinHandleException(ToString(), "it was unregistered; register the range again before prefetching it");
        }

        OnDemandRegion[] parts;
        lock (_parts)
        {
            parts = [.. _parts.Select(p => p.Part)];
        }

        var mapped = 0;
        foreach (var part in parts)
        {
            mapped += part.Prefetch(offset, length);
        }

        return mapped;
    }

    /// <summary>Unregisters (see <see cref="AddressSpace.Unregister"/>); does nothing when already unregistered.</summary>
    public void Dispose()
    {
        if (IsRegistered)
        {
            AddressSpace.UnregisterIfRegistered(this);
        }
    }

    /// <summary>The region for messages and logs.</summary>
    public override string ToString() => $"address-space on-demand region [0x{Address:X}, +{Length}) {Access}";

    internal int FaultAroundPagesOrDefault(int fallback) => Volatile.Read(ref _faultAround) is > 0 and var set ? set : fallback;

    internal bool MarkUnregistered() => Interlocked.Exchange(ref _state, 1) == 0;

    internal void Add(AddressSpaceAttachment attachment, OnDemandRegion part)
    {
        lock (_parts)
        {
            _parts.Add((attachment, part));
        }
    }

    internal void Remove(AddressSpaceAttachment attachment)
    {
        lock (_parts)
        {
            _parts.RemoveAll(p => p.Attachment == attachment);
        }
    }

    internal List<(AddressSpaceAttachment Attachment, OnDemandRegion Part)> TakeParts()
    {
        lock (_parts)
        {
            List<(AddressSpaceAttachment, OnDemandRegion)> taken = [.. _parts];
            _parts.Clear();
            return taken;
        }
    }
}
