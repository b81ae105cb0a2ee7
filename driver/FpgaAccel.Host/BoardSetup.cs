using System.Globalization;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Board;
using FpgaAccel.Interop;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FpgaAccel.Host;

/// <summary>What <see cref="BoardSetup.Run"/> binds, for whom, and where it writes.</summary>
public sealed record BoardSetupOptions
{
    /// <summary>PCI address of the board.</summary>
    public required string PciAddress { get; init; }

    /// <summary>User to give the group node to; null leaves its owner alone.</summary>
    public string? User { get; init; }

    /// <summary>Bytes the user's workload pins (for the RLIMIT_MEMLOCK advice).</summary>
    public ulong PinBytes { get; init; } = Doctor.DefaultPinBytes;

    /// <summary>Root of sysfs; tests point it at a fixture tree (writes then go to files there).</summary>
    public string SysfsRoot { get; init; } = "/sys";

    /// <summary>Root of the device nodes.</summary>
    public string DevRoot { get; init; } = "/dev";

    /// <summary>True when this process is root; default geteuid() == 0. Tests replace it.</summary>
    public Func<bool> IsRoot { get; init; } = () => UnixAccounts.EffectiveUserId == 0;

    /// <summary>Writes one sysfs attribute; default a plain file write. Tests wrap it to play the kernel's part.</summary>
    public Action<string, string> WriteAttribute { get; init; } = (path, value) => File.WriteAllText(path, value);

    /// <summary>Resolves a user name to uid and gid; default getpwnam(3).</summary>
    public Func<string, (uint Uid, uint Gid)?> ResolveUser { get; init; } =
        name => UnixAccounts.TryGetUser(name, out var uid, out var gid) ? (uid, gid) : null;

    /// <summary>Changes a node's owner; default chown(2).</summary>
    public Action<string, uint, uint> ChangeOwner { get; init; } = UnixAccounts.ChangeOwner;

    /// <summary>Where each change setup makes is logged, as it is made.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}

/// <summary>What setup did (nothing, when it was already done) and what the user still has to do.</summary>
/// <param name="Address">The board.</param>
/// <param name="Group">Its IOMMU group.</param>
/// <param name="GroupNode">Its VFIO group node.</param>
/// <param name="Actions">Each change made, in order; empty when everything was already in place.</param>
/// <param name="MemlockAdvice">What the user's RLIMIT_MEMLOCK should be, and how to set it.</param>
public sealed record BoardSetupReport(string Address, int Group, string GroupNode, IReadOnlyList<string> Actions, string MemlockAdvice);

/// <summary>
/// Binds a board to vfio-pci through driver_override (unbind, override, drivers_probe) and gives a user its
/// VFIO group node. Idempotent: what is already so is left alone. Refuses while another device of the group is
/// bound to a non-VFIO driver, since taking that device away from its driver is not this tool's decision.
/// </summary>
public static partial class BoardSetup
{
    /// <summary>
    /// Binds the board and gives the user its node as <paramref name="options"/> say; throws
    /// <see cref="BoardSetupException"/> (or <see cref="BoardNotFoundException"/>) with the reason and the fix when it cannot.
    /// </summary>
    public static BoardSetupReport Run(BoardSetupOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var logger = options.LoggerFactory.CreateLogger(typeof(BoardSetup));
        if (!options.IsRoot())
        {
            throw new BoardSetupException(
                $"fpgaaccel setup changes driver bindings and device node owners, which needs root; this process runs as uid {UnixAccounts.EffectiveUserId}. " +
                $"Run it with sudo: 'sudo fpgaaccel setup --device {options.PciAddress}{(options.User is null ? string.Empty : " --user " + options.User)}'.");
        }

        var address = PciAddress.Parse(options.PciAddress);
        var discovery = new PciDiscovery(options.SysfsRoot);
        var function = discovery.Describe(address) ?? throw new BoardNotFoundException(
            $"No PCI function {address} in {discovery.DevicesDirectory}: check the address with 'lspci -D'.");
        if (function.IommuGroup is not { } group)
        {
            throw new BoardSetupException(
                $"{address} has no IOMMU group: the IOMMU is off, so VFIO cannot use it. Enable VT-d/AMD-Vi and intel_iommu=on or amd_iommu=on, then reboot.");
        }

        var foreign = function.OtherGroupMembers.Where(m => !m.AllowsVfio).ToList();
        if (foreign.Count > 0)
        {
            throw new BoardSetupException(
                $"Refusing to set up {address}: its IOMMU group {group} also holds {string.Join(", ", foreign)}, bound to a driver other than vfio-pci, " +
                "so the group would not be viable and VFIO could not open it. Unbind those devices (or bind them to vfio-pci) yourself if they may go, " +
                "or move the board to a slot with its own IOMMU group; then run setup again.");
        }

        var actions = new List<string>();
        var deviceDir = Path.Combine(discovery.DevicesDirectory, address.ToString());
        var overridePath = Path.Combine(deviceDir, "driver_override");
        if (!function.BoundToVfio)
        {
            if (function.Driver is { } current)
            {
                // Documentation/ABI/testing/sysfs-bus-pci: writing the address to the driver's unbind detaches it.
                Write(options, Path.Combine(deviceDir, "driver", "unbind"), address.ToString(), actions, $"unbound {address} from {current}", logger);
            }

            Write(options, overridePath, PciFunction.VfioPciDriver, actions, $"set {overridePath} to vfio-pci", logger);
            Write(options, Path.Combine(options.SysfsRoot, "bus", "pci", "drivers_probe"), address.ToString(), actions, $"asked the kernel to probe {address} (drivers_probe)", logger);
            function = discovery.Describe(address);
            if (function is null || !function.BoundToVfio)
            {
                throw new BoardSetupException(
                    $"vfio-pci did not claim {address} after drivers_probe (it is bound to {function?.Driver ?? "no driver"}). " +
                    "Load the module ('modprobe vfio-pci'), check 'dmesg' for the reason, and run setup again.");
            }
        }
        else if (ReadAttribute(overridePath) != PciFunction.VfioPciDriver)
        {
            // Bound already; pin the binding so a later rescan or reload keeps it on vfio-pci.
            Write(options, overridePath, PciFunction.VfioPciDriver, actions, $"set {overridePath} to vfio-pci", logger);
        }

        var node = Path.Combine(options.DevRoot, "vfio", group.ToString(CultureInfo.InvariantCulture));
        if (options.User is { } user)
        {
            if (options.ResolveUser(user) is not { } ids)
            {
                throw new BoardSetupException($"No user '{user}' on this host (getpwnam found none): name an existing account with --user.");
            }

            if (!Path.Exists(node))
            {
                throw new BoardSetupException(
                    $"{node} does not exist although {address} is bound to vfio-pci: is the vfio module loaded and /dev mounted? Check 'dmesg'.");
            }

            options.ChangeOwner(node, ids.Uid, ids.Gid);
            actions.Add($"gave {node} to {user} (uid {ids.Uid}, gid {ids.Gid}); a udev rule SUBSYSTEM==\"vfio\", OWNER=\"{user}\" keeps it across reboots");
            LogAction(logger, actions[^1]);
        }

        var kib = (options.PinBytes + 1023) / 1024;
        // limits.conf wants a user name (or @group, or *): without --user, show the line with a placeholder.
        var who = options.User ?? "USER";
        var subject = options.User ?? "The user who runs the driver";
        var advice = $"{subject} needs RLIMIT_MEMLOCK of at least {kib} KiB to pin {options.PinBytes} bytes for DMA: add '{who} soft memlock {kib}' and " +
                     $"'{who} hard memlock {kib}' to /etc/security/limits.conf" + (options.User is null ? " (USER: that user's name)" : string.Empty) +
                     $" and log in again, or LimitMEMLOCK={options.PinBytes} for a systemd unit. 'fpgaaccel doctor' checks it.";
        return new BoardSetupReport(address.ToString(), group, node, actions, advice);
    }

    private static void Write(BoardSetupOptions options, string path, string value, List<string> actions, string what, ILogger logger)
    {
        try
        {
            options.WriteAttribute(path, value);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new BoardSetupException($"Writing '{value}' to {path} failed ({ex.Message}); run as root on a kernel with driver_override (3.16+).");
        }

        actions.Add(what);
        LogAction(logger, what);
    }

    private static string? ReadAttribute(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllText(path).Trim() : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    [LoggerMessage(EventId = 40, Level = LogLevel.Information, Message = "Setup: {Action}")]
    private static partial void LogAction(ILogger logger, string action);
}

/// <summary>Setting up a board for VFIO was refused (not root, foreign driver in the group, unknown user...).</summary>
public sealed class BoardSetupException : FpgaAccelException
{
    /// <summary>Setup refused; <paramref name="message"/> says why and what to do first.</summary>
    public BoardSetupException(string message)
        : base(message)
    {
    }
}
