using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>Spec 7 costs on the virtual clock, where they are exact (behaviour of the cost model, not host speed).</summary>
public class CostModelTests
{
    [Test]
    public void WalkCacheSavesTableReads()
    {
        using var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(0);
        rig.EnableContext(0);
        var src = rig.MapBuffer(0, 8192, PteFlags.Read);
        var first = rig.Run(0, DmaRig.Crc(src.Dva, 32, 0));
        var second = rig.Run(0, DmaRig.Crc(src.Dva + 4096, 32, 0));
        var again = rig.Run(0, DmaRig.Crc(src.Dva + 4096, 32, 0));
        var o = rig.Model.Options;

        // first data read + table reads + 32 bytes at 32 bytes/cycle + the posted completion write
        Assert.That(first.EndCycle - first.StartCycle, Is.EqualTo(o.DmaReadCycles + (4 * o.DmaReadCycles) + 1 + o.DmaWriteCycles), "four levels read");
        Assert.That(second.EndCycle - second.StartCycle, Is.EqualTo(o.DmaReadCycles + o.DmaReadCycles + 1 + o.DmaWriteCycles), "the walk cache held levels 0-2");
        Assert.That(again.EndCycle - again.StartCycle, Is.EqualTo(o.DmaReadCycles + o.TlbHitCycles + 1 + o.DmaWriteCycles), "a TLB hit");
    }

    [Test]
    public void CostsAreSettings()
    {
        using var rig = new DmaRig(ClockMode.Virtual, options: new ModelOptions { DmaReadCycles = 1000, BytesPerCycle = 1, TlbHitCycles = 0, DmaWriteCycles = 0 });
        rig.ConfigureQueue(0);
        rig.EnableContext(0);
        var src = rig.MapBuffer(0, 4096, PteFlags.Read);
        rig.Run(0, DmaRig.Crc(src.Dva, 100, 0));
        var c = rig.Run(0, DmaRig.Crc(src.Dva, 100, 0));
        Assert.That(c.EndCycle - c.StartCycle, Is.EqualTo(1000UL + 100UL));
    }

    [Test]
    public void CommandStartsNoEarlierThanItsDoorbellAndCyclesCatchUp()
    {
        using var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(0);
        var before = rig.Read(Fa1Registers.Cycles);
        var c = rig.Run(0, DmaRig.Nop());
        Assert.That(c.StartCycle, Is.GreaterThanOrEqualTo(before));
        Assert.That(rig.Read(Fa1Registers.Cycles), Is.GreaterThanOrEqualTo(c.EndCycle), "the driver saw the completion after it ended");
    }
}
