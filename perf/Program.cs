using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace FpgaAccel.Perf;

public static class Program
{
    public static int Main(string[] args)
    {
        // In-process: the machines here have two cores and no spare time for a child build per benchmark,
        // and BenchmarkDotNet 0.14 does not know the net10.0 moniker for its out-of-process toolchain.
        var short_ = args.Contains("--short");
        var rest = args.Where(a => a != "--short").ToArray();
        var job = (short_ ? Job.ShortRun : Job.Default).WithToolchain(InProcessEmitToolchain.Instance);
        var config = DefaultConfig.Instance
            .AddJob(job)
            .AddDiagnoser(MemoryDiagnoser.Default)
            .WithOptions(ConfigOptions.DisableOptimizationsValidator);
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(rest, config);
        return summaries.Any(s => s.HasCriticalValidationErrors) ? 1 : 0;
    }
}
