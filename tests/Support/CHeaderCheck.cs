using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using NUnit.Framework;

namespace FpgaAccel.Tests.Support;

/// <summary>
/// Checks C# bindings against the real C headers, the Tmds.LibC way: writes a C file of
/// <c>_Static_assert</c>s (struct sizes, field offsets and sizes, constant values), compiles it with
/// <c>gcc -fsyntax-only</c>, and returns every assertion gcc rejects. Structs and constants are taken from
/// the binding classes by reflection, so a binding added there is checked with no further work.
/// </summary>
internal sealed class CHeaderCheck
{
    private readonly List<string> _headers = [];
    private readonly StringBuilder _body = new();

    public int Checks { get; private set; }

    public List<string> Structs { get; } = [];

    public List<string> Constants { get; } = [];

    public static string? FindGcc()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
        {
            var candidate = Path.Combine(dir, "gcc");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>
    /// gcc's path, after checking that <paramref name="header"/> is installed; marks the test ignored (with the package to
    /// install) when either is missing, so a machine without headers skips rather than fails.
    /// </summary>
    public static string RequireToolchain(string header, string package)
    {
        var gcc = FindGcc();
        if (gcc is null)
        {
            NUnit.Framework.Assert.Ignore("gcc is not on PATH: install gcc (make deps) to check the bindings against the C headers.");
        }

        if (!File.Exists(header))
        {
            NUnit.Framework.Assert.Ignore($"{header} is missing: install {package} (make deps) to check the bindings against it.");
        }

        return gcc!;
    }

    public CHeaderCheck Include(params string[] headers)
    {
        _headers.AddRange(headers);
        return this;
    }

    /// <summary>Every struct nested in <paramref name="bindings"/> (C name = type name) and every integral constant.</summary>
    public CHeaderCheck AddBindings(Type bindings)
    {
        foreach (var type in bindings.GetNestedTypes(BindingFlags.Public | BindingFlags.NonPublic).Where(t => t.IsValueType && !t.IsEnum))
        {
            AddStruct(type);
        }

        const BindingFlags statics = BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly;
        foreach (var field in bindings.GetFields(statics))
        {
            // Pointer-sized sentinels (MAP_FAILED is ((void *)-1)) are not integer constant expressions in C.
            if (field.FieldType == typeof(nint) || field.FieldType == typeof(nuint) || !IsIntegral(field.FieldType))
            {
                continue;
            }

            if (field.IsLiteral || field.IsInitOnly)
            {
                AddConstant(field.Name, field.GetValue(null)!);
            }
        }

        return this;
    }

    /// <summary>Every member of an enum whose names are C macros (errno values).</summary>
    public CHeaderCheck AddEnum(Type enumType)
    {
        foreach (var name in Enum.GetNames(enumType))
        {
            AddConstant(name, Convert.ChangeType(Enum.Parse(enumType, name), Enum.GetUnderlyingType(enumType), System.Globalization.CultureInfo.InvariantCulture));
        }

        return this;
    }

    public void AddStruct(Type type)
    {
        var c = $"struct {type.Name}";
        Structs.Add(type.Name);
        Assert($"sizeof({c}) == {Marshal.SizeOf(type)}", $"sizeof({c}) is not {Marshal.SizeOf(type)} as in C#");
        foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            var offset = Marshal.OffsetOf(type, field.Name).ToInt64();
            var size = Marshal.SizeOf(field.FieldType);
            Assert($"offsetof({c}, {field.Name}) == {offset}", $"offsetof({c}, {field.Name}) is not {offset} as in C#");
            Assert($"sizeof((({c} *)0)->{field.Name}) == {size}", $"sizeof {c}.{field.Name} is not {size} as in C#");
        }
    }

    public void AddConstant(string name, object value)
    {
        Constants.Add(name);
        var expression = value switch
        {
            ulong or uint or ushort or byte => $"(unsigned long long)({name}) == {Convert.ToUInt64(value, System.Globalization.CultureInfo.InvariantCulture)}ULL",
            _ => $"(long long)({name}) == ({Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)}LL)",
        };
        var bits = value is ulong u ? u : unchecked((ulong)Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture));
        Assert(expression, $"{name} is not {value} (0x{bits:X}) as in C#");
    }

    /// <summary>The C source to compile.</summary>
    public string Source()
    {
        var text = new StringBuilder();
        text.AppendLine("/* Generated by FpgaAccel.Tests CHeaderCheck: C# bindings against the system headers. */");
        text.AppendLine("#define _GNU_SOURCE");
        text.AppendLine("#include <stddef.h>");
        foreach (var header in _headers)
        {
            text.AppendLine($"#include <{header}>");
        }

        text.Append(_body);
        return text.ToString();
    }

    /// <summary>Compiles the checks; returns gcc's complaints (empty when every check holds).</summary>
    public IReadOnlyList<string> Compile(string gcc)
    {
        var dir = Path.Combine(Path.GetTempPath(), "fpgaaccel-hdr-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var file = Path.Combine(dir, "check.c");
            File.WriteAllText(file, Source());
            var start = new ProcessStartInfo(gcc, ["-std=gnu11", "-fsyntax-only", "-fmax-errors=0", file])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            using var process = Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            _ = process.StandardOutput.ReadToEnd();
            if (!process.WaitForExit(120_000))
            {
                process.Kill();
                return ["gcc did not finish within 120 s"];
            }

            var lines = stderr.Result.Split('\n');
            var problems = lines
                .Where(l => l.Contains("error:", StringComparison.Ordinal))
                .Select(l => l[(l.IndexOf("error:", StringComparison.Ordinal) + 6)..].Trim())
                .ToList();
            if (process.ExitCode != 0 && problems.Count == 0)
            {
                problems.Add($"gcc exited with {process.ExitCode}: {stderr.Result}");
            }

            return problems;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static bool IsIntegral(Type t) =>
        t == typeof(byte) || t == typeof(sbyte) || t == typeof(short) || t == typeof(ushort) ||
        t == typeof(int) || t == typeof(uint) || t == typeof(long) || t == typeof(ulong);

    private void Assert(string expression, string message)
    {
        Checks++;
        _body.AppendLine($"_Static_assert({expression}, \"{message}\");");
    }
}
