using FpgaAccel.Cli;

return FpgaAccelCli.Run(args, Console.Out, Console.Error);
