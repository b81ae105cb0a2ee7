using System.CommandLine;

namespace FpgaAccel.Cli;

/// <summary>The fpgaaccel command tree. Output goes to the writers given, so tests run it in-process.</summary>
internal static class FpgaAccelCli
{
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var common = new CommonOptions();
        var root = new RootCommand("fpgaaccel: user-space driver tools for the FA-1 FPGA accelerator (board through VFIO, or the software model).");
        var io = new CliIo(output, error);
        root.Subcommands.Add(InfoCommand.Create(common, io));
        root.Subcommands.Add(SelfTestCommand.Create(common, io));
        root.Subcommands.Add(StressCommand.Create(common, io));
        root.Subcommands.Add(JitterCommand.Create(common, io));
        root.Subcommands.Add(DoctorCommand.Create(io));
        root.Subcommands.Add(SetupCommand.Create(io));
        root.Subcommands.Add(AsmCommand.Create(io));
        root.Subcommands.Add(BmcCommand.Create(io));
        root.Subcommands.Add(ModelCommand.Create(io));
        // Bad usage of any kind (an unknown command or option, a value that does not parse or breaks its rule, a missing
        // required option) is exit code 2 with the parser's message, before anything runs (README exit codes).
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors)
            {
                error.WriteLine($"fpgaaccel: {e.Message}");
            }

            var command = parse.CommandResult.Command;
            error.WriteLine($"Run 'fpgaaccel{(command == root ? string.Empty : " " + command.Name)} --help' for the options.");
            return ExitCodes.Usage;
        }

        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (Exception ex)
        {
            // Not a usage error and not one of the driver's typed errors (CliRunner reports those): still one line, no
            // stack trace, exit code 1.
            error.WriteLine($"fpgaaccel: {ex.GetType().Name}: {ex.Message}");
            return ExitCodes.Failed;
        }
    }
}

/// <summary>Where a command writes its result and its errors.</summary>
internal sealed record CliIo(TextWriter Output, TextWriter Error);
