using FpgaAccel.Cli;
using NUnit.Framework;

namespace FpgaAccel.Tests.Cli;

public class JitterCommandTests
{
    // Issue 11, defect 12: a budget too small for a COPY between two on-demand buffers livelocked (each fault evicted the
    // other side's page); it is now refused as bad usage, naming the minimum, before any work starts.
    [Test]
    public async Task OnDemandWithABudgetOfOnePageEndsAsBadUsage()
    {
        var run = Task.Run(() => Run("jitter", "--backend", "model", "--clock", "virtual", "--mode", "ondemand", "--budget", "1", "--count", "20", "--warmup", "0"));
        Assert.That(await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(60))), Is.SameAs(run), "jitter --budget 1 did not end");
        var (code, _, error) = await run;
        Assert.That(code, Is.EqualTo(2), error);
        Assert.That(error, Does.Contain("budget").And.Contain("2"));
        Assert.That(error, Does.Not.Contain("   at "), "no stack trace");
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = FpgaAccelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
