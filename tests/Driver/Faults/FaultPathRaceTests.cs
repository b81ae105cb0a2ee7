using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Faults;

/// <summary>
/// Issue 11, defect 3: the fault path looks addresses up without a lock while pins promote and split the chunk
/// under it, unlinking and freeing device page tables. It must never follow a table that is being freed (a
/// NullReferenceException or a read of unmapped memory), and a page pinned throughout must always resolve.
/// </summary>
public class FaultPathRaceTests
{
    [Test]
    public void LockFreeLookupSurvivesPromotionAndSplitOfItsChunk()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var buffer = HostBuffer.Allocate(PageTableFormat.HugePageSize);
        using var context = device.CreateContext();
        const ulong lastPage = PageTableFormat.HugePageSize - PageTableFormat.PageSize;
        using var held = context.Pin(buffer.Address, lastPage, DmaAccess.DeviceRead);
        var probe = (ulong)buffer.Address + (7 * PageTableFormat.PageSize);
        var stop = false;
        Exception? error = null;
        long resolved = 0;
        var faulter = new Thread(() =>
        {
            try
            {
                while (!Volatile.Read(ref stop))
                {
                    var outcome = context.ServiceFault(probe, write: false, queue: 0, out var leaf, out _);
                    // A 2 MiB leaf covers the page too: what matters is the page it translates to.
                    var page = leaf.IsLeafBit ? leaf.Address + (probe & (PageTableFormat.HugePageSize - 1)) : leaf.Address;
                    if (outcome != FaultOutcome.Resolved || !leaf.Valid || page != probe + device.Mmu.Layout.Delta)
                    {
                        throw new InvalidOperationException($"a page pinned throughout resolved as {outcome}, leaf 0x{leaf.Raw:X}");
                    }

                    resolved++;
                }
            }
            catch (Exception ex)
            {
                error = ex;
            }
        })
        { IsBackground = true, Name = "test-faulter" };
        faulter.Start();

        // Pin the chunk's last page (the chunk becomes one 2 MiB leaf, its level-3 table is unlinked), then unpin it
        // (the leaf splits into a new level-3 table), over and over while the faulter looks the chunk up.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var cycles = 0;
        while (watch.Elapsed < TimeSpan.FromSeconds(3) && Volatile.Read(ref error) is null)
        {
            using (context.Pin(buffer.Address + (nint)lastPage, PageTableFormat.PageSize, DmaAccess.DeviceRead))
            {
            }

            cycles++;
        }

        Volatile.Write(ref stop, true);
        Assert.That(faulter.Join(TimeSpan.FromSeconds(10)), Is.True);
        Assert.That(error, Is.Null, $"after {cycles} promote/split cycles and {resolved} lookups");
        Assert.That(resolved, Is.GreaterThan(0));
    }
}
