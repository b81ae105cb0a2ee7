using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Dma;

/// <summary>
/// Bytes pinned by this process through every open device: what the kernel counts in the process's locked_vm and
/// compares with RLIMIT_MEMLOCK (VFIO type1 charges each page a container maps to the mm of the process that maps it).
/// </summary>
/// <remarks>
/// One per process (<see cref="Process"/>): two devices are two VFIO containers, and each charges the pages it maps,
/// so a page both devices map is charged twice, by the kernel and here; charging it once would let the driver promise
/// a pin the kernel then refuses with ENOMEM. (Devices of one address space whose platform pins a page once for all of
/// them are charged once, through its <see cref="AddressSpacePinLedger"/>: decision F21.) (Memory the process mlocks by other means also counts in locked_vm and
/// is not seen here: the kernel's refusal, a <see cref="DmaMappingException"/> with ENOMEM, covers that.)
/// Lock-free: a compare-and-swap on one total, so the fault path's charge allocates nothing and takes no lock.
/// </remarks>
internal sealed class ProcessPinLedger
{
    private long _pinnedBytes;

    /// <summary>The process's ledger.</summary>
    public static ProcessPinLedger Process { get; } = new();

    /// <summary>Bytes pinned by the process through every device now.</summary>
    public ulong PinnedBytes => (ulong)Interlocked.Read(ref _pinnedBytes);

    /// <summary>Adds <paramref name="bytes"/> unless the total would pass <paramref name="limit"/> (when enforced); returns the total before, and whether it was added.</summary>
    public bool TryCharge(ulong bytes, ulong limit, bool enforced, out ulong before)
    {
        while (true)
        {
            var current = Interlocked.Read(ref _pinnedBytes);
            before = (ulong)current;
            var next = (ulong)current + bytes;
            if (enforced && (next > limit || next < (ulong)current))
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _pinnedBytes, (long)next, current) == current)
            {
                return true;
            }
        }
    }

    /// <summary>Takes <paramref name="bytes"/> off the total.</summary>
    public void Release(ulong bytes)
    {
        var after = Interlocked.Add(ref _pinnedBytes, -(long)bytes);
        if (after < 0)
        {
            throw new InvalidOperationException($"Process pin accounting went negative ({after} bytes): a release without a charge.");
        }
    }
}

/// <summary>
/// One device's pinned bytes (every page it maps through the IOMMU, once per page), charged to the process's
/// <see cref="ProcessPinLedger"/> and refused, as VFIO type1 refuses it, when the process's total would pass the
/// locked-memory limit: RLIMIT_MEMLOCK, not enforced for a process holding CAP_IPC_LOCK or an unlimited limit, or
/// <see cref="FpgaDeviceOptions.MemlockLimitBytes"/>, which stands in for RLIMIT_MEMLOCK (compared with the process's
/// total too, so it means the same thing the kernel's limit means).
/// </summary>
internal sealed class PinAccountant
{
    private readonly ProcessPinLedger _ledger;
    private long _pinnedBytes;

    /// <summary>Creates an accountant with the limit from <paramref name="limitOverride"/> or from the process, charging <paramref name="ledger"/> (the process's by default).</summary>
    public PinAccountant(ulong? limitOverride = null, ProcessPinLedger? ledger = null)
    {
        _ledger = ledger ?? ProcessPinLedger.Process;
        if (limitOverride is { } limit)
        {
            Limit = limit;
            Enforced = true;
            LimitSource = "FpgaDeviceOptions.MemlockLimitBytes";
        }
        else
        {
            var rl = ResourceLimits.GetMemoryLock();
            Limit = rl.Soft;
            Enforced = !rl.SoftIsUnlimited && !ProcessLimits.HasCapability(ProcessLimits.CapIpcLock);
            LimitSource = "RLIMIT_MEMLOCK";
        }
    }

    /// <summary>Bytes the process may have pinned at once.</summary>
    public ulong Limit { get; }

    /// <summary>False when the process may exceed the limit (RLIM_INFINITY or CAP_IPC_LOCK), as type1 allows.</summary>
    public bool Enforced { get; }

    /// <summary>Where the limit came from, for messages.</summary>
    public string LimitSource { get; }

    /// <summary>Bytes this device has pinned now.</summary>
    public ulong PinnedBytes => (ulong)Interlocked.Read(ref _pinnedBytes);

    /// <summary>Bytes the process has pinned now, through every device.</summary>
    public ulong ProcessPinnedBytes => _ledger.PinnedBytes;

    /// <summary>
    /// The address space this device is attached to, when its pages are charged once there for every attached device
    /// (decision F21); null: each page this device maps is charged to the process on its own.
    /// </summary>
    public AddressSpacePinLedger? Shared
    {
        get => Volatile.Read(ref _shared);
        set => Volatile.Write(ref _shared, value);
    }

    private AddressSpacePinLedger? _shared;

    /// <summary>Charges <paramref name="bytes"/> or throws <see cref="PinLimitExceededException"/> leaving every count unchanged.</summary>
    public void Charge(ulong bytes)
    {
        if (!_ledger.TryCharge(bytes, Limit, Enforced, out var before))
        {
            throw new PinLimitExceededException(bytes, before, Limit, LimitSource);
        }

        Interlocked.Add(ref _pinnedBytes, (long)bytes);
    }

    /// <summary>
    /// Charges the pages [<paramref name="host"/>, + <paramref name="bytes"/>) this device maps: through the address
    /// space's ledger when it is attached to one that charges once (only the pages no other device of it maps are new
    /// to the process), else as <see cref="Charge(ulong)"/>. Returns the ledger that charged them (null: the process's
    /// directly), which <see cref="Release(ulong, ulong, AddressSpacePinLedger?)"/> must be given back.
    /// </summary>
    public AddressSpacePinLedger? Charge(ulong host, ulong bytes)
    {
        var shared = Shared;
        if (shared is null)
        {
            Charge(bytes);
            return null;
        }

        shared.Charge(host, bytes, this);
        Interlocked.Add(ref _pinnedBytes, (long)bytes);
        return shared;
    }

    /// <summary>Returns <paramref name="bytes"/> to the budget.</summary>
    public void Release(ulong bytes) => Release(0, bytes, null);

    /// <summary>Returns the pages a <see cref="Charge(ulong, ulong)"/> charged, to the ledger that charged them.</summary>
    public void Release(ulong host, ulong bytes, AddressSpacePinLedger? chargedBy)
    {
        var after = Interlocked.Add(ref _pinnedBytes, -(long)bytes);
        if (after < 0)
        {
            Interlocked.Add(ref _pinnedBytes, (long)bytes);
            throw new InvalidOperationException($"Pin accounting went negative ({after} bytes): a release without a charge.");
        }

        if (chargedBy is null)
        {
            _ledger.Release(bytes);
        }
        else
        {
            chargedBy.Release(host, bytes);
        }
    }

    /// <summary>The process ledger this accountant charges.</summary>
    internal ProcessPinLedger Ledger => _ledger;
}

/// <summary>
/// The pages the devices of one <see cref="Mmu.AddressSpace"/> map, charged to the process once each however many of
/// its devices map them (decision F21: one pin of a page for every device of a shared type1 container or iommufd IOAS).
/// </summary>
/// <remarks>
/// Invariant: _refs[p] == devices of the address space whose IOMMU maps page p through this ledger, and the process
/// ledger holds exactly one page's charge for each key. Argument: both change only under _lock, together; a charge
/// that the process ledger refuses changes no count. The fault path's single-page charge allocates nothing in steady
/// state (the dictionary reuses its entries).
/// </remarks>
internal sealed class AddressSpacePinLedger(ProcessPinLedger? process = null)
{
    private const ulong PageSize = 4096;
    private readonly ProcessPinLedger _process = process ?? ProcessPinLedger.Process;
    private readonly Dictionary<ulong, int> _refs = [];
    private readonly Lock _lock = new();
    private long _chargedBytes;

    /// <summary>Bytes charged to the process for this address space: each page once.</summary>
    public ulong ChargedBytes => (ulong)Interlocked.Read(ref _chargedBytes);

    /// <summary>One more device maps the pages; the ones new to the address space are charged, or nothing is (throws).</summary>
    public void Charge(ulong host, ulong bytes, PinAccountant limits)
    {
        var end = host + bytes;
        lock (_lock)
        {
            ulong fresh = 0;
            for (var p = host; p < end; p += PageSize)
            {
                if (!_refs.ContainsKey(p / PageSize))
                {
                    fresh += PageSize;
                }
            }

            if (fresh != 0 && !_process.TryCharge(fresh, limits.Limit, limits.Enforced, out var before))
            {
                throw new PinLimitExceededException(fresh, before, limits.Limit, limits.LimitSource);
            }

            for (var p = host; p < end; p += PageSize)
            {
                System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_refs, p / PageSize, out _)++;
            }

            Interlocked.Add(ref _chargedBytes, (long)fresh);
        }
    }

    /// <summary>One device no longer maps the pages; those no device of the address space maps go back to the process.</summary>
    public void Release(ulong host, ulong bytes)
    {
        var end = host + bytes;
        lock (_lock)
        {
            for (var p = host; p < end; p += PageSize)
            {
                if (!_refs.TryGetValue(p / PageSize, out var refs))
                {
                    throw new InvalidOperationException($"Address-space pin accounting: page 0x{p:X} released without a charge.");
                }
            }

            ulong gone = 0;
            for (var p = host; p < end; p += PageSize)
            {
                ref var refs = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrNullRef(_refs, p / PageSize);
                if (--refs == 0)
                {
                    _refs.Remove(p / PageSize);
                    gone += PageSize;
                }
            }

            if (gone != 0)
            {
                _process.Release(gone);
                Interlocked.Add(ref _chargedBytes, -(long)gone);
            }
        }
    }
}
