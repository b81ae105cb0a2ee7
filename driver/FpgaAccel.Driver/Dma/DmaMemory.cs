using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Dma;

/// <summary>
/// Page-aligned host memory the device reads or writes by DMA (rings, page tables), mapped through
/// the platform IOMMU for as long as it lives. Zeroed when allocated.
/// </summary>
internal sealed unsafe class DmaMemory : IDisposable
{
    private readonly IommuMappings _iommu;
    private readonly MemoryMapping _mapping;
    private int _disposed;

    private DmaMemory(IommuMappings iommu, MemoryMapping mapping, ulong iova)
    {
        _iommu = iommu;
        _mapping = mapping;
        Iova = iova;
    }

    public ulong Length => _mapping.Length;

    public nint Host => _mapping.Address;

    public ulong Iova { get; }

    public byte* Pointer => (byte*)_mapping.Address;

    public static DmaMemory Allocate(IommuMappings iommu, ulong length)
    {
        length = (length + PageTableFormat.PageSize - 1) & ~(PageTableFormat.PageSize - 1);
        // Not inherited by a forked child (MADV_DONTFORK): the device keeps using these pages.
        var mapping = HostBuffer.ForDma(MemoryMapping.Anonymous(length, populate: true));
        try
        {
            var host = (ulong)mapping.Address;
            if (!iommu.Layout.IsMappable(host, length))
            {
                throw new DmaMappingException(iommu.Layout.IovaOf(host), length, "EINVAL", "the memory's IOVA falls outside the IOMMU's valid ranges.");
            }

            iommu.Acquire(host, length);
            return new DmaMemory(iommu, mapping, iommu.Layout.IovaOf(host));
        }
        catch
        {
            mapping.Dispose();
            throw;
        }
    }

    /// <summary>Unmaps from the IOMMU, then frees. Only once the device can no longer reach it.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            _iommu.Release((ulong)_mapping.Address, _mapping.Length);
        }
        finally
        {
            _mapping.Dispose();
        }
    }
}
