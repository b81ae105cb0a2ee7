using NUnit.Framework;

namespace FpgaAccel.Tests.Support;

/// <summary>
/// The test tree is laid out like the source (tests/README.md): the tests of <c>X/Y.cs</c> live under the
/// test folder mapped to <c>X</c>, so every test folder names a source folder that exists, and every test
/// file's namespace follows its folder.
/// </summary>
public class TestTreeTests
{
    /// <summary>Top-level test folders and the source folders they mirror (null: not a mirror).</summary>
    internal static readonly IReadOnlyDictionary<string, string?> Mirrors = new Dictionary<string, string?>
    {
        ["Interop"] = "interop",
        ["FirmwareInterface"] = "firmware-iface",
        ["HwSim"] = "hw-sim",
        ["Driver"] = "driver/FpgaAccel.Driver",
        ["Diagnostics"] = "driver/FpgaAccel.Diagnostics",
        ["Host"] = "driver/FpgaAccel.Host",
        ["MachineCode"] = "driver/FpgaAccel.MachineCode",
        ["Cli"] = "driver/FpgaAccel.Cli",
        ["Management"] = "driver/FpgaAccel.Management",
        ["Support"] = null,
    };

    private static readonly string[] s_notTests = ["bin", "obj", "vlab", "vboard", "FpgaAccel.VlabGuest"];

    [Test]
    public void EveryTestFolderMirrorsASourceFolderThatExists()
    {
        var tests = Path.Combine(Repository.Root, "tests");
        var problems = new List<string>();
        foreach (var top in Directory.GetDirectories(tests).Select(Path.GetFileName).OfType<string>().Where(d => !s_notTests.Contains(d)))
        {
            if (!Mirrors.TryGetValue(top, out var source))
            {
                problems.Add($"tests/{top} mirrors no source folder (add it to tests/README.md and Mirrors, or move its files)");
                continue;
            }

            if (source is null)
            {
                continue;
            }

            foreach (var dir in Directory.GetDirectories(Path.Combine(tests, top), "*", SearchOption.AllDirectories).Prepend(Path.Combine(tests, top)))
            {
                var relative = Path.GetRelativePath(Path.Combine(tests, top), dir);
                var mirrored = Path.GetFullPath(Path.Combine(Repository.Root, source, relative));
                if (Directory.EnumerateFiles(dir, "*.cs").Any() && !Directory.Exists(mirrored))
                {
                    problems.Add($"tests/{top}/{relative} has tests but {Path.GetRelativePath(Repository.Root, mirrored)} does not exist");
                }
            }
        }

        Assert.That(problems, Is.Empty);
    }

    [Test]
    public void EveryTestFilesNamespaceFollowsItsFolder()
    {
        var tests = Path.Combine(Repository.Root, "tests");
        var wrong = new List<string>();
        foreach (var file in Directory.EnumerateFiles(tests, "*.cs", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(tests, file);
            if (s_notTests.Any(n => relative.StartsWith(n + Path.DirectorySeparatorChar, StringComparison.Ordinal)))
            {
                continue;
            }

            var folder = Path.GetDirectoryName(relative)!;
            var expected = "namespace FpgaAccel.Tests" + (folder.Length == 0 ? string.Empty : "." + folder.Replace(Path.DirectorySeparatorChar, '.')) + ";";
            if (!File.ReadLines(file).Any(l => l == expected))
            {
                wrong.Add($"{relative}: expected '{expected}'");
            }
        }

        Assert.That(wrong, Is.Empty);
    }
}
