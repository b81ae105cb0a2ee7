using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver;

/// <summary>Base of every error the driver raises on purpose. Messages name the value, the rule and the fix.</summary>
public class FpgaAccelException : Exception
{
    public FpgaAccelException(string message)
        : base(message)
    {
    }

    public FpgaAccelException(string message, Exception inner)
        : base(message, inner)
    {
    }
}

/// <summary>The device reads all ones: it dropped off the bus (spec 2).</summary>
public sealed class DeviceLostException : FpgaAccelException
{
    public DeviceLostException(string when, string backend)
        : base($"The FA-1 ({backend}) reads 0xFFFFFFFFFFFFFFFF {when}: it has dropped off the bus (surprise removal, link down, " +
               "or a cold reset from the management port). Check the link and the board's power, then open the device again.")
    {
        When = when;
    }

    /// <summary>What the driver was doing when it saw the device gone.</summary>
    public string When { get; }
}

/// <summary>The ID register does not hold the FA-1's value.</summary>
public sealed class UnexpectedDeviceIdException : FpgaAccelException
{
    public UnexpectedDeviceIdException(ulong id, string backend)
        : base($"The device ({backend}) has ID 0x{id:X16}, not the FA-1's 0x{Fa1Identity.IdValue:X16} (spec 3). " +
               "The bitstream loaded is not an FA-1; load the FA-1 bitstream or select the right device with --device.")
    {
        Id = id;
    }

    public ulong Id { get; }
}

/// <summary>VERSION fails the spec's rule: same major, minor at least the driver's.</summary>
public sealed class IncompatibleDeviceVersionException : FpgaAccelException
{
    public IncompatibleDeviceVersionException(Fa1Version device, Fa1Version required)
        : base($"The device implements register interface {device}, this driver needs {required.Major}.{required.Minor} or a later " +
               $"{required.Major}.x (spec 3: same major, minor at least {required.Minor}). " +
               (device.Major != required.Major
                   ? $"Use a driver built for interface {device.Major}.x, or load a bitstream of interface {required.Major}.x."
                   : $"Load a bitstream of interface {required.Major}.{required.Minor} or later."))
    {
        DeviceVersion = device;
        RequiredVersion = required;
    }

    public Fa1Version DeviceVersion { get; }

    public Fa1Version RequiredVersion { get; }
}

/// <summary>A reset did not complete in time.</summary>
public sealed class DeviceResetTimeoutException : FpgaAccelException
{
    public DeviceResetTimeoutException(TimeSpan timeout, ulong status)
        : base($"The FA-1 did not finish its reset within {timeout.TotalMilliseconds:0.#} ms (STATUS = 0x{status:X}: " +
               $"{(StatusBits)status}). Raise FpgaDeviceOptions.ResetTimeout if the bitstream resets slowly, " +
               "or cold-reset the board through its management port.")
    {
        Timeout = timeout;
        Status = status;
    }

    public TimeSpan Timeout { get; }

    public ulong Status { get; }
}

/// <summary>A backend name that is not auto, board or model.</summary>
public sealed class UnknownBackendException : FpgaAccelException
{
    public UnknownBackendException(string name)
        : base($"Unknown backend '{name}': it must be one of auto, board, model.")
    {
        Name = name;
    }

    public string Name { get; }
}

/// <summary>The board was asked for and none is usable. The message lists what was looked for.</summary>
public sealed class BoardNotFoundException : FpgaAccelException
{
    public BoardNotFoundException(string message)
        : base(message)
    {
    }
}

/// <summary>A setting of <see cref="FpgaDeviceOptions"/> is out of range.</summary>
public sealed class InvalidDeviceOptionException : FpgaAccelException
{
    public InvalidDeviceOptionException(string option, object? value, string rule)
        : base($"Option {option} = {value ?? "null"} is invalid: {rule}.")
    {
        Option = option;
    }

    public string Option { get; }
}

/// <summary>The device reported a fatal error (STATUS.FATAL, spec 3).</summary>
public sealed class DeviceFatalException : FpgaAccelException
{
    public DeviceFatalException(ErrorRegister error)
        : base($"The FA-1 is in a fatal state: cause {error.Cause} ({(uint)error.Cause}), detail 0x{error.Detail:X8}. " +
               "Reset the device (dispose and open it again) after fixing the cause.")
    {
        Error = error;
    }

    public ErrorRegister Error { get; }
}

/// <summary>The platform IOMMU refused to map or unmap a DMA range (VFIO_IOMMU_MAP_DMA on the board, the model's IOMMU in CI).</summary>
public sealed class DmaMappingException : FpgaAccelException
{
    public DmaMappingException(ulong iova, ulong length, string errnoName, string detail, Exception? inner = null)
        : base($"DMA mapping of IOVA 0x{iova:X} (+{length} bytes) refused ({errnoName}): {detail} " + Fix(errnoName), inner ?? new InvalidOperationException(detail))
    {
        Iova = iova;
        Length = length;
        ErrnoName = errnoName;
    }

    public ulong Iova { get; }

    public ulong Length { get; }

    /// <summary>The errno VFIO answered (or the model's equivalent).</summary>
    public string ErrnoName { get; }

    private static string Fix(string errno) => errno switch
    {
        "ENOMEM" => "The locked-memory limit is reached: raise RLIMIT_MEMLOCK (ulimit -l, or memlock in /etc/security/limits.conf) or pin less.",
        "EEXIST" => "The IOVA range is already mapped: this is a driver bug (IOVA allocated twice).",
        "EINVAL" => "Use 4 KiB-aligned addresses and lengths inside the IOMMU's valid IOVA ranges.",
        "EPERM" or "EACCES" => "The process may not map DMA: check access to /dev/vfio/<group>.",
        _ => "See the IOMMU's kernel log (dmesg) for the cause.",
    };
}

/// <summary>
/// Opening the board through VFIO failed at one step. The message names the board, the step, what the kernel
/// said and the fix; the VFIO error is the inner exception.
/// </summary>
public class BoardOpenException : FpgaAccelException
{
    public BoardOpenException(string address, string step, string detail, Exception? inner = null)
        : base($"Opening the FA-1 at {address} through VFIO failed while {step}: {detail}", inner ?? new InvalidOperationException(detail))
    {
        Address = address;
        Step = step;
    }

    /// <summary>The board's PCI address.</summary>
    public string Address { get; }

    /// <summary>What the driver was doing.</summary>
    public string Step { get; }
}

/// <summary>This user may not open the board's VFIO group node (EPERM/EACCES on /dev/vfio/N).</summary>
public sealed class BoardAccessDeniedException : BoardOpenException
{
    public BoardAccessDeniedException(string address, string path, Exception inner)
        : base(address, $"opening {path}",
            $"permission denied on {path}. As root run 'fpgaaccel setup --device {address} --user <you>' (or chown the node, " +
            "or add a udev rule for the vfio group), then try again; 'fpgaaccel doctor' checks it.", inner)
    {
        Path = path;
    }

    /// <summary>The node that could not be opened.</summary>
    public string Path { get; }
}

/// <summary>The board's IOMMU group holds a device bound to a driver other than vfio-pci, so VFIO cannot use it.</summary>
public sealed class BoardGroupNotViableException : FpgaAccelException
{
    public BoardGroupNotViableException(string address, int group, IEnumerable<string> blocking)
        : base($"The IOMMU group {group} of the FA-1 at {address} is not viable: {string.Join(", ", blocking)} " +
               "is bound to a driver other than vfio-pci. Every device of the group must be bound to vfio-pci or to no driver: " +
               "unbind it (echo <address> > /sys/bus/pci/devices/<address>/driver/unbind) or bind it to vfio-pci too, " +
               "or move the board to a slot with its own IOMMU group.")
    {
        Address = address;
        Group = group;
    }

    public string Address { get; }

    public int Group { get; }
}

/// <summary>Setting up a board for VFIO was refused (not root, foreign driver in the group, unknown user...).</summary>
public sealed class BoardSetupException : FpgaAccelException
{
    public BoardSetupException(string message)
        : base(message)
    {
    }
}
