namespace FpgaAccel.Interop;

/// <summary>A soft and hard resource limit; <see cref="ulong.MaxValue"/> is RLIM_INFINITY.</summary>
/// <param name="Soft">The limit the kernel enforces now; the process may raise it up to <paramref name="Hard"/>.</param>
/// <param name="Hard">The ceiling for the soft limit; raising it needs CAP_SYS_RESOURCE.</param>
public readonly record struct ResourceLimit(ulong Soft, ulong Hard)
{
    /// <summary>True when the soft limit is RLIM_INFINITY: nothing is enforced.</summary>
    public bool SoftIsUnlimited => Soft == Interop.Libc.RLIM_INFINITY;

    /// <summary>Both limits in bytes, or <c>unlimited</c>: <c>soft 65536 bytes, hard unlimited</c>.</summary>
    public override string ToString() => $"soft {Format(Soft)}, hard {Format(Hard)}";

    private static string Format(ulong v) => v == Interop.Libc.RLIM_INFINITY ? "unlimited" : $"{v} bytes";
}

/// <summary>getrlimit/setrlimit for the limits this code base cares about.</summary>
public static unsafe class ResourceLimits
{
    /// <summary>RLIMIT_MEMLOCK: how many bytes this process may lock. VFIO type1 counts every DMA-pinned page against it.</summary>
    public static ResourceLimit GetMemoryLock()
    {
        Interop.Libc.rlimit limit;
        Interop.Libc.Check(Interop.Libc.getrlimit(Interop.Libc.RLIMIT_MEMLOCK, &limit), "getrlimit(RLIMIT_MEMLOCK)");
        return new ResourceLimit(limit.rlim_cur, limit.rlim_max);
    }

    /// <summary>Sets RLIMIT_MEMLOCK. Raising the hard limit needs CAP_SYS_RESOURCE (EPERM otherwise).</summary>
    public static void SetMemoryLock(ResourceLimit value)
    {
        var limit = new Interop.Libc.rlimit { rlim_cur = value.Soft, rlim_max = value.Hard };
        Interop.Libc.Check(Interop.Libc.setrlimit(Interop.Libc.RLIMIT_MEMLOCK, &limit), "setrlimit(RLIMIT_MEMLOCK)");
    }
}
