namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// <see cref="OnDemandRegion.Prefetch"/> was asked for a range it cannot map: outside the region, empty, or more pages
/// than the on-demand budget holds. Kept beside the paging code rather than in Errors.cs so branches that add errors
/// there merge cleanly; it is an <see cref="FpgaAccelException"/> like the rest.
/// </summary>
public sealed class PrefetchRejectedException : FpgaAccelException
{
    /// <summary>Prefetching [<paramref name="offset"/>, + <paramref name="length"/>) of <paramref name="region"/> breaks <paramref name="rule"/>; <paramref name="fix"/> says what to do.</summary>
    public PrefetchRejectedException(string region, ulong offset, ulong length, string rule, string fix)
        : base($"Cannot prefetch [offset {offset}, +{length} bytes) of {region}: {rule}. {fix}")
    {
        Offset = offset;
        Length = length;
    }

    /// <summary>The offset the caller asked for, in bytes from the region's start.</summary>
    public ulong Offset { get; }

    /// <summary>The length the caller asked for, in bytes.</summary>
    public ulong Length { get; }
}
