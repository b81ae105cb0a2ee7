using System.Text;
using FpgaAccel.Driver.Board;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Driver.Backends;

/// <summary>
/// Chooses and opens a backend from <see cref="FpgaDeviceOptions"/>: the board when asked for (or, with
/// auto, when a usable one is found), the model otherwise. Logs which and why.
/// </summary>
internal static partial class BackendFactory
{
    public static IDeviceBackend Create(FpgaDeviceOptions options, ILogger logger)
    {
        switch (options.Backend)
        {
            case BackendKind.Model:
                LogModelChosen(logger, "the model was requested");
                return new ModelBackend(options.Model);

            case BackendKind.Board:
                {
                    var search = FindBoard(options);
                    if (search.Usable is null)
                    {
                        throw new BoardNotFoundException(search.Explain(options));
                    }

                    return OpenBoard(search.Usable, options, logger);
                }

            default:
                {
                    var search = FindBoard(options);
                    if (search.Usable is not null)
                    {
                        // A board that is found and usable is used; if opening it then fails, that is an error worth
                        // seeing, not a reason to quietly run on the model.
                        return OpenBoard(search.Usable, options, logger);
                    }

                    LogModelChosen(logger, search.Summary(options));
                    return new ModelBackend(options.Model);
                }
        }
    }

    private static IDeviceBackend OpenBoard(PciFunction function, FpgaDeviceOptions options, ILogger logger)
    {
        LogBoardChosen(logger, function.Address.ToString(), function.IommuGroup ?? -1);
        return BoardBackend.Open(function, options);
    }

    internal static BoardSearch FindBoard(FpgaDeviceOptions options)
    {
        var discovery = new PciDiscovery(options.SysfsRoot);
        IReadOnlyList<PciFunction> candidates;
        if (options.PciAddress is not null)
        {
            var address = PciAddress.Parse(options.PciAddress);
            var one = discovery.Describe(address);
            candidates = one is null ? [] : [one];
        }
        else
        {
            candidates = discovery.FindByIds(options.VendorId, options.DeviceId);
        }

        var container = Path.Combine(options.DevRoot, "vfio", "vfio");
        var containerExists = File.Exists(container) || Path.Exists(container);
        PciFunction? usable = null;
        if (containerExists)
        {
            usable = candidates.FirstOrDefault(f => f.BoundToVfio && f.GroupViable && GroupNode(options, f) is { } node && Path.Exists(node));
        }

        return new BoardSearch(discovery, candidates, container, containerExists, usable);
    }

    /// <summary>The VFIO group node of <paramref name="function"/> (<c>DEV/vfio/N</c>), or null without a group.</summary>
    internal static string? GroupNode(FpgaDeviceOptions options, PciFunction function) =>
        function.IommuGroup is { } g ? Path.Combine(options.DevRoot, "vfio", g.ToString(System.Globalization.CultureInfo.InvariantCulture)) : null;

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Backend: software model, because {Reason}")]
    private static partial void LogModelChosen(ILogger logger, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Backend: board at {Address} (IOMMU group {Group}) through VFIO")]
    private static partial void LogBoardChosen(ILogger logger, string address, int group);

    /// <summary>What a search for a board found, and how to explain a miss.</summary>
    internal sealed record BoardSearch(
        PciDiscovery Discovery,
        IReadOnlyList<PciFunction> Candidates,
        string ContainerPath,
        bool ContainerExists,
        PciFunction? Usable)
    {
        /// <summary>One line: why no board is used.</summary>
        public string Summary(FpgaDeviceOptions options)
        {
            if (Candidates.Count == 0)
            {
                return options.PciAddress is null
                    ? $"no PCI function with IDs {options.VendorId:x4}:{options.DeviceId:x4} is in {Discovery.DevicesDirectory}"
                    : $"no PCI function {options.PciAddress} is in {Discovery.DevicesDirectory}";
            }

            if (!ContainerExists)
            {
                return $"the VFIO container {ContainerPath} does not exist (vfio-pci not loaded, or no IOMMU)";
            }

            var first = Candidates[0];
            if (!first.BoundToVfio)
            {
                return $"{first.Address} is bound to {first.Driver ?? "no driver"}, not vfio-pci";
            }

            if (!first.GroupViable)
            {
                return $"{first.Address} is bound to vfio-pci but its IOMMU group {first.IommuGroup} is not viable: " +
                       string.Join(", ", first.BlockingGroupMembers) + " must be bound to vfio-pci or to no driver";
            }

            return $"{first.Address} is bound to vfio-pci but its group node {Path.GetDirectoryName(ContainerPath)}/{first.IommuGroup} is missing";
        }

        /// <summary>The whole story for an error message: what was looked for, what was found, how to fix it.</summary>
        public string Explain(FpgaDeviceOptions options)
        {
            var text = new StringBuilder();
            text.Append("No usable FA-1 board: ").Append(Summary(options)).Append(". Looked for: ");
            text.Append(options.PciAddress is null
                ? $"PCI functions with vendor 0x{options.VendorId:x4} device 0x{options.DeviceId:x4} in {Discovery.DevicesDirectory}"
                : $"PCI function {options.PciAddress} in {Discovery.DevicesDirectory}");
            text.Append($"; the VFIO container {ContainerPath} ({(ContainerExists ? "present" : "missing")})");
            foreach (var c in Candidates)
            {
                text.Append($"; found {c.Address} bound to {c.Driver ?? "no driver"}, IOMMU group {(c.IommuGroup?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none")}");
                if (c.OtherGroupMembers.Any())
                {
                    text.Append($" (with {string.Join(", ", c.OtherGroupMembers)})");
                }
            }

            text.Append(". To bind one: enable the IOMMU (intel_iommu=on or amd_iommu=on), load vfio-pci, then as root run " +
                        "'fpgaaccel setup --device <address>' (or write vfio-pci to /sys/bus/pci/devices/<address>/driver_override " +
                        "and bind it); 'fpgaaccel doctor' checks each step. Without a board, use --backend model.");
            return text.ToString();
        }
    }
}
