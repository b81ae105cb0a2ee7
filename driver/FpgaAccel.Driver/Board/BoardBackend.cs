using System.Globalization;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver.Board;

/// <summary>
/// The FA-1 board through VFIO behind the backend seam: BAR0 mmapped for registers, MSI-X (or MSI) vectors
/// on the driver's eventfds, DMA through the type1 IOMMU, function reset through VFIO_DEVICE_RESET.
/// </summary>
internal sealed partial class BoardBackend : IDeviceBackend
{
    /// <summary>A DMA mapping's granule: host address, IOVA and length are multiples of it (spec 4.1 pages).</summary>
    public const ulong PageSize = 4096;

    private readonly VfioPciDevice _pci;
    private readonly VfioMappedRegion _bar0;
    private readonly ILogger _logger;
    private readonly IovaRange[] _iovaRanges;
    private uint? _irqIndex;
    private int _disposed;

    private BoardBackend(VfioPciDevice pci, VfioMappedRegion bar0, IovaRange[] iovaRanges, ulong bar0Size, ILogger logger)
    {
        _pci = pci;
        _bar0 = bar0;
        _iovaRanges = iovaRanges;
        _logger = logger;
        Bar0Size = bar0Size;
    }

    public BackendKind Kind => BackendKind.Board;

    public string Description =>
        string.Create(CultureInfo.InvariantCulture, $"FA-1 board at {_pci.Address} (VFIO, IOMMU group {_pci.GroupNumber}, BAR0 {Bar0Size / 1024} KiB)");

    /// <summary>The PCI address of the board.</summary>
    public string Address => _pci.Address;

    /// <summary>BAR0's size as VFIO reports it.</summary>
    public ulong Bar0Size { get; }

    public IReadOnlyList<IovaRange> IovaRanges => _iovaRanges;

    /// <summary>
    /// Opens <paramref name="function"/>: VFIO container, group and device (in that order, closed in reverse on
    /// failure), function reset when VFIO offers one, bus mastering on, BAR0 mapped, IOVA ranges read.
    /// </summary>
    public static BoardBackend Open(PciFunction function, FpgaDeviceOptions options)
    {
        ArgumentNullException.ThrowIfNull(function);
        ArgumentNullException.ThrowIfNull(options);
        var logger = options.LoggerFactory.CreateLogger<BoardBackend>();
        var address = function.Address.ToString();
        if (function.IommuGroup is not { } group)
        {
            throw new BoardOpenException(address, "finding its IOMMU group",
                "the function has no IOMMU group: the IOMMU is off. Enable it (intel_iommu=on or amd_iommu=on) and reboot.");
        }

        if (!function.GroupViable)
        {
            throw new BoardGroupNotViableException(address, group, function.BlockingGroupMembers.Select(m => m.ToString()));
        }

        var step = "opening the VFIO container, group and device";
        VfioPciDevice? pci = null;
        VfioMappedRegion? bar0 = null;
        try
        {
            pci = VfioPciDevice.Open(address, new VfioOpenOptions { SysfsRoot = options.SysfsRoot, DevRoot = options.DevRoot });
            if (!pci.Info.IsPci)
            {
                throw new BoardOpenException(address, step, "VFIO does not report it as a PCI device (VFIO_DEVICE_FLAGS_PCI clear); bind it to vfio-pci.");
            }

            if (pci.Info.SupportsReset)
            {
                // Reset first: a function reset clears the command register, so bus mastering comes after it.
                step = "resetting the function (VFIO_DEVICE_RESET)";
                pci.Device.Reset();
            }
            else
            {
                LogNoFunctionReset(logger, address);
            }

            step = "enabling memory space and bus mastering (config-space command register)";
            pci.Device.EnableBusMastering();

            step = "mapping BAR0";
            var region = pci.Device.GetRegionInfo(VfioPciRegion.Bar0);
            CheckBar0(address, region);
            bar0 = pci.Device.MapRegion(region, 0, Fa1Identity.Bar0Size);

            step = "reading the IOMMU's valid IOVA ranges (VFIO_IOMMU_GET_INFO)";
            var iommu = pci.Container.GetIommuInfo();
            IovaRange[] ranges;
            if (iommu.IovaRanges is { Count: > 0 } reported)
            {
                ranges = reported.Select(r => new IovaRange(r.Start, r.End)).ToArray();
            }
            else
            {
                // Kernels before 5.4 do not report ranges; the whole space is then assumed and the kernel still refuses bad ones.
                ranges = [new IovaRange(0, ulong.MaxValue)];
                LogNoIovaRanges(logger, address);
            }

            var backend = new BoardBackend(pci, bar0, ranges, region.Size, logger);
            LogOpened(logger, address, pci.GroupNumber, region.Size, ranges.Length);
            return backend;
        }
        catch (Exception ex)
        {
            bar0?.Dispose();
            pci?.Dispose();
            var translated = Translate(ex, address, group, step, function);
            if (ReferenceEquals(translated, ex))
            {
                throw;
            }

            throw translated;
        }
    }

    /// <summary>BAR0 must hold the FA-1's 64 KiB of registers (spec 1) and let them be mmapped (decision B1).</summary>
    internal static void CheckBar0(string address, VfioRegionInfo region)
    {
        const string step = "mapping BAR0";
        if (region.Size < Fa1Identity.Bar0Size)
        {
            throw new BoardOpenException(address, step,
                $"BAR0 is {region.Size} bytes; the FA-1 has {Fa1Identity.Bar0Size} (spec 1). The bitstream is not an FA-1, or the BAR is disabled.");
        }

        if (!region.CanMmapRange(0, Fa1Identity.Bar0Size))
        {
            throw new BoardOpenException(address, step,
                $"the first {Fa1Identity.Bar0Size} bytes of BAR0 cannot be mmapped (flags {region.Flags}" +
                (region.SparseAreas is null ? string.Empty : ", sparse areas " + string.Join(", ", region.SparseAreas.Select(a => $"0x{a.Offset:X}+0x{a.Size:X}"))) +
                "). Registers need a mapping: place the MSI-X table outside the first 64 KiB of BAR0, or use a kernel that allows mmapping it (MSI-X mappable).");
        }
    }

    /// <summary>
    /// The rules a DMA request must meet before it reaches VFIO_IOMMU_MAP_DMA: 4 KiB multiples, inside one valid
    /// IOVA range, some access. Throws <see cref="DmaMappingException"/> naming the rule broken.
    /// </summary>
    internal static void CheckDmaRequest(ulong iova, nint hostAddress, ulong length, DmaAccess access, IReadOnlyList<IovaRange> ranges)
    {
        if (length == 0 || (iova | (ulong)hostAddress | length) % PageSize != 0)
        {
            throw new DmaMappingException(iova, length, "EINVAL",
                $"host address 0x{hostAddress:X}, IOVA 0x{iova:X} and length {length} must be non-zero multiples of {PageSize}.");
        }

        if (!ranges.Any(r => r.Contains(iova, length)))
        {
            throw new DmaMappingException(iova, length, "EINVAL",
                $"IOVA 0x{iova:X}..0x{iova + length - 1:X} is outside the IOMMU's valid IOVA ranges " +
                $"({string.Join(", ", ranges.Select(r => $"0x{r.Start:X}..0x{r.End:X}"))}).");
        }

        if ((access & DmaAccess.ReadWrite) == 0)
        {
            throw new DmaMappingException(iova, length, "EINVAL", "a mapping must let the device read, write or both (VFIO_DMA_MAP_FLAG_READ/WRITE).");
        }
    }

    public ulong Read64(uint offset) => _bar0.Read64(offset);

    public void Write64(uint offset, ulong value) => _bar0.Write64(offset, value);

    /// <summary>
    /// Connects MSI-X vectors 0..n-1 to the eventfds (VFIO_DEVICE_SET_IRQS, DATA_EVENTFD | ACTION_TRIGGER). When the
    /// host grants fewer MSI-X vectors than asked, or no MSI-X at all, connects vector 0 only (MSI-X, else MSI) and
    /// returns 1: every cause then arrives on it (spec 1).
    /// </summary>
    public int ConnectInterrupts(IReadOnlyList<EventFd> vectors)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        ArgumentOutOfRangeException.ThrowIfZero(vectors.Count, nameof(vectors));
        DisconnectInterrupts();
        var msix = _pci.Device.GetIrqInfo(VfioPciIrq.Msix);
        if (msix.Count >= (uint)vectors.Count && (msix.Flags & VfioIrqFlags.EventFd) != 0)
        {
            _pci.Device.SetIrqEventFds(VfioPciIrq.Msix, 0, vectors.Select(v => (SafeFileDescriptor?)v.Handle).ToArray());
            _irqIndex = VfioPciIrq.Msix;
            LogInterrupts(_logger, "MSI-X", vectors.Count);
            return vectors.Count;
        }

        var index = msix.Count >= 1 ? VfioPciIrq.Msix : VfioPciIrq.Msi;
        var single = index == VfioPciIrq.Msix ? msix : _pci.Device.GetIrqInfo(VfioPciIrq.Msi);
        if (single.Count == 0)
        {
            throw new FpgaAccelException(
                $"The FA-1 at {_pci.Address} offers neither MSI-X nor MSI through VFIO (VFIO_DEVICE_GET_IRQ_INFO count 0 for both); " +
                "the driver needs at least one message-signalled vector. Check the bitstream's MSI-X capability and the host's interrupt remapping.");
        }

        _pci.Device.SetIrqEventFds(index, 0, [vectors[0].Handle]);
        _irqIndex = index;
        LogInterrupts(_logger, index == VfioPciIrq.Msix ? "MSI-X" : "MSI", 1);
        return 1;
    }

    public void DisconnectInterrupts()
    {
        if (_irqIndex is not { } index || Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        _irqIndex = null;
        try
        {
            _pci.Device.DisableIrqs(index);
        }
        catch (SystemCallException ex)
        {
            // Closing the device fd disables the vectors anyway; log and go on so dispose never throws.
            LogDisconnectFailed(_logger, ex);
        }
    }

    public void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
    {
        CheckDmaRequest(iova, hostAddress, length, access, _iovaRanges);
        try
        {
            _pci.Container.MapDma(iova, hostAddress, length, access);
        }
        catch (VfioIoctlException ex)
        {
            throw new DmaMappingException(iova, length, ex.ErrnoName, ex.Message, ex);
        }
    }

    public ulong UnmapDma(ulong iova, ulong length)
    {
        try
        {
            return _pci.Container.UnmapDma(iova, length);
        }
        catch (VfioIoctlException ex)
        {
            throw new DmaMappingException(iova, length, ex.ErrnoName, ex.Message, ex);
        }
    }

    /// <summary>Resets the PCI function (VFIO_DEVICE_RESET), then turns bus mastering on again (the reset clears it).</summary>
    public void ResetFunction()
    {
        DisconnectInterrupts();
        _pci.Device.Reset();
        _pci.Device.EnableBusMastering();
    }

    /// <summary>
    /// Decision R19: after a power cycle (the BMC's RESET, a link that went down and came back) the function is as after
    /// a cold reset, command register 0 (spec 1), so memory space and bus mastering are set again through config space.
    /// vfio-pci keeps memory space enabled in its virtual command register, so this write (memory set, where the
    /// device reads it clear) is also what makes the kernel restore BARs the power cycle cleared (its BAR restore on a
    /// back-door reset). A read-modify-write: on a function that kept its command register nothing is written.
    /// </summary>
    public void RestoreFunction()
    {
        var command = _pci.Device.EnableBusMastering();
        LogFunctionRestored(_logger, _pci.Address, command);
    }

    public void Dispose()
    {
        DisconnectInterrupts();
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Reverse of open: the register window, then device, group, container (closing the container drops its DMA mappings).
        _bar0.Dispose();
        _pci.Dispose();
    }

    private static Exception Translate(Exception ex, string address, int group, string step, PciFunction function) => ex switch
    {
        FpgaAccelException => ex,
        VfioPermissionException p => new BoardAccessDeniedException(address, p.Path, p),
        // sysfs looked viable a moment ago but the kernel disagrees: name what sysfs shows now, or the group node.
        VfioGroupNotViableException v => new BoardGroupNotViableException(address, group,
            function.OtherGroupMembers.Select(m => m.ToString()).DefaultIfEmpty($"a device of {v.Path}")),
        IOException io => new BoardOpenException(address, step, io.Message, io),
        _ => ex,
    };

    [LoggerMessage(EventId = 30, Level = LogLevel.Information, Message = "Board {Address} open: IOMMU group {Group}, BAR0 {Bar0Size} bytes mapped, {Ranges} IOVA range(s)")]
    private static partial void LogOpened(ILogger logger, string address, int group, ulong bar0Size, int ranges);

    [LoggerMessage(EventId = 31, Level = LogLevel.Warning, Message = "Board {Address}: VFIO offers no function reset; relying on the FA-1's CTRL.RESET only")]
    private static partial void LogNoFunctionReset(ILogger logger, string address);

    [LoggerMessage(EventId = 32, Level = LogLevel.Warning, Message = "Board {Address}: the kernel reports no valid IOVA ranges; assuming the whole IOVA space")]
    private static partial void LogNoIovaRanges(ILogger logger, string address);

    [LoggerMessage(EventId = 38, Level = LogLevel.Information, Message = "Board {Address}: memory space and bus mastering restored after the device came back (command register 0x{Command:X4})")]
    private static partial void LogFunctionRestored(ILogger logger, string address, ushort command);

    [LoggerMessage(EventId = 33, Level = LogLevel.Information, Message = "Interrupts: {Kind} with {Vectors} vector(s)")]
    private static partial void LogInterrupts(ILogger logger, string kind, int vectors);

    [LoggerMessage(EventId = 34, Level = LogLevel.Warning, Message = "Disconnecting the board's interrupts failed; closing the device disables them")]
    private static partial void LogDisconnectFailed(ILogger logger, Exception ex);
}
