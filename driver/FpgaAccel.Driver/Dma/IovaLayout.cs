using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver.Dma;

/// <summary>
/// Where host pages live in IOVA space: IOVA = host virtual address + <see cref="Delta"/>, one fixed
/// offset for the whole device.
/// </summary>
/// <remarks>
/// Why a fixed offset and not an allocator: a host page then has exactly one IOVA however many pins,
/// contexts or rings cover it, so overlapping pins share one IOMMU mapping (reference-counted per
/// page) and a PTE never has to be re-pointed when one of two overlapping pins goes away. The offset
/// is a multiple of 2 MiB, so a 2 MiB-aligned run of virtual addresses is a 2 MiB-aligned run of
/// IOVAs and can use a 2 MiB leaf (spec 4.1). Preferred: 2^47, which puts all of user space
/// ([0, 2^47) on x86-64) above the 32-bit MSI window and keeps IOVA and DVA distinct, so a driver bug
/// that confuses them cannot pass unnoticed. Fallback: 0 (identity) when the IOMMU has no window
/// up there (39-bit VT-d); then a page inside a reserved window cannot be pinned and says so.
/// </remarks>
internal sealed class IovaLayout
{
    /// <summary>Preferred offset: the first IOVA above x86-64 user space.</summary>
    public const ulong HighDelta = 1UL << 47;

    private readonly IovaRange[] _ranges;

    private IovaLayout(ulong delta, IovaRange[] ranges)
    {
        Delta = delta;
        _ranges = ranges;
    }

    /// <summary>IOVA minus host virtual address.</summary>
    public ulong Delta { get; }

    /// <summary>The IOMMU's valid windows.</summary>
    public IReadOnlyList<IovaRange> Ranges => _ranges;

    /// <summary>
    /// Chooses the offset for an IOMMU with <paramref name="ranges"/> and a device that emits <paramref name="deviceIovaBits"/>-bit
    /// IOVAs (CAPS IOVA bits): the windows are cut at 2^bits, so no IOVA the driver hands out is beyond the device's reach.
    /// </summary>
    public static IovaLayout Choose(IReadOnlyList<IovaRange> ranges, int deviceIovaBits = 64)
    {
        var top = deviceIovaBits >= 64 ? ulong.MaxValue : (1UL << deviceIovaBits) - 1;
        var copy = ranges.Where(r => r.Start <= top).Select(r => r with { End = Math.Min(r.End, top) }).ToArray();
        var highEnd = HighDelta + HighDelta - 1;
        if (copy.Any(r => r.Start <= HighDelta + PageTableFormat.PageSize && r.End >= highEnd))
        {
            return new IovaLayout(HighDelta, copy);
        }

        return new IovaLayout(0, copy);
    }

    /// <summary>The IOVA of host address <paramref name="host"/>.</summary>
    public ulong IovaOf(ulong host) => host + Delta;

    /// <summary>True when the whole range's IOVAs fall in one valid window.</summary>
    public bool IsMappable(ulong host, ulong length)
    {
        var iova = host + Delta;
        foreach (var r in _ranges)
        {
            if (r.Contains(iova, length))
            {
                return true;
            }
        }

        return false;
    }
}
