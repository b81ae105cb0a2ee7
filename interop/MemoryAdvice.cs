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

    /// <summary>
    /// MADV_HUGEPAGE: back the range with transparent huge pages where it can (at fault time, or later by khugepaged).
    /// Returns false when the kernel has no transparent huge pages (EINVAL) or they are switched off
    /// (/sys/kernel/mm/transparent_hugepage/enabled is [never]); the range then stays in 4 KiB pages.
    /// </summary>
    public static bool UseTransparentHugePages(MemoryMapping mapping)
    {
        ArgumentNullException.ThrowIfNull(mapping);
        if (TransparentHugePagesDisabled())
        {
            return false;
        }

        return Interop.Libc.madvise(mapping.Address, (nuint)mapping.Length, Interop.Libc.MADV_HUGEPAGE) == 0;
    }

    /// <summary>
    /// MADV_NOHUGEPAGE: keep the range in 4 KiB pages even when transparent huge pages are on for every mapping
    /// ([always]). Returns false when the kernel has no transparent huge pages (the range is in 4 KiB pages anyway).
    /// </summary>
    public static bool AvoidTransparentHugePages(MemoryMapping mapping)
    {
        ArgumentNullException.ThrowIfNull(mapping);
        return Interop.Libc.madvise(mapping.Address, (nuint)mapping.Length, Interop.Libc.MADV_NOHUGEPAGE) == 0;
    }

    // transhuge.rst: the selected mode is the bracketed word of .../transparent_hugepage/enabled.
    private static bool TransparentHugePagesDisabled()
    {
        try
        {
            return File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Contains("[never]", StringComparison.Ordinal);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return true;
        }
    }
}
