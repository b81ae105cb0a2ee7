using System.CommandLine;
using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using FpgaAccel.Driver;
using FpgaAccel.MachineCode;

namespace FpgaAccel.Cli;

/// <summary><c>fpgaaccel asm</c>: print the optimized machine code of a method, to check a hot path by eye.</summary>
internal static class AsmCommand
{
    public static Command Create(CliIo io)
    {
        var target = new Argument<string>("method")
        {
            Description = "Type.Method, with the full or short type name; Type.Method(ParamType,...) picks one overload.",
        };
        var assembly = new Option<FileInfo?>("--assembly") { Description = "Also search this assembly (a .dll path)." };
        var command = new Command("asm", "Print the x64 machine code the JIT produces for a method (Intel syntax, with addresses and bytes), " +
            "inlined into an optimized caller when it inlines; searches the driver, interop, hw-sim and firmware-iface assemblies.");
        command.Arguments.Add(target);
        command.Options.Add(assembly);
        command.SetAction(result => Run(result.GetValue(target)!, result.GetValue(assembly), io));
        return command;
    }

    // asm finds methods by name at run time. In a trimmed build (the virtual lab's guest) methods the
    // trimmer removed are reported as not found, which is the truth: they have no code to show.
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "Reflection over loaded assemblies; trimmed members are reported as not found.")]
    [UnconditionalSuppressMessage("Trimming", "IL2075", Justification = "Reflection over loaded assemblies; trimmed members are reported as not found.")]
    private static int Run(string target, FileInfo? extra, CliIo io)
    {
        if (!MachineCodeDecoder.IsSupported)
        {
            io.Error.WriteLine($"fpgaaccel: asm reads x64 JIT code and this process runs on {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}; run it on an x64 host.");
            return ExitCodes.Failed;
        }

        var assemblies = new List<Assembly>
        {
            typeof(FpgaDevice).Assembly,
            typeof(Interop.MemoryMapping).Assembly,
            typeof(HwSim.Fa1Model).Assembly,
            typeof(FirmwareInterface.Fa1Registers).Assembly,
        };
        if (extra is not null)
        {
            if (!extra.Exists)
            {
                io.Error.WriteLine($"fpgaaccel: --assembly {extra.FullName}: no such file; give the path of a built .dll.");
                return ExitCodes.Usage;
            }

            try
            {
                assemblies.Insert(0, Assembly.LoadFrom(extra.FullName));
            }
            catch (BadImageFormatException)
            {
                io.Error.WriteLine($"fpgaaccel: --assembly {extra.FullName} is not a .NET assembly; give the path of a built .dll.");
                return ExitCodes.Usage;
            }
        }

        if (!MethodSpec.TryParse(target, out var spec))
        {
            io.Error.WriteLine($"fpgaaccel: asm '{target}': expected Type.Method or Type.Method(ParamType,...), e.g. AddressMirror.Lookup or AddressMirror.Lookup(UInt64).");
            return ExitCodes.Usage;
        }

        var types = assemblies.SelectMany(LoadableTypes).Where(spec.MatchesType).Distinct().ToList();
        if (types.Count == 0)
        {
            io.Error.WriteLine($"fpgaaccel: asm '{target}': no type named '{spec.Type}' in {string.Join(", ", assemblies.Select(a => a.GetName().Name))}; " +
                "check the spelling, use the full name (Namespace.Type), or add the assembly that defines it with --assembly PATH.");
            return ExitCodes.Usage;
        }

        if (types.Count > 1)
        {
            io.Error.WriteLine($"fpgaaccel: asm '{target}': '{spec.Type}' names {types.Count} types ({string.Join(", ", types.Select(t => t.FullName))}); " +
                "use the full name.");
            return ExitCodes.Usage;
        }

        var type = types[0];
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly;
        var named = type.GetMethods(all).Where(m => m.Name == spec.Method).ToList();
        var methods = named.Where(spec.MatchesParameters).ToList();
        if (methods.Count == 0)
        {
            var available = named.Count > 0
                ? $"its overloads are {string.Join(", ", named.Select(Signature))}"
                : $"it has no method '{spec.Method}'";
            io.Error.WriteLine($"fpgaaccel: asm '{target}': {type.FullName}: {available}; give the method name, and parameter types if overloaded.");
            return ExitCodes.Usage;
        }

        foreach (var method in methods)
        {
            if (method.ContainsGenericParameters)
            {
                io.Output.WriteLine($"; {type.FullName}.{Signature(method)}: generic; its code exists per instantiation, decode a caller that closes it.");
                continue;
            }

            MachineCodeListing listing;
            try
            {
                listing = MachineCodeDecoder.Decode(method);
            }
            catch (MachineCodeException ex)
            {
                io.Error.WriteLine($"fpgaaccel: {ex.Message}");
                return ExitCodes.Failed;
            }

            io.Output.WriteLine($"; {type.FullName}.{Signature(method)}");
            io.Output.WriteLine(listing.Tier switch
            {
                CodeTier.Optimized when listing.ViaProbe => "; optimized, as inlined into a caller",
                CodeTier.Optimized => "; optimized (the method's own body)",
                CodeTier.Unoptimized => $"; UNOPTIMIZED: {method.Module.Assembly.GetName().Name} was built with optimizations off (Debug); " +
                    "build it with -c Release or <Optimize>true</Optimize> to see the code that ships",
                _ => "; possibly tier-0 (unoptimized): the method is not inlined and tiered compilation is on; " +
                    "mark it [MethodImpl(MethodImplOptions.AggressiveOptimization)] or run with DOTNET_TieredCompilation=0",
            });
            io.Output.Write(listing.Format());
            io.Output.WriteLine();
        }

        return ExitCodes.Ok;
    }

    private static string Signature(MethodInfo method) =>
        $"{method.Name}({string.Join(",", method.GetParameters().Select(p => p.ParameterType.Name))})";

    // asm finds methods by name at run time. In a trimmed build (the virtual lab's guest) methods the
    // trimmer removed are reported as not found, which is the truth: they have no code to show.
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "Reflection over loaded assemblies; trimmed members are reported as not found.")]
    [UnconditionalSuppressMessage("Trimming", "IL2075", Justification = "Reflection over loaded assemblies; trimmed members are reported as not found.")]
    private static IEnumerable<Type> LoadableTypes(Assembly assembly)
    {
        try
        {
            return assembly.GetTypes();
        }
        catch (ReflectionTypeLoadException ex)
        {
            return ex.Types.OfType<Type>();
        }
    }

    /// <summary>A parsed <c>Type.Method</c> or <c>Type.Method(ParamType,...)</c>.</summary>
    private sealed record MethodSpec(string Type, string Method, string[]? Parameters)
    {
        public static bool TryParse(string text, out MethodSpec spec)
        {
            spec = null!;
            var open = text.IndexOf('(', StringComparison.Ordinal);
            string[]? parameters = null;
            var name = text;
            if (open >= 0)
            {
                if (!text.EndsWith(')'))
                {
                    return false;
                }

                var inside = text[(open + 1)..^1].Trim();
                parameters = inside.Length == 0 ? [] : inside.Split(',', StringSplitOptions.TrimEntries);
                name = text[..open];
            }

            var dot = name.LastIndexOf('.');
            if (dot <= 0 || dot == name.Length - 1)
            {
                return false;
            }

            spec = new MethodSpec(name[..dot], name[(dot + 1)..], parameters);
            return true;
        }

        public bool MatchesType(Type type) =>
            type.FullName?.Replace('+', '.') == Type || type.Name == Type;

        public bool MatchesParameters(MethodInfo method)
        {
            if (Parameters is null)
            {
                return true;
            }

            var actual = method.GetParameters();
            return actual.Length == Parameters.Length
                && actual.Zip(Parameters).All(p => p.Second == p.First.ParameterType.Name || p.Second == p.First.ParameterType.FullName || p.Second == Alias(p.First.ParameterType));
        }

        private static string? Alias(Type type) => System.Type.GetTypeCode(type) switch
        {
            TypeCode.Boolean => "bool",
            TypeCode.Byte => "byte",
            TypeCode.Int32 => "int",
            TypeCode.UInt32 => "uint",
            TypeCode.Int64 => "long",
            TypeCode.UInt64 => "ulong",
            TypeCode.String => "string",
            _ => null,
        };
    }
}
