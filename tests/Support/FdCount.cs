namespace FpgaAccel.Tests.Support;

/// <summary>Counts this process's open descriptors through /proc/self/fd.</summary>
internal static class FdCount
{
    public static int Now() => Directory.GetFileSystemEntries("/proc/self/fd").Length;

    /// <summary>
    /// The runtime opens descriptors of its own now and then (thread pool, diagnostics), so a leak check
    /// settles first: it retries for a moment until the count is back at or below the baseline.
    /// </summary>
    public static int SettledAtMost(int baseline)
    {
        var count = Now();
        for (var i = 0; i < 50 && count > baseline; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Thread.Sleep(10);
            count = Now();
        }

        return count;
    }
}
