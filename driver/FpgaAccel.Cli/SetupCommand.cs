using System.CommandLine;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Board;
using FpgaAccel.Host;

namespace FpgaAccel.Cli;

/// <summary><c>fpgaaccel setup</c>: bind a board to vfio-pci and give a user its group node (as root).</summary>
internal static class SetupCommand
{
    public static Command Create(CliIo io)
    {
        var system = new SystemOptions();
        var device = new Option<string>("--device") { Description = "PCI address of the board (e.g. 0000:03:00.0).", Required = true }.PciAddress();
        var user = new Option<string?>("--user") { Description = "User to give the board's /dev/vfio/N node to." }.NotEmpty("a user name");
        var command = new Command("setup", "As root: bind the board to vfio-pci (driver_override, drivers_probe), give --user its VFIO group node, and say what the user's RLIMIT_MEMLOCK should be. Safe to run again.");
        command.Options.Add(device);
        command.Options.Add(user);
        command.Options.Add(system.PinBytes);
        command.Options.Add(system.Sysfs);
        command.Options.Add(system.Dev);
        command.SetAction(result =>
        {
            try
            {
                var report = BoardSetup.Run(new BoardSetupOptions
                {
                    PciAddress = result.GetValue(device)!,
                    User = result.GetValue(user),
                    PinBytes = SystemOptions.ParseBytes(result.GetValue(system.PinBytes)!),
                    SysfsRoot = result.GetValue(system.Sysfs)!,
                    DevRoot = result.GetValue(system.Dev)!,
                });
                if (report.Actions.Count == 0)
                {
                    io.Output.WriteLine($"{report.Address} is already bound to vfio-pci (IOMMU group {report.Group}, {report.GroupNode}); nothing to change.");
                }
                else
                {
                    foreach (var action in report.Actions)
                    {
                        io.Output.WriteLine($"- {action}");
                    }

                    io.Output.WriteLine($"{report.Address} is bound to vfio-pci (IOMMU group {report.Group}, {report.GroupNode}).");
                }

                io.Output.WriteLine(report.MemlockAdvice);
                return ExitCodes.Ok;
            }
            catch (UsageException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Usage;
            }
            catch (InvalidPciAddressException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Usage;
            }
            catch (FpgaAccelException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Failed;
            }
            catch (IOException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Failed;
            }
        });
        return command;
    }
}
