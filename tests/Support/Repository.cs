namespace FpgaAccel.Tests.Support;

/// <summary>Where the repository's files are, for tests that read sources, project files or the test tree.</summary>
internal static class Repository
{
    /// <summary>The folder holding FpgaAccel.sln, found upwards from the test assembly.</summary>
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "FpgaAccel.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"No FpgaAccel.sln above {AppContext.BaseDirectory}: run the tests from a build inside the repository.");
    }
}
