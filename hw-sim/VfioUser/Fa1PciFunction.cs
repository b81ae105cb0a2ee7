using System.Buffers.Binary;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;

namespace FpgaAccel.HwSim.VfioUser;

/// <summary>A region as DEVICE_GET_REGION_INFO reports it.</summary>
/// <param name="Size">Bytes; 0 for a region the function does not have.</param>
/// <param name="Flags">Read and write (never mmap: every access is a message, so the model sees it).</param>
internal readonly record struct RegionDescription(ulong Size, VfioRegionFlags Flags);

/// <summary>
/// The FA-1 as a conventional PCI function (spec 1), described as data for the vfio-user server: its config space
/// (IDs, class 0x12, BAR0 64 KiB of registers, BAR2 4 KiB with the MSI-X table at 0 and PBA at 0x800, an MSI-X
/// capability with 3 vectors and a PCI Advanced Features capability offering FLR), its regions and IRQ types, and
/// what each access does: BAR0 goes to the model's register bus, BAR2 to the MSI-X table's storage, config writes
/// through the config space's masks to their side effects (MSI-X enable, FLR).
/// </summary>
/// <remarks>Threads: the session's receiving thread is the only caller.</remarks>
internal sealed class Fa1PciFunction
{
    private const int RegisterBytes = 8;
    private readonly Fa1Model _model;
    private readonly byte[] _msixBar = new byte[Fa1Identity.MsixBarSize];
    private long _partialWritesDropped;
    private long _functionResets;
    private long _powerOnsSeen;
    private long _powerCycles;

    public Fa1PciFunction(Fa1Model model, ushort vendorId, ushort deviceId, byte revision)
    {
        _model = model;
        Vectors = new MsixVectors(model);
        Config = BuildConfigSpace(vendorId, deviceId, revision, out var msix, out var advancedFeatures);
        MsixCapability = msix;
        AdvancedFeaturesCapability = advancedFeatures;
        ResetMsixTable();
        _powerOnsSeen = model.PowerOns;
    }

    /// <summary>The function's config space.</summary>
    public PciConfigSpace Config { get; }

    /// <summary>The MSI-X vectors and their eventfds.</summary>
    public MsixVectors Vectors { get; }

    /// <summary>Offset of the MSI-X capability in config space.</summary>
    public int MsixCapability { get; }

    /// <summary>Offset of the Advanced Features capability (FLR) in config space.</summary>
    public int AdvancedFeaturesCapability { get; }

    /// <summary>True while the command register's bus master bit is set: the device may reach client memory (decision V6).</summary>
    public bool BusMaster => (Config.Read16(PciConfigRegisters.Command) & PciConfigRegisters.CommandBusMaster) != 0;

    /// <summary>Called (on the session's thread) when <see cref="BusMaster"/> changes, by a config write or a reset.</summary>
    public Action<bool>? BusMasterChanged { get; set; }

    /// <summary>BAR0 writes narrower than a register, refused (decision V2).</summary>
    public long PartialWritesDropped => Interlocked.Read(ref _partialWritesDropped);

    /// <summary>Function-level resets done (FLR through config space, and DEVICE_RESET).</summary>
    public long FunctionResets => Interlocked.Read(ref _functionResets);

    /// <summary>Returns of the device to the bus (the BMC's RESET, a removal's return) that config space followed (decision V11).</summary>
    public long PowerCycles => Interlocked.Read(ref _powerCycles);

    /// <summary>
    /// Decision V11: when the model came back on the bus since the last access (a power cycle: the BMC's RESET, or a
    /// removal's return), config space and the MSI-X table go back to their power-on values, as a real function's do
    /// after a cold reset (spec 1, R1): command register 0 (memory space and bus master off, so the client's mappings
    /// are withdrawn, V6) and MSI-X disabled. The model's own registers were cold-reset by the return itself.
    /// </summary>
    /// <remarks>
    /// The return happens on another thread (the BMC's timer); this function is the session thread's alone, so the
    /// change is applied here, before the first access after it. Argument that no access is served against a config
    /// space the device no longer has: the model counts the return under its register lock before anything can read it
    /// back; an access that checked just before the count moved is served as if it had arrived a moment earlier (the
    /// device was off, or had just come back), and every later one sees the new count.
    /// </remarks>
    public void FollowPowerCycle()
    {
        var powerOns = _model.PowerOns;
        if (powerOns == _powerOnsSeen)
        {
            return;
        }

        _powerOnsSeen = powerOns;
        Interlocked.Increment(ref _powerCycles);
        var busMaster = BusMaster;
        Config.ResetToPowerOn();
        ResetMsixTable();
        Vectors.SetEnabled(false);
        if (busMaster)
        {
            BusMasterChanged?.Invoke(false);
        }
    }

    /// <summary>The region at <paramref name="index"/> (vfio-pci's fixed indexes).</summary>
    public static RegionDescription Region(uint index) => index switch
    {
        VfioPciRegion.Bar0 => new RegionDescription(Fa1Identity.Bar0Size, VfioRegionFlags.Read | VfioRegionFlags.Write),
        Fa1Identity.MsixBar => new RegionDescription(Fa1Identity.MsixBarSize, VfioRegionFlags.Read | VfioRegionFlags.Write),
        VfioPciRegion.Config => new RegionDescription(PciConfigRegisters.ConventionalSize, VfioRegionFlags.Read | VfioRegionFlags.Write),
        // BAR1 and BAR3 are the upper halves of the 64-bit BAR0 and BAR2; no BAR4, BAR5, ROM or VGA.
        _ => new RegionDescription(0, VfioRegionFlags.None),
    };

    /// <summary>The IRQ type at <paramref name="index"/>: only MSI-X has vectors; flags as vfio-pci reports them.</summary>
    public static (uint Count, VfioIrqFlags Flags) Irq(uint index) => index switch
    {
        // No interrupt pin: INTx has no vector (its flags are still the kernel's for INTx).
        VfioPciIrq.Intx => (0, VfioIrqFlags.EventFd | VfioIrqFlags.Maskable | VfioIrqFlags.AutoMasked),
        VfioPciIrq.Msi => (0, VfioIrqFlags.EventFd | VfioIrqFlags.NoResize),
        VfioPciIrq.Msix => ((uint)MsixVectors.Count, VfioIrqFlags.EventFd | VfioIrqFlags.NoResize),
        _ => (0, VfioIrqFlags.EventFd),
    };

    /// <summary>REGION_READ of <paramref name="into"/>'s length at <paramref name="offset"/> of <paramref name="region"/>.</summary>
    public void Read(uint region, ulong offset, Span<byte> into)
    {
        var at = CheckRange(region, offset, into.Length);
        FollowPowerCycle();
        if (region != VfioPciRegion.Bar0 && !_model.IsPresent)
        {
            // Spec 2, decision V11: a function off the bus answers nothing; the root port completes a read with all
            // ones, config space and the MSI-X BAR included (BAR0's all ones come from the model itself).
            into.Fill(0xFF);
            return;
        }

        switch (region)
        {
            case VfioPciRegion.Bar0:
                CheckRegisterAccess(at, into.Length);
                Span<byte> value = stackalloc byte[RegisterBytes];
                BinaryPrimitives.WriteUInt64LittleEndian(value, _model.Read64((uint)at & ~(uint)(RegisterBytes - 1)));
                // Decision V2: a narrower read gets those bytes of one 64-bit register read.
                value.Slice(at % RegisterBytes, into.Length).CopyTo(into);
                break;
            case Fa1Identity.MsixBar:
                CheckMsixAccess(at, into.Length);
                _msixBar.AsSpan(at, into.Length).CopyTo(into);
                break;
            default:
                Config.Read(at, into);
                break;
        }
    }

    /// <summary>
    /// REGION_WRITE of <paramref name="data"/> at <paramref name="offset"/> of <paramref name="region"/>.
    /// <paramref name="posted"/>: the client waits for no reply, so a refused write is dropped and counted.
    /// </summary>
    public void Write(uint region, ulong offset, ReadOnlySpan<byte> data, bool posted)
    {
        var at = CheckRange(region, offset, data.Length);
        FollowPowerCycle();
        if (region != VfioPciRegion.Bar0 && !_model.IsPresent)
        {
            // Spec 2, decision V11: writes to a function off the bus are lost (BAR0's are dropped by the model).
            return;
        }

        switch (region)
        {
            case VfioPciRegion.Bar0:
                CheckRegisterAccess(at, data.Length);
                if (data.Length != RegisterBytes)
                {
                    // Decision V2: spec 2 leaves a split write undefined; refusing it cannot tear a doorbell.
                    Interlocked.Increment(ref _partialWritesDropped);
                    throw new VfioUserException(Errno.EINVAL,
                        $"BAR0 write of {data.Length} bytes at 0x{at:X}: FA-1 registers take whole 64-bit writes only (spec 2){(posted ? "; the posted write was dropped" : string.Empty)}");
                }

                _model.Write64((uint)at, BinaryPrimitives.ReadUInt64LittleEndian(data));
                break;
            case Fa1Identity.MsixBar:
                CheckMsixAccess(at, data.Length);
                WriteMsixTable(at, data);
                break;
            default:
                WriteConfig(at, data);
                break;
        }
    }

    /// <summary>
    /// A function-level reset (AF FLR, or the client's DEVICE_RESET): what CTRL.RESET does, and config space and the
    /// MSI-X table back to their power-on values, which clears bus mastering and the MSI-X enable (spec 1, decision V1).
    /// </summary>
    public void Reset()
    {
        FollowPowerCycle();
        Interlocked.Increment(ref _functionResets);
        var busMaster = BusMaster;
        Config.ResetToPowerOn();
        ResetMsixTable();
        Vectors.SetEnabled(false);
        _model.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Reset);
        if (busMaster)
        {
            BusMasterChanged?.Invoke(false);
        }
    }

    private static int CheckRange(uint region, ulong offset, int count)
    {
        var size = Region(region).Size;
        if (size == 0)
        {
            throw new VfioUserException(Errno.EINVAL, $"region {region} does not exist on this function (it has BAR0, BAR2 and config space: regions 0, 2 and 7)");
        }

        if (count == 0 || offset >= size || (ulong)count > size - offset)
        {
            throw new VfioUserException(Errno.EINVAL, $"access of {count} bytes at 0x{offset:X} runs outside region {region}'s {size} bytes");
        }

        return (int)offset;
    }

    // Spec 2: registers are 64-bit and naturally aligned, so an access of 1, 2, 4 or 8 bytes at a multiple of its
    // size stays inside one register; anything else straddles two.
    private static void CheckRegisterAccess(int offset, int count)
    {
        if (count is not (1 or 2 or 4 or 8) || offset % count != 0)
        {
            throw new VfioUserException(Errno.EINVAL, $"BAR0 access of {count} bytes at 0x{offset:X} straddles a register: FA-1 registers are 8 bytes, naturally aligned (spec 2)");
        }
    }

    // The MSI-X table and PBA take aligned DWORD and QWORD accesses (PCI 3.0, 6.8.2).
    private static void CheckMsixAccess(int offset, int count)
    {
        if (count is not (4 or 8) || offset % count != 0)
        {
            throw new VfioUserException(Errno.EINVAL, $"BAR2 access of {count} bytes at 0x{offset:X}: the MSI-X table and PBA take aligned 4- or 8-byte accesses");
        }
    }

    private static PciConfigSpace BuildConfigSpace(ushort vendorId, ushort deviceId, byte revision, out int msix, out int advancedFeatures)
    {
        var config = new PciConfigSpace();
        config.Define16(PciConfigRegisters.VendorId, vendorId);
        config.Define16(PciConfigRegisters.DeviceId, deviceId);
        // No I/O BARs, so the I/O space bit stays 0.
        config.Define16(PciConfigRegisters.Command, 0, writable: (ushort)(PciConfigRegisters.CommandMemory | PciConfigRegisters.CommandBusMaster
            | PciConfigRegisters.CommandParity | PciConfigRegisters.CommandSerr | PciConfigRegisters.CommandIntxDisable));
        config.Define8(PciConfigRegisters.RevisionId, revision);
        config.Define8(PciConfigRegisters.ClassProgrammingInterface, 0);
        config.Define16(PciConfigRegisters.ClassDevice, Fa1Identity.PciClass << 8);
        config.Define8(PciConfigRegisters.CacheLineSize, 0, writable: 0xFF);

        // 64-bit non-prefetchable memory BARs (registers have read side effects): the writable bits are the address
        // bits above the size, so a host sizing the BAR reads back its size.
        config.Define32(PciConfigRegisters.BaseAddress0, PciConfigRegisters.BarMemoryType64, writable: unchecked((uint)~(Fa1Identity.Bar0Size - 1)));
        config.Define32(PciConfigRegisters.BaseAddress0 + 4, 0, writable: uint.MaxValue);
        var bar2 = PciConfigRegisters.BaseAddress0 + (4 * Fa1Identity.MsixBar);
        config.Define32(bar2, PciConfigRegisters.BarMemoryType64, writable: unchecked((uint)~(Fa1Identity.MsixBarSize - 1)));
        config.Define32(bar2 + 4, 0, writable: uint.MaxValue);
        config.Define16(PciConfigRegisters.SubsystemVendorId, vendorId);
        config.Define16(PciConfigRegisters.SubsystemId, deviceId);
        config.Define8(PciConfigRegisters.InterruptLine, 0, writable: 0xFF);

        // Spec 1: MSI-X, 3 vectors, table and PBA in BAR2.
        msix = config.AddCapability(PciConfigRegisters.CapabilityIdMsix, PciConfigRegisters.MsixCapabilityLength);
        config.Define16(msix + PciConfigRegisters.MsixControl, Fa1Identity.MsixVectors - 1,
            writable: (ushort)(PciConfigRegisters.MsixControlEnable | PciConfigRegisters.MsixControlFunctionMask));
        config.Define32(msix + PciConfigRegisters.MsixTable, Fa1Identity.MsixTableOffset | Fa1Identity.MsixBar);
        config.Define32(msix + PciConfigRegisters.MsixPendingBitArray, Fa1Identity.MsixPbaOffset | Fa1Identity.MsixBar);

        // Spec 1: FLR on a conventional function, through PCI Advanced Features. TP is offered (the kernel's AF FLR
        // needs both bits) and always reads 0: the reset itself waits for the model's in-flight work (decision V1).
        advancedFeatures = config.AddCapability(PciConfigRegisters.CapabilityIdAdvancedFeatures, PciConfigRegisters.AdvancedFeaturesCapabilityLength);
        config.Define8(advancedFeatures + PciConfigRegisters.AdvancedFeaturesLength, PciConfigRegisters.AdvancedFeaturesCapabilityLength);
        config.Define8(advancedFeatures + PciConfigRegisters.AdvancedFeaturesCapabilities,
            PciConfigRegisters.AdvancedFeaturesHasTransactionsPending | PciConfigRegisters.AdvancedFeaturesHasFlr);
        config.Define8(advancedFeatures + PciConfigRegisters.AdvancedFeaturesControl, 0, writable: PciConfigRegisters.AdvancedFeaturesInitiateFlr);
        config.Seal();
        return config;
    }

    private void WriteConfig(int offset, ReadOnlySpan<byte> data)
    {
        var busMaster = BusMaster;
        Config.Write(offset, data);
        if (BusMaster != busMaster)
        {
            BusMasterChanged?.Invoke(!busMaster);
        }

        if (PciConfigSpace.Touches(offset, data.Length, MsixCapability + PciConfigRegisters.MsixControl, 2))
        {
            Vectors.SetEnabled((Config.Read16(MsixCapability + PciConfigRegisters.MsixControl) & PciConfigRegisters.MsixControlEnable) != 0);
        }

        var control = AdvancedFeaturesCapability + PciConfigRegisters.AdvancedFeaturesControl;
        if (PciConfigSpace.Touches(offset, data.Length, control, 1) && (Config.Read8(control) & PciConfigRegisters.AdvancedFeaturesInitiateFlr) != 0)
        {
            // The initiate bit always reads 0: the reset is done by the time the write's reply goes out.
            Config.Set8(control, 0);
            Reset();
        }
    }

    private void WriteMsixTable(int offset, ReadOnlySpan<byte> data)
    {
        // Only the table's entries are writable; the PBA and the space between are read-only.
        const int tableEnd = (int)Fa1Identity.MsixTableOffset + (Fa1Identity.MsixVectors * PciConfigRegisters.MsixEntryLength);
        for (var i = 0; i < data.Length; i++)
        {
            var at = offset + i;
            if (at < Fa1Identity.MsixTableOffset || at >= tableEnd)
            {
                continue;
            }

            var inEntry = (at - (int)Fa1Identity.MsixTableOffset) % PciConfigRegisters.MsixEntryLength;
            // Vector control: only the mask bit is implemented; its other bits are reserved and read 0.
            _msixBar[at] = inEntry == PciConfigRegisters.MsixEntryVectorControl ? (byte)(data[i] & PciConfigRegisters.MsixEntryMasked)
                : inEntry > PciConfigRegisters.MsixEntryVectorControl ? (byte)0 : data[i];
        }
    }

    // PCI 3.0, 6.8.2.9: after reset every vector is masked; address and data are undefined (0 here).
    private void ResetMsixTable()
    {
        Array.Clear(_msixBar);
        for (var v = 0; v < Fa1Identity.MsixVectors; v++)
        {
            _msixBar[(int)Fa1Identity.MsixTableOffset + (v * PciConfigRegisters.MsixEntryLength) + PciConfigRegisters.MsixEntryVectorControl] =
                (byte)PciConfigRegisters.MsixEntryMasked;
        }
    }
}
