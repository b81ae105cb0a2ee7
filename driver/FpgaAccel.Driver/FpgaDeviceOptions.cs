using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FpgaAccel.Driver;

/// <summary>How to find, check and open an FA-1.</summary>
public sealed record FpgaDeviceOptions
{
    /// <summary>On-demand pages each open queue needs in the budget at least: a COPY stalled on a fault needs its source and its destination page.</summary>
    public const int MinimumOnDemandPagesPerQueue = Mmu.OnDemandPager.MinimumBudget;

    /// <summary>Board, model, or auto (board when usable, else model).</summary>
    public BackendKind Backend { get; init; } = BackendKind.Auto;

    /// <summary>PCI address (domain:bus:device.function) of the board; null finds it by IDs.</summary>
    public string? PciAddress { get; init; }

    /// <summary>PCI vendor ID to look for (spec 1: options, not constants).</summary>
    public ushort VendorId { get; init; } = Fa1Identity.DefaultVendorId;

    /// <summary>PCI device ID to look for.</summary>
    public ushort DeviceId { get; init; } = Fa1Identity.DefaultDeviceId;

    /// <summary>Root of sysfs; tests point it at a fixture tree.</summary>
    public string SysfsRoot { get; init; } = "/sys";

    /// <summary>Root of the device nodes (where vfio/vfio lives).</summary>
    public string DevRoot { get; init; } = "/dev";

    /// <summary>Settings of the model, when the model is used.</summary>
    public ModelOptions Model { get; init; } = new();

    /// <summary>How long a reset may take before open fails.</summary>
    public TimeSpan ResetTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long the device may take for a fence, a ring drain or a command before it is declared hung.</summary>
    public TimeSpan DeviceTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How often the health check runs while anything waits on the device (commands in flight, submitters waiting for
    /// ring space, fence waiters): it reads ID and STATUS, harvests completion rings whose interrupt was lost, wakes the
    /// fault service when FQ_TAIL moved, and checks command deadlines. It does not run while the device is idle.
    /// Loss is detected within about one interval.
    /// </summary>
    public TimeSpan HealthCheckInterval { get; init; } = TimeSpan.FromMilliseconds(25);

    /// <summary>
    /// When the device is lost, FATAL or hung, recover it without being asked (<see cref="FpgaDevice.Recover"/>), retrying
    /// with a backoff from <see cref="RecoverBackoff"/> doubling up to <see cref="RecoverBackoffMax"/>, at most
    /// <see cref="AutoRecoverAttempts"/> times; the device then stays in its failed state.
    /// </summary>
    public bool AutoRecover { get; init; }

    /// <summary>How long <see cref="FpgaDevice.Recover"/> waits for a lost device to come back (spec 8: a management reset drops it for about a second).</summary>
    public TimeSpan RecoverTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>First wait between automatic recovery attempts.</summary>
    public TimeSpan RecoverBackoff { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Longest wait between automatic recovery attempts.</summary>
    public TimeSpan RecoverBackoffMax { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Automatic recovery attempts after one failure before the driver gives up (the device stays failed; Recover() may still be called).</summary>
    public int AutoRecoverAttempts { get; init; } = 10;

    /// <summary>
    /// The pinned-bytes limit. Null: RLIMIT_MEMLOCK, not enforced for a process with CAP_IPC_LOCK or
    /// an unlimited limit, exactly as VFIO type1 does. Set it to enforce a limit of your own: it stands in for
    /// RLIMIT_MEMLOCK, so it is compared with what the whole process pins through every device it has open.
    /// </summary>
    public ulong? MemlockLimitBytes { get; init; }

    /// <summary>
    /// Pages that may be pinned on demand at once, device-wide; beyond it the least recently faulted page is evicted. At
    /// least 2 per queue opened (a stalled COPY needs both its pages), and at most half the locked-memory limit (a larger
    /// value is clamped, with a warning).
    /// </summary>
    public int OnDemandBudgetPages { get; init; } = 4096;

    /// <summary>
    /// Pages a fault in an on-demand region maps at once, unless the region says otherwise
    /// (<see cref="Mmu.OnDemandRegion.FaultAroundPages"/>): a power of two from 1 (fault-around off) to 64. The default,
    /// 16 pages (64 KiB), is the kernel's fault_around_bytes (issue 15, decision F1).
    /// </summary>
    public int FaultAroundPages { get; init; } = 16;

    /// <summary>The register interface this driver needs (spec 3 rule: same major, minor at least this).</summary>
    public Fa1Version RequiredVersion { get; init; } = Fa1Version.MinimumSupported;

    /// <summary>Where the driver logs.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    /// <summary>Parses a backend name as the CLI takes it.</summary>
    public static BackendKind ParseBackend(string name) => name?.Trim().ToLowerInvariant() switch
    {
        "auto" => BackendKind.Auto,
        "board" => BackendKind.Board,
        "model" => BackendKind.Model,
        _ => throw new UnknownBackendException(name ?? "(null)"),
    };

    internal void Validate()
    {
        if (ResetTimeout <= TimeSpan.Zero || ResetTimeout > TimeSpan.FromMinutes(5))
        {
            throw new InvalidDeviceOptionException(nameof(ResetTimeout), ResetTimeout, "it must be above zero and at most 5 minutes");
        }

        if (DeviceTimeout <= TimeSpan.Zero || DeviceTimeout > TimeSpan.FromMinutes(10))
        {
            throw new InvalidDeviceOptionException(nameof(DeviceTimeout), DeviceTimeout, "it must be above zero and at most 10 minutes");
        }

        if (HealthCheckInterval < TimeSpan.FromMilliseconds(1) || HealthCheckInterval > TimeSpan.FromSeconds(10))
        {
            throw new InvalidDeviceOptionException(nameof(HealthCheckInterval), HealthCheckInterval, "it must be 1 ms to 10 s (loss is detected within about one interval)");
        }

        if (RecoverTimeout <= TimeSpan.Zero || RecoverTimeout > TimeSpan.FromMinutes(5))
        {
            throw new InvalidDeviceOptionException(nameof(RecoverTimeout), RecoverTimeout, "it must be above zero and at most 5 minutes");
        }

        if (RecoverBackoff < TimeSpan.FromMilliseconds(1) || RecoverBackoffMax < RecoverBackoff || RecoverBackoffMax > TimeSpan.FromMinutes(5))
        {
            throw new InvalidDeviceOptionException(nameof(RecoverBackoff), $"{RecoverBackoff}..{RecoverBackoffMax}", "the backoff starts at 1 ms or more and RecoverBackoffMax is at least RecoverBackoff and at most 5 minutes");
        }

        if (AutoRecoverAttempts is < 1 or > 1000)
        {
            throw new InvalidDeviceOptionException(nameof(AutoRecoverAttempts), AutoRecoverAttempts, "it must be 1 to 1000");
        }

        if (OnDemandBudgetPages is < Mmu.OnDemandPager.MinimumBudget or > 1 << 24)
        {
            throw new InvalidDeviceOptionException(nameof(OnDemandBudgetPages), OnDemandBudgetPages,
                $"it must be {Mmu.OnDemandPager.MinimumBudget} to 16777216 pages: a COPY stalled on a fault needs its source and its destination page at once, " +
                $"so each open queue needs {Mmu.OnDemandPager.MinimumBudget}");
        }

        if (FaultAroundPages < 1 || FaultAroundPages > Mmu.DeviceContext.MaxFaultAroundPages || (FaultAroundPages & (FaultAroundPages - 1)) != 0)
        {
            throw new InvalidDeviceOptionException(nameof(FaultAroundPages), FaultAroundPages,
                $"fault-around is a power of two from 1 (off) to {Mmu.DeviceContext.MaxFaultAroundPages} pages; to map more ahead of a DMA, use OnDemandRegion.Prefetch");
        }

        if (!Enum.IsDefined(Backend))
        {
            throw new UnknownBackendException(Backend.ToString());
        }

        if (LoggerFactory is null)
        {
            throw new InvalidDeviceOptionException(nameof(LoggerFactory), null, "give a logger factory (NullLoggerFactory.Instance to log nothing)");
        }

        if (Model is null)
        {
            throw new InvalidDeviceOptionException(nameof(Model), null, "give the model's settings (new ModelOptions() for the spec's defaults)");
        }

        try
        {
            Model.Validate();
        }
        catch (ArgumentOutOfRangeException ex)
        {
            throw new InvalidDeviceOptionException(nameof(Model) + "." + ex.ParamName, ex.ActualValue, ex.Message.Split(" (Parameter", 2)[0].TrimEnd('.'));
        }

        if (string.IsNullOrWhiteSpace(SysfsRoot))
        {
            throw new InvalidDeviceOptionException(nameof(SysfsRoot), SysfsRoot, "give the root of sysfs (/sys, or a fixture tree)");
        }

        if (string.IsNullOrWhiteSpace(DevRoot))
        {
            throw new InvalidDeviceOptionException(nameof(DevRoot), DevRoot, "give the root of the device nodes (/dev, or a fixture tree)");
        }

        if (PciAddress is not null && !Board.PciAddress.TryParse(PciAddress, out _))
        {
            throw new InvalidDeviceOptionException(nameof(PciAddress), PciAddress, "write the board's address like 0000:03:00.0 (domain:bus:device.function, hex), or leave it null to find the board by its IDs");
        }

        // Spec 2: all ones is what an absent PCI function reads; no device has it as an ID.
        if (VendorId == 0xFFFF)
        {
            throw new InvalidDeviceOptionException(nameof(VendorId), "0xFFFF", "0xFFFF is what a missing PCI function reads, not a vendor ID; the FA-1's is 0x10EE");
        }

        if (DeviceId == 0xFFFF)
        {
            throw new InvalidDeviceOptionException(nameof(DeviceId), "0xFFFF", "0xFFFF is what a missing PCI function reads, not a device ID; the FA-1's is 0xFA01");
        }

        if (MemlockLimitBytes is < PageTableFormat.PageSize)
        {
            throw new InvalidDeviceOptionException(nameof(MemlockLimitBytes), MemlockLimitBytes, "a limit below one 4 KiB page refuses every pin; give at least 4096 bytes, or null for RLIMIT_MEMLOCK");
        }
    }
}
