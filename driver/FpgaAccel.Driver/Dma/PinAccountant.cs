using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Dma;

/// <summary>
/// Counts the bytes this device keeps pinned (IOMMU-mapped) and refuses a pin that would exceed the
/// locked-memory limit, as VFIO type1 does: the limit is RLIMIT_MEMLOCK, and a process holding
/// CAP_IPC_LOCK is not limited. The driver's count and the kernel's agree because both count the
/// pages mapped through the IOMMU, once per page.
/// </summary>
internal sealed class PinAccountant
{
    private long _pinnedBytes;

    /// <summary>Creates an accountant with the limit from <paramref name="limitOverride"/> or from the process.</summary>
    public PinAccountant(ulong? limitOverride = null)
    {
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

    /// <summary>Bytes that may be pinned at once.</summary>
    public ulong Limit { get; }

    /// <summary>False when the process may exceed the limit (RLIM_INFINITY or CAP_IPC_LOCK), as type1 allows.</summary>
    public bool Enforced { get; }

    /// <summary>Where the limit came from, for messages.</summary>
    public string LimitSource { get; }

    /// <summary>Bytes pinned now.</summary>
    public ulong PinnedBytes => (ulong)Interlocked.Read(ref _pinnedBytes);

    /// <summary>Charges <paramref name="bytes"/> or throws <see cref="PinLimitExceededException"/> leaving the count unchanged.</summary>
    public void Charge(ulong bytes)
    {
        while (true)
        {
            var current = Interlocked.Read(ref _pinnedBytes);
            var next = (ulong)current + bytes;
            if (Enforced && next > Limit)
            {
                throw new PinLimitExceededException(bytes, (ulong)current, Limit, LimitSource);
            }

            if (Interlocked.CompareExchange(ref _pinnedBytes, (long)next, current) == current)
            {
                return;
            }
        }
    }

    /// <summary>Returns <paramref name="bytes"/> to the budget.</summary>
    public void Release(ulong bytes)
    {
        var after = Interlocked.Add(ref _pinnedBytes, -(long)bytes);
        if (after < 0)
        {
            throw new InvalidOperationException($"Pin accounting went negative ({after} bytes): a release without a charge.");
        }
    }
}
