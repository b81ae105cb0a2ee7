using System.Buffers.Binary;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim.Bmc;
using FpgaAccel.HwSim.VfioUser;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim.VfioUser;

/// <summary>The FA-1's config space as spec 1 describes it, BAR sizing, the MSI-X BAR, and function-level reset.</summary>
public class Fa1PciFunctionTests : VfioUserFixture
{
    [Test]
    public void ConfigSpaceIsAConventionalFa1WithMsixInBar2AndFlr()
    {
        var config = Client.ReadRegion(VfioPciRegion.Config, 0, 256);
        ushort U16(int at) => BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(at));
        uint U32(int at) => BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(at));
        Assert.That(U16(PciConfigRegisters.VendorId), Is.EqualTo(Fa1Identity.DefaultVendorId));
        Assert.That(U16(PciConfigRegisters.DeviceId), Is.EqualTo(Fa1Identity.DefaultDeviceId));
        Assert.That(U32(PciConfigRegisters.RevisionId) >> 8, Is.EqualTo(0x12_0000u), "class 0x12, processing accelerator");
        Assert.That(U16(PciConfigRegisters.Status) & PciConfigRegisters.StatusCapabilityList, Is.Not.Zero);
        Assert.That(config[PciConfigRegisters.InterruptPin], Is.Zero, "no INTx");

        var capabilities = new Dictionary<byte, int>();
        for (int at = config[PciConfigRegisters.CapabilityList], hops = 0; at != 0 && hops < 48; at = config[at + 1], hops++)
        {
            capabilities[config[at]] = at;
        }

        Assert.That(capabilities.Keys, Is.EquivalentTo(new[] { PciConfigRegisters.CapabilityIdMsix, PciConfigRegisters.CapabilityIdAdvancedFeatures }));
        var msix = capabilities[PciConfigRegisters.CapabilityIdMsix];
        Assert.That(U16(msix + PciConfigRegisters.MsixControl) & PciConfigRegisters.MsixControlTableSize, Is.EqualTo(2), "3 vectors");
        Assert.That(U32(msix + PciConfigRegisters.MsixTable), Is.EqualTo(Fa1Identity.MsixTableOffset | 2u), "table at 0 of BAR2");
        Assert.That(U32(msix + PciConfigRegisters.MsixPendingBitArray), Is.EqualTo(Fa1Identity.MsixPbaOffset | 2u), "PBA at 0x800 of BAR2");
        var af = capabilities[PciConfigRegisters.CapabilityIdAdvancedFeatures];
        Assert.That(config[af + PciConfigRegisters.AdvancedFeaturesCapabilities],
            Is.EqualTo(PciConfigRegisters.AdvancedFeaturesHasFlr | PciConfigRegisters.AdvancedFeaturesHasTransactionsPending),
            "Linux's AF FLR needs both bits; then vfio-pci offers VFIO_DEVICE_RESET");
    }

    [Test]
    public void BarsSizeLikeA64BitNonPrefetchableBar()
    {
        Client.WriteRegion(VfioPciRegion.Config, PciConfigRegisters.BaseAddress0, BitConverter.GetBytes(uint.MaxValue));
        Client.WriteRegion(VfioPciRegion.Config, PciConfigRegisters.BaseAddress0 + 4, BitConverter.GetBytes(uint.MaxValue));
        Client.WriteRegion(VfioPciRegion.Config, PciConfigRegisters.BaseAddress0 + 8, BitConverter.GetBytes(uint.MaxValue));
        Assert.That(Client.ReadConfig32(PciConfigRegisters.BaseAddress0), Is.EqualTo(0xFFFF_0004u), "64 KiB, 64-bit, memory");
        Assert.That(Client.ReadConfig32(PciConfigRegisters.BaseAddress0 + 4), Is.EqualTo(uint.MaxValue));
        Assert.That(Client.ReadConfig32(PciConfigRegisters.BaseAddress0 + 8), Is.EqualTo(0xFFFF_F004u), "4 KiB");
        Assert.That(Client.ReadConfig32(PciConfigRegisters.BaseAddress0 + 16), Is.Zero, "no BAR4");
        Assert.That(Client.ReadConfig32(PciConfigRegisters.RomAddress), Is.Zero, "no expansion ROM");
        Client.WriteRegion(VfioPciRegion.Config, PciConfigRegisters.VendorId, BitConverter.GetBytes(0u));
        Assert.That(Client.ReadConfig16(PciConfigRegisters.VendorId), Is.EqualTo(Fa1Identity.DefaultVendorId), "read-only bytes keep their value");
    }

    [Test]
    public void TheMsixTableHoldsEntriesAndThePbaIsReadOnly()
    {
        var entry1 = 16u;
        Client.WriteRegion((uint)Fa1Identity.MsixBar, entry1, BitConverter.GetBytes(0xFEE0_1000u));
        Client.WriteRegion((uint)Fa1Identity.MsixBar, entry1 + 8, BitConverter.GetBytes(0x4041u));
        Client.WriteRegion((uint)Fa1Identity.MsixBar, entry1 + 12, BitConverter.GetBytes(0xFFFF_FFFFu));
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(Client.ReadRegion((uint)Fa1Identity.MsixBar, entry1, 4)), Is.EqualTo(0xFEE0_1000u));
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(Client.ReadRegion((uint)Fa1Identity.MsixBar, entry1 + 12, 4)), Is.EqualTo(1u),
            "vector control keeps only the mask bit");
        Client.WriteRegion((uint)Fa1Identity.MsixBar, Fa1Identity.MsixPbaOffset, BitConverter.GetBytes(7UL));
        Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(Client.ReadRegion((uint)Fa1Identity.MsixBar, Fa1Identity.MsixPbaOffset, 8)), Is.Zero);
    }

    [Test]
    public void AnAdvancedFeaturesFlrResetsTheModelAndTheFunction()
    {
        var af = Server.Function.AdvancedFeaturesCapability;
        var msixControl = Server.Function.MsixCapability + PciConfigRegisters.MsixControl;
        Client.WriteRegion(0, Fa1Registers.Scratch, BitConverter.GetBytes(0x5555UL));
        EnableBusMaster();
        Client.WriteConfig16(msixControl, PciConfigRegisters.MsixControlEnable);
        Client.WriteRegion(VfioPciRegion.Config, PciConfigRegisters.BaseAddress0, BitConverter.GetBytes(0xC000_0000u));

        // The kernel's pci_af_flr: wait for TP clear in the status byte, then write the FLR bit.
        Assert.That(Client.ReadRegion(VfioPciRegion.Config, (ulong)(af + PciConfigRegisters.AdvancedFeaturesStatus), 1)[0], Is.Zero, "no transactions pending");
        Assert.That(Client.WriteRegion(VfioPciRegion.Config, (ulong)(af + PciConfigRegisters.AdvancedFeaturesControl), [PciConfigRegisters.AdvancedFeaturesInitiateFlr]).Failed, Is.False);

        Assert.That(Client.ReadRegion(VfioPciRegion.Config, (ulong)(af + PciConfigRegisters.AdvancedFeaturesControl), 1)[0], Is.Zero, "the initiate bit reads 0");
        Assert.That(Client.ReadConfig16(PciConfigRegisters.Command), Is.Zero, "bus master and memory space are off after an FLR");
        Assert.That(Client.ReadConfig16(msixControl) & PciConfigRegisters.MsixControlEnable, Is.Zero, "MSI-X is disabled");
        Assert.That(Client.ReadConfig32(PciConfigRegisters.BaseAddress0), Is.EqualTo(PciConfigRegisters.BarMemoryType64), "BARs back to power-on (the host restores them)");
        Assert.That(Model.Read64(Fa1Registers.Scratch), Is.Zero, "CTRL.RESET's effect: RW registers cleared (D4)");
        Assert.That(Server.Statistics.FunctionResets, Is.EqualTo(1));
    }

    [Test]
    public void DeviceResetDoesWhatAnFlrDoes()
    {
        Client.WriteRegion(0, Fa1Registers.Scratch, BitConverter.GetBytes(0x77UL));
        EnableBusMaster();
        Assert.That(Client.Send(VfioUserCommand.DeviceReset, []).Failed, Is.False);
        Assert.That(Model.Read64(Fa1Registers.Scratch), Is.Zero);
        Assert.That(Client.ReadConfig16(PciConfigRegisters.Command), Is.Zero);
        Assert.That(Server.Statistics.FunctionResets, Is.EqualTo(1));
    }

    [Test]
    public void TheBmcsResetPowerCyclesTheFunctionAsAColdResetWould()
    {
        var msixControl = Server.Function.MsixCapability + PciConfigRegisters.MsixControl;
        using var v0 = EventFd.Create();
        using var v1 = EventFd.Create();
        using var v2 = EventFd.Create();
        Assert.That(Client.SetIrqs((uint)(VfioIrqSetFlags.DataEventFd | VfioIrqSetFlags.ActionTrigger), VfioPciIrq.Msix, 0, 3, fds: [v0.Handle, v1.Handle, v2.Handle]).Failed, Is.False);
        Client.WriteConfig16(msixControl, PciConfigRegisters.MsixControlEnable);
        EnableBusMaster();
        Client.WriteRegion(0, Fa1Registers.Scratch, BitConverter.GetBytes(0x5555UL));
        Assert.That(Server.Function.Vectors.Delivering, Is.True);
        Model.RaiseInterrupt(InterruptCauses.Completion);
        Assert.That(v1.TryRead(out _), Is.True, "COMPLETION reaches vector 1");

        using var bmc = new BmcModel(new BmcModelOptions { Fpga = FpgaPower.Of(Model), ResetOffBus = TimeSpan.FromMilliseconds(300) });
        Assert.That(bmc.Answer("RESET"), Is.EqualTo(new[] { "OK" }));

        // Spec 2, decision V11: off the bus, BAR0 and config space read all ones, and config writes are lost.
        Assert.That(Client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.DeviceLost));
        Assert.That(Client.ReadConfig32(PciConfigRegisters.VendorId), Is.EqualTo(uint.MaxValue), "config space reads all ones off the bus");
        Assert.That(Client.WriteRegion(VfioPciRegion.Config, PciConfigRegisters.Command, BitConverter.GetBytes((ushort)0)).Failed, Is.False, "a lost write is not an error");

        Assert.That(() => Client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue).After(10_000, 20), "the FA-1 comes back (spec 8)");
        Assert.That(Client.ReadConfig16(PciConfigRegisters.VendorId), Is.EqualTo(Fa1Identity.DefaultVendorId));
        Assert.That(Client.ReadConfig16(PciConfigRegisters.Command), Is.Zero, "a cold reset clears memory space and bus master (spec 1)");
        Assert.That(Client.ReadConfig16(msixControl) & PciConfigRegisters.MsixControlEnable, Is.Zero, "and MSI-X enable");
        Assert.That(Server.Function.Vectors.Delivering, Is.False, "the model's vectors are disconnected until the host enables MSI-X again");
        Assert.That(Server.Function.BusMaster, Is.False);
        Assert.That(Model.Read64(Fa1Registers.Scratch), Is.Zero, "the model's registers were cold-reset (R1)");
        Assert.That(Server.Statistics.PowerCycles, Is.EqualTo(1));
        Assert.That(Server.Statistics.FunctionResets, Is.Zero, "a power cycle is not an FLR");

        // What a host restores (decision R19): bus mastering through the command register, MSI-X by enabling it again.
        EnableBusMaster();
        Client.WriteConfig16(msixControl, PciConfigRegisters.MsixControlEnable);
        Assert.That(Server.Function.BusMaster, Is.True);
        Assert.That(Server.Function.Vectors.Delivering, Is.True, "the eventfd the client wired before is still the vector's");
        Model.RaiseInterrupt(InterruptCauses.Completion);
        Assert.That(v1.TryRead(out _), Is.True, "COMPLETION reaches vector 1 again");
    }
}
