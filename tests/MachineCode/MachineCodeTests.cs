using System.Reflection;
using System.Runtime.InteropServices;
using FpgaAccel.Driver.Board;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Interop.Vfio;
using FpgaAccel.MachineCode;
using Iced.Intel;
using NUnit.Framework;

namespace FpgaAccel.Tests.MachineCode;

/// <summary>
/// Properties of the optimized machine code of the hot paths: every register access is one access of
/// its width (a 64-bit doorbell never goes out as two 32-bit stores), and the fault service's lookup
/// takes no lock and makes no call. Each check is also run on code that breaks it, to show it can fail.
/// </summary>
public class MachineCodeTests
{
    [SetUp]
    public void RequireLinuxX64()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            Assert.Ignore($"The machine-code checks read Linux x64 JIT code; this is {RuntimeInformation.OSDescription} on {RuntimeInformation.ProcessArchitecture}.");
        }
    }

    [TestCase(nameof(WindowSubject.Read64), 8)]
    [TestCase(nameof(WindowSubject.Write64), 8)]
    [TestCase(nameof(WindowSubject.Read32), 4)]
    [TestCase(nameof(WindowSubject.Write32), 4)]
    public void CorrectAccessorIsOneAccessOfItsWidth(string method, int width) =>
        AssertSingleAccess(Decode(typeof(WindowSubject), method), width);

    [TestCase(nameof(WindowSubject.Read64))]
    [TestCase(nameof(WindowSubject.Write32))]
    public void BoundsCheckThrowHelperIsNotAReturningCall(string method)
    {
        var listing = Decode(typeof(WindowSubject), method);
        Assert.That(listing.Calls.Select(c => c.TargetName), Is.EqualTo(new[] { typeof(WindowSubject).FullName + ".ThrowBadAccess" }), Explain(listing, "calls"));
        Assert.That(listing.ReturningCalls, Is.Empty, Explain(listing, "the throw helper counted as a call that returns"));
    }

    [TestCase(nameof(WindowSubject.TornWrite64))]
    [TestCase(nameof(WindowSubject.TornRead64))]
    public void TornAccessorIsFlagged(string method)
    {
        var accesses = RegisterAccesses(Decode(typeof(WindowSubject), method));
        Assert.That(accesses.Select(a => a.Size), Is.EqualTo(new[] { 4, 4 }), "a 64-bit access split in two 32-bit halves");
        Assert.That(() => AssertSingleAccess(Decode(typeof(WindowSubject), method), 8), Throws.InstanceOf<AssertionException>());
    }

    // typeof, not names: a renamed type or method fails the build instead of turning the check into a skip.
    [TestCase(typeof(VfioMappedRegion), nameof(VfioMappedRegion.Read64), 8)]
    [TestCase(typeof(VfioMappedRegion), nameof(VfioMappedRegion.Write64), 8)]
    [TestCase(typeof(VfioMappedRegion), nameof(VfioMappedRegion.Read32), 4)]
    [TestCase(typeof(VfioMappedRegion), nameof(VfioMappedRegion.Write32), 4)]
    [TestCase(typeof(BoardBackend), nameof(BoardBackend.Read64), 8)]
    [TestCase(typeof(BoardBackend), nameof(BoardBackend.Write64), 8)]
    public void BoardRegisterAccessorIsOneAccessOfItsWidth(Type type, string method, int width) =>
        AssertSingleAccess(Decode(type, method), width);

    [Test]
    public void MirrorLookupTakesNoLockAndMakesNoCall()
    {
        var listing = Decode(typeof(AddressMirror), nameof(AddressMirror.Lookup));
        Assert.Multiple(() =>
        {
            Assert.That(listing.AtomicInstructions.Select(i => i.Text), Is.Empty, Explain(listing, "lock-prefixed or xchg instructions"));
            Assert.That(listing.Calls.Where(c => c.IsMonitorOrLock), Is.Empty, Explain(listing, "calls into Monitor or Lock"));
            Assert.That(listing.ReturningCalls.Select(c => c.At.Text), Is.Empty, Explain(listing, "calls on the path that returns (only throw helpers are allowed)"));
        });
    }

    [TestCase(nameof(SynchronizedSubject.WithMonitor))]
    [TestCase(nameof(SynchronizedSubject.WithLock))]
    public void LockStatementIsFlagged(string method)
    {
        var listing = Decode(typeof(SynchronizedSubject), method);

        // Depending on how much of Monitor/Lock the JIT inlines, a lock shows as a call into them, an
        // atomic instruction, or both; the lookup check forbids all three.
        Assert.That(listing.Calls.Any(c => c.IsMonitorOrLock) || listing.AtomicInstructions.Any(), Explain(listing, "no sign of the lock"));
        Assert.That(listing.Calls.Where(c => c.IsMonitorOrLock), Is.Not.Empty, Explain(listing, "no call into Monitor or Lock named"));
        Assert.That(listing.ReturningCalls, Is.Not.Empty);
    }

    [TestCase(nameof(SynchronizedSubject.WithInterlocked))]
    [TestCase(nameof(SynchronizedSubject.WithExchange))]
    public void InterlockedIsFlagged(string method)
    {
        var listing = Decode(typeof(SynchronizedSubject), method);
        Assert.That(listing.AtomicInstructions, Is.Not.Empty, Explain(listing, "no atomic instruction"));
    }

    [Test]
    public void PlainVolatileReadIsNotFlagged()
    {
        var listing = Decode(typeof(SynchronizedSubject), nameof(SynchronizedSubject.Plain));
        Assert.Multiple(() =>
        {
            Assert.That(listing.AtomicInstructions, Is.Empty, Explain(listing, "atomic instructions"));
            Assert.That(listing.Calls, Is.Empty, Explain(listing, "calls"));
            Assert.That(listing.CountAccesses(8, MemoryAccessKind.ArgumentField), Is.EqualTo(1), Explain(listing, "the field read"));
        });
    }

    [Test]
    public void CallsToMonitorAreNamed()
    {
        var listing = Decode(typeof(SynchronizedSubject), nameof(SynchronizedSubject.WithMonitor));
        Assert.That(listing.Calls.Select(c => c.TargetName), Has.Some.StartsWith("System.Threading.Monitor."), Explain(listing, "Monitor not named"));
    }

    [Test]
    public void DebugBuiltAssemblyIsReportedUnoptimized()
    {
        // The test assembly is built optimized on purpose (see the csproj); every decoded method says so.
        Assert.That(MachineCodeDecoder.IsJitOptimizationDisabled(typeof(MachineCodeTests).Assembly), Is.False);
        Assert.That(Decode(typeof(WindowSubject), nameof(WindowSubject.Read64)).Tier, Is.EqualTo(CodeTier.Optimized));
    }

    private static MachineCodeListing Decode(Type type, string name)
    {
        var method = type.GetMethod(name, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static)
            ?? throw new MissingMethodException(type.FullName, name);
        var listing = MachineCodeDecoder.Decode(method);
        TestContext.Out.WriteLine($"{type.Name}.{name}: {listing.Tier}, {(listing.ViaProbe ? "inlined into an optimized caller" : "own body")}");
        TestContext.Out.WriteLine(listing.Format());
        Assert.That(listing.Tier, Is.EqualTo(CodeTier.Optimized), $"{type.FullName}.{name} was not decoded from optimized code; the check would be meaningless.");
        return listing;
    }

    /// <summary>
    /// The accesses to the register window: at base + a register offset. Every accessor addresses the
    /// window as its base pointer plus the offset argument, while its own bookkeeping (the base pointer,
    /// the length) is read at [register + constant], so this tells them apart without knowing field offsets.
    /// </summary>
    private static List<MemoryAccess> RegisterAccesses(MachineCodeListing listing) =>
        listing.MemoryAccesses.Where(a => a.Kind == MemoryAccessKind.Pointer && a.At.Instruction.MemoryIndex != Register.None).ToList();

    private static void AssertSingleAccess(MachineCodeListing listing, int width)
    {
        var accesses = RegisterAccesses(listing);
        Assert.That(accesses.Select(a => a.Size), Is.EqualTo(new[] { width }),
            Explain(listing, $"expected exactly one {width}-byte access to the window, found [{string.Join(", ", accesses.Select(a => a.At.Text))}]"));
    }

    private static string Explain(MachineCodeListing listing, string what) => $"{what} in:\n{listing.Format()}";
}
