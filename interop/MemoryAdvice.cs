namespace FpgaAccel.Interop;

/// <summary>Advice to the kernel about how a mapping is used (madvise(2)).</summary>
public static class MemoryAdvice
{
    /// <summary>
    /// MADV_DONTFORK: a child created by fork(2) does not inherit the range. For memory a device reaches by DMA, as
    /// libibverbs (ibv_fork_init) and DPDK mark it: the kernel (5.9 and later) would otherwise copy every pinned page
    /// into the child at fork, and older kernels would let the parent's next write move it to a new page while the
    /// device keeps the old one. Returns <paramref name="mapping"/>.
    /// </summary>
    /// <exception cref="SystemCallException">madvise refused (EINVAL for a range that is not whole pages of a mapping).</exception>
    public static MemoryMapping ExcludeFromFork(MemoryMapping mapping)
    {
        ArgumentNullException.ThrowIfNull(mapping);
        Interop.Libc.Check(Interop.Libc.madvise(mapping.Address, (nuint)mapping.Length, Interop.Libc.MADV_DONTFORK), "madvise(MADV_DONTFORK)");
        return mapping;
    }
}
