using System.Runtime.InteropServices;
using FpgaAccel.Cli;
using NUnit.Framework;

namespace FpgaAccel.Tests.Cli;

public class AsmCommandTests
{
    [SetUp]
    public void RequireX64()
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            Assert.Ignore($"asm decodes x64 JIT code; this process runs on {RuntimeInformation.ProcessArchitecture}.");
        }
    }

    [Test]
    public void PrintsTheOptimizedLookupByShortName()
    {
        var (code, output, error) = Run("asm", "AddressMirror.Lookup");
        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("; FpgaAccel.Driver.Faults.AddressMirror.Lookup(UInt64)")
            .And.Contain("; optimized, as inlined into a caller")
            .And.Contain("ret"));
    }

    [Test]
    public void AcceptsFullNameWithParameterTypes()
    {
        var (code, output, error) = Run("asm", "FpgaAccel.Driver.Faults.AddressMirror.Lookup(ulong)");
        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("AddressMirror.Lookup(UInt64)"));
    }

    [Test]
    public void FindsMethodsInAnAssemblyGivenWithOption()
    {
        var path = typeof(AsmCommandTests).Assembly.Location;
        var (code, output, error) = Run("asm", "WindowSubject.Write64", "--assembly", path);
        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("WindowSubject.Write64(UInt64,UInt64)").And.Contain("mov"));
    }

    [TestCase("NoSuchType.Lookup", "no type named 'NoSuchType'")]
    [TestCase("AddressMirror.NoSuchMethod", "has no method 'NoSuchMethod'")]
    [TestCase("AddressMirror.Lookup(string)", "its overloads are Lookup(UInt64)")]
    [TestCase("Lookup", "expected Type.Method")]
    public void BadInputIsAUsageErrorNamingIt(string target, string message)
    {
        var (code, _, error) = Run("asm", target);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(error, Does.Contain(target).And.Contain(message));
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = FpgaAccelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
