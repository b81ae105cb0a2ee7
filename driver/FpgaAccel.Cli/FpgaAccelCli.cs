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
        return root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
    }
}

/// <summary>Where a command writes its result and its errors.</summary>
internal sealed record CliIo(TextWriter Output, TextWriter Error);
