using System.Diagnostics;

namespace FpgaAccel.VlabGuest;

/// <summary>
/// Runs the real <c>fpgaaccel</c> tool, published next to this program, as its own process
/// with a bounded wait; its output goes under the current check.
/// </summary>
internal static class FpgaAccelTool
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(120);

    /// <summary>
    /// Runs fpgaaccel with <paramref name="arguments"/>, bounded; returns its exit code and standard output.
    /// With <paramref name="show"/>, prints the command and everything it wrote; without, an exit code
    /// above 1 (usage error, crash) fails the check.
    /// </summary>
    public static (int ExitCode, string Output) Run(CheckRunner runner, string[] arguments, bool show, TimeSpan? timeout = null)
    {
        var limit = timeout ?? s_timeout;
        var tool = Path.Combine(AppContext.BaseDirectory, "fpgaaccel");
        Expect.True(File.Exists(tool), $"{tool} is missing; tests/vlab/vlab.sh publishes it next to vlab-guest");
        var start = new ProcessStartInfo(tool)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        if (show)
        {
            runner.Note($"$ fpgaaccel {string.Join(' ', arguments)}");
        }

        using var process = Process.Start(start) ?? throw new CheckFailedException($"could not start {tool}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(TimeSpan.FromSeconds(5));
            throw new CheckFailedException($"fpgaaccel {string.Join(' ', arguments)} did not finish within {limit.TotalSeconds} s; killed");
        }

        // Both pipes close when the process exits; the reads finish at once.
        Expect.True(Task.WaitAll([stdout, stderr], TimeSpan.FromSeconds(5)), "fpgaaccel exited but its output pipes stayed open");
        if (show)
        {
            foreach (var line in (stdout.Result + stderr.Result).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                runner.Note("  " + line.TrimEnd('\r'));
            }

            runner.Note($"  (exit code {process.ExitCode})");
        }
        else if (process.ExitCode > 1)
        {
            throw new CheckFailedException($"fpgaaccel {string.Join(' ', arguments)} exited with {process.ExitCode}: {stderr.Result.Trim()}");
        }

        return (process.ExitCode, stdout.Result);
    }
}
