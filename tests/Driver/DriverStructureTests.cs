using System.Reflection;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver;

/// <summary>
/// The driver's layering, as decided in firmware-iface/DECISIONS.md (driver structure): the driver knows the model
/// only in its model adapter and in the options the auto fallback opens it with, and it carries no tool code.
/// </summary>
public partial class DriverStructureTests
{
    // The only driver sources that may name hw-sim: the adapter behind the seam, and the model's options for the fallback.
    private static readonly string[] s_filesAllowedToNameTheModel = ["Backends/ModelBackend.cs", "FpgaDeviceOptions.cs"];

    // Projects that sit beside the driver and may use it, never the other way round.
    private static readonly string[] s_toolProjects = ["FpgaAccel.Diagnostics", "FpgaAccel.Host", "FpgaAccel.MachineCode", "FpgaAccel.Cli"];

    // What the driver may reference: the layers below it (the model for the auto fallback).
    private static readonly string[] s_allowedProjects = ["FpgaAccel.FirmwareInterface", "FpgaAccel.Interop", "FpgaAccel.HwSim"];

    private static string DriverDirectory => Path.Combine(Repository.Root, "driver", "FpgaAccel.Driver");

    [Test]
    public void OnlyTheModelAdapterAndTheOptionsNameHwSim()
    {
        var sources = Directory.EnumerateFiles(DriverDirectory, "*.cs", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(DriverDirectory, f).Replace('\\', '/'))
            .Where(f => !f.StartsWith("bin/", StringComparison.Ordinal) && !f.StartsWith("obj/", StringComparison.Ordinal))
            .ToList();
        var naming = sources.Where(f => NamesHwSim().IsMatch(File.ReadAllText(Path.Combine(DriverDirectory, f)))).Order(StringComparer.Ordinal).ToList();

        // The allowed files do name it today: proof that the scan reads the right tree and the pattern matches.
        Assert.That(naming, Is.SupersetOf(s_filesAllowedToNameTheModel), "the scan found neither allowed file: is it reading the driver's sources?");
        Assert.That(naming.Except(s_filesAllowedToNameTheModel), Is.Empty,
            "these driver sources name FpgaAccel.HwSim; reach the model through IDeviceBackend (an optional member such as Oracle) instead");
    }

    [Test]
    public void ProjectFileReferencesNoIcedAndNoToolProject()
    {
        var project = XDocument.Load(Path.Combine(DriverDirectory, "FpgaAccel.Driver.csproj"));
        var packages = project.Descendants("PackageReference").Select(e => (string?)e.Attribute("Include") ?? string.Empty).ToList();
        var projects = project.Descendants("ProjectReference")
            .Select(e => Path.GetFileNameWithoutExtension(((string?)e.Attribute("Include") ?? string.Empty).Replace('\\', '/')))
            .ToList();

        Assert.That(packages, Is.Not.Empty, "no PackageReference parsed: is this the driver's project file?");
        Assert.That(packages.Where(p => p.Contains("Iced", StringComparison.OrdinalIgnoreCase)), Is.Empty, "the machine-code decoder's disassembler is a tool dependency");
        Assert.That(projects.Intersect(s_toolProjects), Is.Empty, "tool projects use the driver; the driver never uses them");
        Assert.That(projects, Is.SubsetOf(s_allowedProjects), "the driver references only the layers below it");
    }

    [Test]
    public void BuiltDriverReferencesNoIcedAndNoToolAssembly()
    {
        // The same rule on the built assembly, which no props file or transitive reference can get around.
        var referenced = typeof(FpgaDevice).Assembly.GetReferencedAssemblies().Select(a => a.Name ?? string.Empty).ToList();
        Assert.That(referenced, Has.Some.EqualTo("FpgaAccel.Interop"), "the check reads the driver's references");
        Assert.That(referenced.Where(n => n.StartsWith("Iced", StringComparison.OrdinalIgnoreCase)), Is.Empty);
        Assert.That(referenced.Intersect(s_toolProjects), Is.Empty);
    }

    [Test]
    public void HwSimTypesAppearOnlyInTheModelAdapterAndTheOptions()
    {
        // The signatures of the driver's types, public and internal (bases, fields, properties, parameters,
        // returns), name hw-sim types only in the two places the decision allows.
        var hwSim = typeof(FpgaAccel.HwSim.Fa1Model).Assembly;
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var uses = new List<(Type Owner, string Use)>();
        foreach (var type in typeof(FpgaDevice).Assembly.GetTypes())
        {
            var owner = type;
            while (owner.DeclaringType is not null)
            {
                owner = owner.DeclaringType;
            }

            var used = new List<Type?> { type.BaseType };
            used.AddRange(type.GetInterfaces());
            used.AddRange(type.GetFields(all).Select(f => f.FieldType));
            used.AddRange(type.GetProperties(all).Select(p => p.PropertyType));
            foreach (var method in type.GetMethods(all).Cast<MethodBase>().Concat(type.GetConstructors(all)))
            {
                used.AddRange(method.GetParameters().Select(p => p.ParameterType));
                if (method is MethodInfo info)
                {
                    used.Add(info.ReturnType);
                }
            }

            uses.AddRange(used.OfType<Type>().Select(ElementOf).Where(t => t.Assembly == hwSim).Distinct().Select(t => (owner, $"{type.FullName} uses {t.FullName}")));
        }

        Type[] allowed = [typeof(ModelBackend), typeof(FpgaDeviceOptions)];
        Assert.That(uses.Select(u => u.Owner).Distinct(), Is.SupersetOf(allowed), "the scan found the allowed uses: it reads the signatures");
        Assert.That(uses.Where(u => !allowed.Contains(u.Owner)).Select(u => u.Use), Is.Empty);
    }

    private static Type ElementOf(Type type)
    {
        while (type.HasElementType)
        {
            type = type.GetElementType()!;
        }

        return type;
    }


    // The namespace by any spelling the compiler would resolve: FpgaAccel.HwSim, global::FpgaAccel.HwSim, or HwSim.X inside FpgaAccel.
    [GeneratedRegex(@"\bHwSim\b")]
    private static partial Regex NamesHwSim();
}
