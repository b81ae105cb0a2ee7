using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver;

/// <summary>Base of every error the driver raises on purpose. Messages name the value, the rule and the fix.</summary>
public class FpgaAccelException : Exception
{
    /// <summary>An error whose <paramref name="message"/> already names the value, the rule and the fix.</summary>
    public FpgaAccelException(string message)
        : base(message)
    {
    }

    /// <summary>As above, keeping the lower-level error (a VFIO or system call failure) that caused it.</summary>
    public FpgaAccelException(string message, Exception inner)
        : base(message, inner)
    {
    }
}

/// <summary>The device reads all ones: it dropped off the bus (spec 2).</summary>
public sealed class DeviceLostException : FpgaAccelException
{
    /// <summary>The device read all ones <paramref name="when"/> (what the driver was doing) on <paramref name="backend"/>.</summary>
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
    /// <summary>The ID register of <paramref name="backend"/> read <paramref name="id"/>.</summary>
    public UnexpectedDeviceIdException(ulong id, string backend)
        : base($"The device ({backend}) has ID 0x{id:X16}, not the FA-1's 0x{Fa1Identity.IdValue:X16} (spec 3). " +
               "The bitstream loaded is not an FA-1; load the FA-1 bitstream or select the right device with --device.")
    {
        Id = id;
    }

    /// <summary>The value the ID register held.</summary>
    public ulong Id { get; }
}

/// <summary>VERSION fails the spec's rule: same major, minor at least the driver's.</summary>
public sealed class IncompatibleDeviceVersionException : FpgaAccelException
{
    /// <summary>The <paramref name="device"/>'s VERSION does not satisfy the <paramref name="required"/> one.</summary>
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

    /// <summary>The register interface the device implements.</summary>
    public Fa1Version DeviceVersion { get; }

    /// <summary>The register interface this driver was asked to require (<see cref="FpgaDeviceOptions.RequiredVersion"/>).</summary>
    public Fa1Version RequiredVersion { get; }
}

/// <summary>A reset did not complete in time.</summary>
public sealed class DeviceResetTimeoutException : FpgaAccelException
{
    /// <summary>STATUS still read <paramref name="status"/> after <paramref name="timeout"/>.</summary>
    public DeviceResetTimeoutException(TimeSpan timeout, ulong status)
        : base($"The FA-1 did not finish its reset within {timeout.TotalMilliseconds:0.#} ms (STATUS = 0x{status:X}: " +
               $"{(StatusBits)status}). Raise FpgaDeviceOptions.ResetTimeout if the bitstream resets slowly, " +
               "or cold-reset the board through its management port.")
    {
        Timeout = timeout;
        Status = status;
    }

    /// <summary>How long the driver waited for STATUS.READY.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>The last STATUS value read, to tell a device still resetting from one that never started.</summary>
    public ulong Status { get; }
}

/// <summary>A backend name that is not auto, board or model.</summary>
public sealed class UnknownBackendException : FpgaAccelException
{
    /// <summary>The backend <paramref name="name"/> given is not one of auto, board, model.</summary>
    public UnknownBackendException(string name)
        : base($"Unknown backend '{name}': it must be one of auto, board, model.")
    {
        Name = name;
    }

    /// <summary>The name that was given.</summary>
    public string Name { get; }
}

/// <summary>The board was asked for and none is usable. The message lists what was looked for.</summary>
public sealed class BoardNotFoundException : FpgaAccelException
{
    /// <summary>No usable board; <paramref name="message"/> lists what was looked for, what was found and how to bind one.</summary>
    public BoardNotFoundException(string message)
        : base(message)
    {
    }
}

/// <summary>A setting of <see cref="FpgaDeviceOptions"/> is out of range.</summary>
public sealed class InvalidDeviceOptionException : FpgaAccelException
{
    /// <summary>The setting <paramref name="option"/> has <paramref name="value"/>, which breaks <paramref name="rule"/>.</summary>
    public InvalidDeviceOptionException(string option, object? value, string rule)
        : base($"Option {option} = {value ?? "null"} is invalid: {rule}.")
    {
        Option = option;
    }

    /// <summary>The name of the setting that is out of range, as the caller or the CLI spells it.</summary>
    public string Option { get; }
}

/// <summary>The device reported a fatal error (STATUS.FATAL, spec 3).</summary>
public sealed class DeviceFatalException : FpgaAccelException
{
    /// <summary>The device is FATAL with the cause and detail in <paramref name="error"/>.</summary>
    public DeviceFatalException(ErrorRegister error)
        : base($"The FA-1 is in a fatal state: cause {error.Cause} ({(uint)error.Cause}), detail 0x{error.Detail:X8}{Explain(error)}. " +
               "Fix the cause, then call FpgaDevice.Recover() (or open the device with AutoRecover) and resubmit.")
    {
        Error = error;
    }

    /// <summary>The ERROR register the device reported: cause and detail (spec 3).</summary>
    public ErrorRegister Error { get; }

    /// <summary>ERROR[31:0]: why the device went FATAL.</summary>
    public FatalCause Cause => Error.Cause;

    /// <summary>ERROR[63:32]: for an unmapped IOVA, its page number (IOVA &gt;&gt; 12, low 32 bits).</summary>
    public uint Detail => Error.Detail;

    private static string Explain(ErrorRegister error) => error.Cause switch
    {
        FatalCause.UnmappedIova => $" (the device read a ring or page table at IOVA page 0x{error.Detail:X}, which the IOMMU does not map)",
        FatalCause.BadRingConfiguration => " (a ring was configured with a base or size the device refuses)",
        FatalCause.Internal => " (an internal error of the device)",
        _ => string.Empty,
    };
}

/// <summary>
/// The device stopped making progress (issue 12): a command, a TLB fence or a reset passed its deadline, or the
/// device overwrote fault records before they were read. The device is declared <see cref="DeviceState.Hung"/>.
/// </summary>
public sealed class DeviceHungException : FpgaAccelException
{
    /// <summary><paramref name="what"/> did not finish within <paramref name="timeout"/>; <paramref name="state"/> says what the device showed.</summary>
    public DeviceHungException(string what, TimeSpan timeout, string state)
        : base($"The FA-1 is hung: the {what} did not finish within {timeout.TotalMilliseconds:0.#} ms ({state}). " +
               "Every waiter was released; call FpgaDevice.Recover() (or open the device with AutoRecover) and resubmit; raise FpgaDeviceOptions.DeviceTimeout if the device is only slow.")
    {
        What = what;
        Timeout = timeout;
    }

    /// <summary>The device lost track of work it owes an answer for (<paramref name="what"/>): <paramref name="detail"/>.</summary>
    public DeviceHungException(string what, string detail)
        : base($"The FA-1 is hung: {what} ({detail}). Every waiter was released; call FpgaDevice.Recover() (or open the device with AutoRecover) and resubmit.")
    {
        What = what;
    }

    /// <summary>What timed out: a command (its queue and tag), a TLB fence, a reset, or the fault ring.</summary>
    public string What { get; }

    /// <summary>The deadline it passed.</summary>
    public TimeSpan Timeout { get; }
}

/// <summary>The platform IOMMU refused to map or unmap a DMA range (VFIO_IOMMU_MAP_DMA on the board, the model's IOMMU in CI).</summary>
public sealed class DmaMappingException : FpgaAccelException
{
    /// <summary>Mapping or unmapping <paramref name="length"/> bytes at <paramref name="iova"/> failed with <paramref name="errnoName"/>.</summary>
    public DmaMappingException(ulong iova, ulong length, string errnoName, string detail, Exception? inner = null)
        : base($"DMA mapping of IOVA 0x{iova:X} (+{length} bytes) refused ({errnoName}): {detail} " + Fix(errnoName), inner ?? new InvalidOperationException(detail))
    {
        Iova = iova;
        Length = length;
        ErrnoName = errnoName;
    }

    /// <summary>Start of the IOVA range the IOMMU refused.</summary>
    public ulong Iova { get; }

    /// <summary>Bytes in the refused range.</summary>
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

/// <summary>A pin would take the pinned total over the locked-memory limit (RLIMIT_MEMLOCK, as VFIO type1 enforces it).</summary>
public sealed class PinLimitExceededException : FpgaAccelException
{
    /// <summary>Pinning <paramref name="requested"/> bytes on top of <paramref name="pinned"/> would pass <paramref name="limit"/> (from <paramref name="limitSource"/>).</summary>
    public PinLimitExceededException(ulong requested, ulong pinned, ulong limit, string limitSource)
        : base($"Pinning {requested} more bytes would make {pinned + requested} bytes pinned by this process (every FA-1 it has open), over the locked-memory limit of {limit} bytes " +
               $"({limitSource}). Raise it (ulimit -l {((pinned + requested) / 1024) + 1} or more, or 'memlock' in /etc/security/limits.conf; " +
               "CAP_IPC_LOCK lifts it), or pin less.")
    {
        Requested = requested;
        Pinned = pinned;
        Limit = limit;
    }

    /// <summary>Bytes the refused pin would have added.</summary>
    public ulong Requested { get; }

    /// <summary>Bytes the process had pinned (through every device) when the pin was refused.</summary>
    public ulong Pinned { get; }

    /// <summary>The locked-memory limit in bytes the pins are charged against.</summary>
    public ulong Limit { get; }
}

/// <summary>The device did not do something within the time it should.</summary>
public sealed class DeviceTimeoutException : FpgaAccelException
{
    /// <summary><paramref name="what"/> did not complete within <paramref name="timeout"/>; <paramref name="state"/> says what the device showed.</summary>
    public DeviceTimeoutException(string what, TimeSpan timeout, string state)
        : base($"The FA-1 did not complete the {what} within {timeout.TotalMilliseconds:0.#} ms ({state}). " +
               "The device may be hung: check STATUS with 'fpgaaccel info', then reset it; raise FpgaDeviceOptions.DeviceTimeout if it is only slow.")
    {
        What = what;
    }

    /// <summary>The operation that timed out (a fence, a ring drain, a command).</summary>
    public string What { get; }
}

/// <summary>The device reported something the spec does not allow (an index, tag or count out of range).</summary>
public sealed class DeviceProtocolException : FpgaAccelException
{
    /// <summary>The device broke the spec; <paramref name="message"/> names the value, the rule and what was done about it.</summary>
    public DeviceProtocolException(string message)
        : base(message)
    {
    }
}

/// <summary>A pin request that breaks a rule (zero length, overflow, freed memory, unmappable IOVA...).</summary>
public sealed class PinRejectedException : FpgaAccelException
{
    /// <summary>The pin of <paramref name="length"/> bytes at <paramref name="address"/> breaks <paramref name="rule"/>; <paramref name="fix"/> says what to do.</summary>
    public PinRejectedException(nint address, ulong length, string rule, string fix)
        : base($"Cannot pin [0x{address:X}, +{length} bytes): {rule}. {fix}")
    {
        Address = address;
        Length = length;
    }

    /// <summary>Start of the range the caller asked to pin.</summary>
    public nint Address { get; }

    /// <summary>Bytes the caller asked to pin.</summary>
    public ulong Length { get; }
}

/// <summary>A pin handle that is not live in this context (unpinned already, or from another context or device).</summary>
public sealed class InvalidPinHandleException : FpgaAccelException
{
    /// <summary>The pin <paramref name="handle"/> (as printed) cannot be used because of <paramref name="reason"/>.</summary>
    public InvalidPinHandleException(string handle, string reason)
        : base($"Pin handle {handle} cannot be used: {reason}. Keep each PinnedBuffer until you unpin it once, in its own context.")
    {
    }
}

/// <summary>An operation on a context, queue or device that was disposed.</summary>
public sealed class DisposedResourceException : FpgaAccelException
{
    /// <summary><paramref name="what"/> (a context, queue or device) was used after it was disposed.</summary>
    public DisposedResourceException(string what)
        : base($"{what} is disposed and cannot be used. Create a new one.")
    {
    }
}

/// <summary>No hardware context is free.</summary>
public sealed class NoFreeContextException : FpgaAccelException
{
    /// <summary>Every one of the device's <paramref name="contexts"/> contexts is in use.</summary>
    public NoFreeContextException(int contexts)
        : base($"All {contexts} device contexts are in use (CAPS.contexts = {contexts}). Dispose a context you no longer need.")
    {
    }
}

/// <summary>
/// Opening the board through VFIO failed at one step. The message names the board, the step, what the kernel
/// said and the fix; the VFIO error is the inner exception.
/// </summary>
public class BoardOpenException : FpgaAccelException
{
    /// <summary>Opening the board at <paramref name="address"/> failed at <paramref name="step"/>; <paramref name="detail"/> is what the kernel said and the fix.</summary>
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
    /// <summary>Opening <paramref name="path"/>, the group node of the board at <paramref name="address"/>, was refused.</summary>
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
    /// <summary>IOMMU <paramref name="group"/> of the board at <paramref name="address"/> holds the <paramref name="blocking"/> devices, bound to other drivers.</summary>
    public BoardGroupNotViableException(string address, int group, IEnumerable<string> blocking)
        : base($"The IOMMU group {group} of the FA-1 at {address} is not viable: {string.Join(", ", blocking)} " +
               "is bound to a driver other than vfio-pci. Every device of the group must be bound to vfio-pci or to no driver: " +
               "unbind it (echo <address> > /sys/bus/pci/devices/<address>/driver/unbind) or bind it to vfio-pci too, " +
               "or move the board to a slot with its own IOMMU group.")
    {
        Address = address;
        Group = group;
    }

    /// <summary>The board's PCI address.</summary>
    public string Address { get; }

    /// <summary>The IOMMU group that is not viable.</summary>
    public int Group { get; }
}

/// <summary>
/// The device reported a capability or a clock the driver cannot use (CAPS or CLOCK_HZ out of range): refused at open,
/// before any shift, index or division uses it.
/// </summary>
public sealed class InvalidCapabilitiesException : FpgaAccelException
{
    /// <summary>The device's <paramref name="field"/> reads <paramref name="value"/> (from a register that reads <paramref name="register"/>), which breaks <paramref name="rule"/>.</summary>
    public InvalidCapabilitiesException(string field, ulong value, ulong register, string rule)
        : base($"The device reports {field} = {value} (register value 0x{register:X16}), but {rule}. " +
               "The bitstream is malformed or not an FA-1 1.x the driver can use: reload the FA-1 bitstream (or fix the model's settings).")
    {
        Field = field;
        Value = value;
    }

    /// <summary>The field out of range, as the spec names it (VA bits, IOVA bits, TLB ways, TLB sets, contexts, queues, CLOCK_HZ).</summary>
    public string Field { get; }

    /// <summary>The value the device reported.</summary>
    public ulong Value { get; }
}

/// <summary>A host buffer asked for hugetlbfs pages the reserved pool could not give (decision F9).</summary>
public sealed class HugePagesUnavailableException : FpgaAccelException
{
    /// <summary>A buffer of <paramref name="length"/> bytes needed <paramref name="needed"/> huge pages; <paramref name="free"/> were free.</summary>
    public HugePagesUnavailableException(ulong length, ulong needed, long free, Exception inner)
        : base($"A host buffer of {length} bytes in 2 MiB huge pages needs {needed} free pages of the reserved pool and it has {free} " +
               $"(mmap(MAP_HUGETLB): {inner.Message}). Reserve them as root (echo {needed} > /proc/sys/vm/nr_hugepages, or hugepages= on the " +
               "kernel command line), or allocate with HostBufferPages.Auto to fall back to transparent huge pages.", inner)
    {
        Needed = needed;
        Free = free;
    }

    /// <summary>Huge pages the buffer needed.</summary>
    public ulong Needed { get; }

    /// <summary>Free pages the pool had when the allocation was refused.</summary>
    public long Free { get; }
}

