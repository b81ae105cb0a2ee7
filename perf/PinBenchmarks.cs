using BenchmarkDotNet.Attributes;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;

namespace FpgaAccel.Perf;

/// <summary>
/// Pin and unpin of an 8 MiB buffer (IOMMU map, device page-table leaves, TLB invalidation and fence, unmap) on the
/// model, in 4 KiB pages, transparent huge pages and 2 MiB hugetlbfs pages (issue 15, item 5; decision F9): divide
/// the mean by 8 for the cost per MiB. <c>Huge</c> needs 4 pages in the reserved pool
/// (<c>echo 4 &gt; /proc/sys/vm/nr_hugepages</c> as root); without them its setup fails with that fix.
/// </summary>
[MemoryDiagnoser]
public class PinBenchmarks
{
    private const ulong Length = 8UL << 20;
    private FpgaDevice _device = null!;
    private DeviceContext _context = null!;
    private HostBuffer _buffer = null!;

    [Params(HostBufferPages.Small, HostBufferPages.TransparentHuge, HostBufferPages.Huge)]
    public HostBufferPages Pages { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions());
        _context = _device.CreateContext(new ContextOptions { NoFault = true });
        _buffer = HostBuffer.Allocate(Length, Pages);
        _buffer.Span.Fill(1); // fault every page in before the first pin, whatever its size
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _device.Dispose();
        _buffer.Dispose();
    }

    [Benchmark]
    public HostBufferPageKind PinUnpin8MiB()
    {
        using (_context.Pin(_buffer, DmaAccess.ReadWrite))
        {
        }

        return _buffer.PageKind;
    }
}
