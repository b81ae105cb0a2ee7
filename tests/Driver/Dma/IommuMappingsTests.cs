using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Dma;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Dma;

/// <summary>Per-page reference counts of IOMMU mappings: one map per first user, one unmap per last.</summary>
public class IommuMappingsTests
{
    [Test]
    public void PagesAreMappedOnFirstUseAndUnmappedOnLastInRuns()
    {
        var backend = new RecordingBackend();
        var accountant = new PinAccountant(1UL << 30);
        var mappings = new IommuMappings(backend, IovaLayout.Choose(backend.IovaRanges), accountant);
        const ulong p = 4096, b = 0x10_0000;

        mappings.Acquire(b, 4 * p);            // pages 0..3
        mappings.Acquire(b + p, p);            // page 1 again
        mappings.Acquire(b + (3 * p), 2 * p);  // page 3 again, page 4 new
        Assert.That(backend.Calls, Is.EqualTo(new[] { "map 0+4", "map 4+1" }));
        Assert.That(accountant.PinnedBytes, Is.EqualTo(5 * p));

        backend.Calls.Clear();
        mappings.Release(b, 4 * p);            // 0 and 2 reach zero; 1 and 3 stay
        Assert.That(backend.Calls, Is.EqualTo(new[] { "unmap 0+1", "unmap 2+1" }), "each page dropped once; zero-count runs unmapped");
        Assert.That(mappings.MappedPages, Is.EqualTo(3));

        backend.Calls.Clear();
        mappings.Release(b + p, p);
        mappings.Release(b + (3 * p), 2 * p);
        Assert.That(backend.Calls, Is.EqualTo(new[] { "unmap 1+1", "unmap 3+2" }));
        Assert.That(mappings.MappedPages, Is.Zero);
        Assert.That(accountant.PinnedBytes, Is.Zero);
        Assert.Throws<InvalidOperationException>(() => mappings.Release(b, p), "a release without an acquire is a bug, reported");
    }

    [Test]
    public void RefusedMapLeavesNoChargeAndNoMapping()
    {
        var backend = new RecordingBackend { RefuseAt = 0x10_2000 };
        var accountant = new PinAccountant(1UL << 30);
        var mappings = new IommuMappings(backend, IovaLayout.Choose(backend.IovaRanges), accountant);
        mappings.Acquire(0x10_1000, 4096);
        Assert.Throws<DmaMappingException>(() => mappings.Acquire(0x10_0000, 4 * 4096));
        Assert.That(accountant.PinnedBytes, Is.EqualTo(4096UL));
        Assert.That(mappings.MappedPages, Is.EqualTo(1));
        Assert.That(backend.Mapped, Is.EqualTo(1), "the run mapped before the refusal was unmapped again");
    }

    private sealed class RecordingBackend : IDeviceBackend
    {
        public List<string> Calls { get; } = [];

        public ulong? RefuseAt { get; init; }

        public int Mapped { get; private set; }

        public BackendKind Kind => BackendKind.Model;

        public string Description => "recording";

        public IReadOnlyList<IovaRange> IovaRanges { get; } = [new(0x1000, (1UL << 48) - 1)];

        public ulong Read64(uint offset) => 0;

        public void Write64(uint offset, ulong value)
        {
        }

        public int ConnectInterrupts(IReadOnlyList<EventFd> vectors) => 0;

        public void DisconnectInterrupts()
        {
        }

        public void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
        {
            var host = (ulong)hostAddress;
            if (RefuseAt is { } r && r >= host && r < host + length)
            {
                throw new DmaMappingException(iova, length, "EFAULT", "refused for the test.");
            }

            Calls.Add($"map {(host - 0x10_0000) / 4096}+{length / 4096}");
            Mapped += (int)(length / 4096);
        }

        public ulong UnmapDma(ulong iova, ulong length)
        {
            Calls.Add($"unmap {(iova - IovaLayout.HighDelta - 0x10_0000) / 4096}+{length / 4096}");
            Mapped -= (int)(length / 4096);
            return length;
        }

        public void Dispose()
        {
        }
    }
}
