using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Iced.Intel;
using FlowControl = Iced.Intel.FlowControl;
using OpCodes = System.Reflection.Emit.OpCodes;

namespace FpgaAccel.MachineCode;

/// <summary>Which code a listing shows.</summary>
public enum CodeTier
{
    /// <summary>Fully optimized code, with inlining: what runs once the method is hot.</summary>
    Optimized,

    /// <summary>
    /// The method's own current body while tiered compilation is on and the method is not marked
    /// <see cref="MethodImplOptions.AggressiveOptimization"/>: it may still be tier-0 (unoptimized) code.
    /// </summary>
    PossiblyUnoptimized,

    /// <summary>
    /// Unoptimized: the method's assembly was compiled with optimizations off (a Debug build marks it
    /// <see cref="System.Diagnostics.DebuggableAttribute"/>), so the JIT neither optimizes nor inlines it.
    /// </summary>
    Unoptimized,
}

/// <summary>
/// Gets the JIT's machine code for a method (x64 only) and decodes it with Iced, so tests can check
/// properties of hot paths that C# cannot express: one 8-byte store per doorbell, no lock on a lookup.
/// </summary>
/// <remarks>
/// How optimized code is obtained without running the method: <see cref="Decode"/> emits a
/// <see cref="DynamicMethod"/> probe that passes its arguments to the target and returns its result.
/// Dynamic methods are not eligible for tiered compilation, so the JIT compiles the probe fully
/// optimized at once, inlining the target when it can (always for small
/// <see cref="MethodImplOptions.AggressiveInlining"/> accessors): the probe's body is the target's
/// optimized code as a caller gets it, after inlining. The probe returns the target's result because a
/// discarded load may be narrowed or dropped by the JIT, which would misreport its width.
/// When the target is not inlined (<see cref="MethodImplOptions.NoInlining"/>, too large, virtual), the
/// target's own body is decoded instead; that body is optimized only if tiered compilation is off or the
/// method is marked <see cref="MethodImplOptions.AggressiveOptimization"/>, and the listing says which
/// (<see cref="MachineCodeListing.Tier"/>): <see cref="RuntimeHelpers.PrepareMethod(RuntimeMethodHandle)"/>
/// alone gives tier-0 code.
///
/// The probe is hosted anonymously (not in the target's module), because a probe owned by a Debug module
/// would inherit its "do not optimize"; and a method of an assembly built with optimizations off is never
/// optimized or inlined anywhere, so it is decoded as is and reported <see cref="CodeTier.Unoptimized"/>.
/// The probe's handle comes from DynamicMethod's internal GetMethodDescriptor (through
/// <see cref="UnsafeAccessorAttribute"/>); should a runtime drop it, the method's own body is decoded.
///
/// Limits: the code is found by following the runtime's precodes from the entry point, and its extent by
/// following control flow from the entry (conditional and unconditional jumps inside a 4 KiB window; a
/// path ends at <c>ret</c>, <c>int3</c>, <c>ud2</c> or a jump out of the window, which is a tail call).
/// Not decoded: code reached only through indirect jumps (switch tables) or calls (finally/catch
/// funclets, which the JIT places after the body and reaches with a call). Call targets are named only
/// for a fixed set of types (the synchronization primitives, the runtime's cast and throw helpers, the
/// decoded method's own type), by matching entry points and code addresses; other calls are reported
/// unnamed, never misnamed. Generic methods must be closed (<see cref="MethodInfo.MakeGenericMethod"/>).
/// The register classification in <see cref="MachineCodeListing.MemoryAccesses"/> assumes the System V
/// calling convention (Linux, macOS). Code may differ between processes (PGO, CPU features), so
/// assertions should be about properties every correct compilation has (access widths, atomic
/// instructions, calls), not about exact instruction sequences.
/// </remarks>
public static class MachineCodeDecoder
{
    /// <summary>How far from its entry a method's code is followed.</summary>
    public const int MaxCodeBytes = 4096;

    private const int MaxStubHops = 4;

    /// <summary>True when this process can decode its own JIT code (x64; the checks are written for it).</summary>
    public static bool IsSupported => RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>
    /// Decodes the optimized machine code of <paramref name="method"/> as its callers get it, with its
    /// inlinees; see the remarks on <see cref="MachineCodeDecoder"/> for how and the limits.
    /// </summary>
    public static MachineCodeListing Decode(MethodBase method)
    {
        ArgumentNullException.ThrowIfNull(method);
        EnsureSupported();
        if (method.ContainsGenericParameters || method.IsAbstract || method is ConstructorInfo)
        {
            throw new MachineCodeException(
                $"{Describe(method)} has no code of its own to decode (it is abstract, a constructor or an open generic); " +
                "decode a concrete, closed method (MakeGenericMethod) or a method that calls it.");
        }

        // Compiled first (at whatever tier) so that its precode leads to code and a call or tail call to it
        // from the probe can be recognised by where it lands.
        RuntimeHelpers.PrepareMethod(method.MethodHandle);
        var names = new CallTargetNames(method);
        if (IsJitOptimizationDisabled(method.Module.Assembly))
        {
            // The JIT will not optimize or inline this method anywhere: show the code that actually runs.
            RuntimeHelpers.PrepareMethod(method.MethodHandle);
            return DecodeAt(method, ResolveStubs((ulong)method.MethodHandle.GetFunctionPointer()), CodeTier.Unoptimized, names, viaProbe: false);
        }

        if (method is MethodInfo info && TryProbe(info, out var probeEntry))
        {
            var probe = DecodeAt(method, probeEntry, CodeTier.Optimized, names, viaProbe: true);
            // Not inlined when the probe calls the target or tail-calls it (a jmp to it).
            var entryPoint = (ulong)method.MethodHandle.GetFunctionPointer();
            var targetCode = ResolveStubs(entryPoint);
            var reachesTarget = probe.Instructions.Any(i =>
                i.Instruction.FlowControl is FlowControl.Call or FlowControl.IndirectCall or FlowControl.UnconditionalBranch or FlowControl.IndirectBranch
                && BranchTarget(i.Instruction) is { } t && (t == targetCode || t == entryPoint));
            if (!reachesTarget && !(probe.Instructions.Count == 1 && probe.Instructions[0].Instruction.Mnemonic == Mnemonic.Jmp))
            {
                return probe;
            }
        }

        // Not inlined into the probe: decode the method's own body.
        RuntimeHelpers.PrepareMethod(method.MethodHandle);
        var entry = ResolveStubs((ulong)method.MethodHandle.GetFunctionPointer());
        var tier = !TieredCompilationEnabled || method.MethodImplementationFlags.HasFlag(MethodImplAttributes.AggressiveOptimization)
            ? CodeTier.Optimized
            : CodeTier.PossiblyUnoptimized;
        return DecodeAt(method, entry, tier, names, viaProbe: false);
    }

    /// <summary>
    /// Decodes the code at <paramref name="address"/> in this process, following control flow as
    /// <see cref="Decode"/> does. The code must stay alive meanwhile.
    /// </summary>
    public static MachineCodeListing DecodeAddress(MethodBase method, nint address, CodeTier tier)
    {
        ArgumentNullException.ThrowIfNull(method);
        EnsureSupported();
        return DecodeAt(method, ResolveStubs((ulong)address), tier, new CallTargetNames(method), viaProbe: false);
    }

    /// <summary>
    /// The code reached from <paramref name="address"/> through the runtime's precodes: a fixup precode
    /// (<c>jmp [cell]; mov r10, [md]; ...</c>) or a stub precode (<c>mov r10, [md]; jmp [cell]</c>), whose
    /// cell holds the current code. Only these shapes are followed, so a method body that is a single tail
    /// call (<c>jmp [cell]</c> with no <c>mov r10</c> beside it) is not mistaken for a stub.
    /// </summary>
    internal static ulong ResolveStubs(ulong address)
    {
        for (var hop = 0; hop < MaxStubHops; hop++)
        {
            var first = DecodeOne(address);
            var second = DecodeOne(first.NextIP);
            ulong cell;
            if (IsJumpThroughCell(first) && IsLoadR10(second))
            {
                cell = first.IPRelativeMemoryAddress;
            }
            else if (IsLoadR10(first) && IsJumpThroughCell(second))
            {
                cell = second.IPRelativeMemoryAddress;
            }
            else
            {
                return address;
            }

            var next = (ulong)Marshal.ReadInt64((nint)cell);

            // A fixup precode whose cell points back into itself has no code yet: stay at the stub.
            if (next > address && next - address < 32)
            {
                return address;
            }

            address = next;
        }

        return address;
    }

    private static bool IsJumpThroughCell(Instruction instruction) =>
        instruction.Mnemonic == Mnemonic.Jmp && instruction.Op0Kind == OpKind.Memory && instruction.IsIPRelativeMemoryOperand;

    private static bool IsLoadR10(Instruction instruction) =>
        instruction.Mnemonic == Mnemonic.Mov && instruction.Op0Kind == OpKind.Register && instruction.Op0Register == Register.R10;

    /// <summary>Where a direct or cell-indirect call or jump goes, after stubs; null through a register.</summary>
    private static ulong? BranchTarget(Instruction instruction)
    {
        ulong? target = instruction.Op0Kind switch
        {
            OpKind.NearBranch64 => instruction.NearBranch64,
            OpKind.Memory when instruction.IsIPRelativeMemoryOperand => (ulong)Marshal.ReadInt64((nint)instruction.IPRelativeMemoryAddress),
            _ => null,
        };
        return target is { } t ? ResolveStubs(t) : null;
    }

    private static bool TieredCompilationEnabled
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("DOTNET_TieredCompilation") ?? Environment.GetEnvironmentVariable("COMPlus_TieredCompilation");
            if (env is "0")
            {
                return false;
            }

            return !AppContext.TryGetSwitch("System.Runtime.TieredCompilation", out var enabled) || enabled;
        }
    }

    /// <summary>True when <paramref name="assembly"/> was compiled with optimizations off (Debug): the JIT then never optimizes its methods.</summary>
    public static bool IsJitOptimizationDisabled(Assembly assembly) =>
        assembly.GetCustomAttribute<System.Diagnostics.DebuggableAttribute>()?.IsJITOptimizerDisabled == true;

    private static void EnsureSupported()
    {
        if (!IsSupported)
        {
            throw new PlatformNotSupportedException(
                $"Machine-code decoding reads x64 JIT code; this process runs on {RuntimeInformation.ProcessArchitecture}. Run it on an x64 host.");
        }
    }

    private static string Describe(MethodBase method) => $"{method.DeclaringType?.FullName}.{method.Name}";

    /// <summary>Emits and JIT-compiles the probe; false when the runtime offers no way to find its code.</summary>
    private static bool TryProbe(MethodInfo target, out ulong entry)
    {
        entry = 0;
        if (target.IsVirtual && !target.IsFinal && target.DeclaringType is { IsSealed: false })
        {
            // A virtual call is not inlined unless devirtualized; decode the body itself.
            return false;
        }

        var parameters = target.GetParameters().Select(p => p.ParameterType).ToList();
        if (!target.IsStatic)
        {
            var self = target.DeclaringType!;
            parameters.Insert(0, self.IsValueType ? self.MakeByRefType() : self);
        }

        var returnType = target.ReturnType;
        // Anonymously hosted: a probe owned by the target's module would inherit a Debug module's
        // "do not optimize" and get unoptimized code. restrictedSkipVisibility lets it call non-public targets.
        var probe = new DynamicMethod("MachineCodeProbe_" + target.Name, returnType, [.. parameters], restrictedSkipVisibility: true);
        var il = probe.GetILGenerator();
        for (short i = 0; i < parameters.Count; i++)
        {
            il.Emit(OpCodes.Ldarg, i);
        }

        il.Emit(OpCodes.Call, target);
        il.Emit(OpCodes.Ret);

        RuntimeMethodHandle handle;
        try
        {
            handle = DynamicMethodHandle(probe);
        }
        catch (MissingMethodException)
        {
            // The runtime renamed its internal accessor: fall back to the method's own body.
            return false;
        }

        // Dynamic methods are never tiered: this compiles the probe fully optimized, without running it.
        RuntimeHelpers.PrepareMethod(handle);
        entry = ResolveStubs((ulong)handle.GetFunctionPointer());
        GC.KeepAlive(probe);
        return true;
    }

    // DynamicMethod exposes no public handle; this internal accessor has existed since .NET Core 1.0.
    // If it disappears the call throws MissingMethodException and Decode falls back (see TryProbe).
    [UnsafeAccessor(UnsafeAccessorKind.Method, Name = "GetMethodDescriptor")]
    private static extern RuntimeMethodHandle DynamicMethodHandle(DynamicMethod method);

    private static Instruction DecodeOne(ulong address)
    {
        var decoder = Decoder.Create(64, new InProcessCodeReader(address, 16), address);
        decoder.Decode(out var instruction);
        return instruction;
    }

    private static MachineCodeListing DecodeAt(MethodBase method, ulong entry, CodeTier tier, CallTargetNames names, bool viaProbe)
    {
        var found = new SortedDictionary<ulong, Instruction>();
        var pending = new Stack<ulong>();
        pending.Push(entry);
        var end = entry + MaxCodeBytes;
        while (pending.Count > 0)
        {
            var ip = pending.Pop();
            while (ip >= entry && ip < end && !found.ContainsKey(ip))
            {
                var decoder = Decoder.Create(64, new InProcessCodeReader(ip, (int)(end - ip)), ip);
                decoder.Decode(out var instruction);
                if (instruction.IsInvalid)
                {
                    break;
                }

                found.Add(ip, instruction);
                var flow = instruction.FlowControl;
                if (flow is FlowControl.ConditionalBranch or FlowControl.UnconditionalBranch && instruction.Op0Kind is OpKind.NearBranch64)
                {
                    var target = instruction.NearBranch64;
                    if (target >= entry && target < end)
                    {
                        pending.Push(target);
                    }
                }

                if (flow is FlowControl.Return or FlowControl.UnconditionalBranch or FlowControl.IndirectBranch or FlowControl.Interrupt or FlowControl.Exception)
                {
                    break;
                }

                ip = instruction.NextIP;
            }
        }

        var formatter = new IntelFormatter();
        formatter.Options.FirstOperandCharIndex = 8;
        var output = new StringOutput();
        var list = new List<DecodedInstruction>(found.Count);
        foreach (var instruction in found.Values)
        {
            formatter.Format(instruction, output);
            var bytes = new byte[instruction.Length];
            Marshal.Copy((nint)instruction.IP, bytes, 0, bytes.Length);
            list.Add(new DecodedInstruction(instruction, output.ToStringAndReset(), bytes));
        }

        var calls = new List<CallSite>();
        for (var i = 0; i < list.Count; i++)
        {
            var instruction = list[i].Instruction;
            if (instruction.FlowControl is not (FlowControl.Call or FlowControl.IndirectCall))
            {
                continue;
            }

            ulong? target = instruction.Op0Kind switch
            {
                OpKind.NearBranch64 => instruction.NearBranch64,
                OpKind.Memory when instruction.IsIPRelativeMemoryOperand => (ulong)Marshal.ReadInt64((nint)instruction.IPRelativeMemoryAddress),
                _ => null,
            };
            var resolved = BranchTarget(instruction);
            var callee = names.Method(target, resolved);

            // A call that does not return is a throw: the JIT ends it with int3 when it knows the callee
            // throws; otherwise the callee says so ([DoesNotReturn], or a Throw... helper by convention).
            var noReturn = i + 1 < list.Count && list[i + 1].Instruction.Mnemonic == Mnemonic.Int3
                || i + 1 == list.Count
                || callee is not null && (callee.IsDefined(typeof(System.Diagnostics.CodeAnalysis.DoesNotReturnAttribute)) || callee.Name.StartsWith("Throw", StringComparison.Ordinal));
            calls.Add(new CallSite(list[i], resolved, callee, noReturn));
        }

        return new MachineCodeListing(method, entry, tier, viaProbe, list, calls);
    }

    /// <summary>Reads code bytes of this process, one at a time as the decoder asks, never past <c>limit</c>.</summary>
    private sealed class InProcessCodeReader(ulong start, int limit) : CodeReader
    {
        private int _read;

        public override int ReadByte()
        {
            if (_read >= limit)
            {
                return -1;
            }

            return Marshal.ReadByte((nint)(start + (ulong)_read++));
        }
    }

    /// <summary>Names for call targets: the synchronization primitives, cast and throw helpers, and the method's own type.</summary>
    private sealed class CallTargetNames
    {
        // Null marks an address two methods lead to (a shared stub such as the prestub): it names neither.
        private readonly Dictionary<ulong, MethodInfo?> _byAddress = [];

        // Naming call targets is a diagnostic nicety: in a trimmed build (the virtual lab's guest) a helper
        // type or method the trimmer removed simply leaves its calls unnamed; decoding itself is unaffected.
        [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "Unresolved types leave calls unnamed, nothing more.")]
        [UnconditionalSuppressMessage("Trimming", "IL2075", Justification = "Methods removed by trimming cannot be called, so need no name.")]
        public CallTargetNames(MethodBase method)
        {
            var core = typeof(object).Assembly;
            Type?[] types =
            [
                typeof(Monitor), typeof(Lock), typeof(Lock.Scope), typeof(Interlocked), typeof(Volatile), typeof(Thread),
                core.GetType("System.Runtime.CompilerServices.CastHelpers"),
                core.GetType("System.ThrowHelper"),
                typeof(ArgumentOutOfRangeException), typeof(ArgumentNullException), typeof(ArgumentException), typeof(ObjectDisposedException),
                method.DeclaringType,
            ];
            foreach (var type in types.OfType<Type>().Distinct())
            {
                var members = type.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly);
                foreach (var candidate in members)
                {
                    if (candidate.ContainsGenericParameters || candidate.IsAbstract)
                    {
                        continue;
                    }

                    // The method's own type (its throw helpers, its callees) is compiled first: a call to a
                    // method that has no code yet goes through stubs that identify nothing.
                    Add(candidate, prepare: type == method.DeclaringType);
                }
            }
        }

        public MethodInfo? Method(ulong? target, ulong? resolved)
        {
            if (target is { } t && _byAddress.TryGetValue(t, out var method) && method is not null)
            {
                return method;
            }

            return resolved is { } r && _byAddress.TryGetValue(r, out var byCode) ? byCode : null;
        }

        private void Add(MethodInfo candidate, bool prepare)
        {
            ulong entry;
            try
            {
                if (prepare)
                {
                    RuntimeHelpers.PrepareMethod(candidate.MethodHandle);
                }

                entry = (ulong)candidate.MethodHandle.GetFunctionPointer();
            }
            catch (Exception e) when (e is NotSupportedException or InvalidOperationException or ArgumentException or MemberAccessException or TypeLoadException)
            {
                return;
            }

            Claim(entry, candidate);

            // Where the entry leads when the method is already compiled: direct calls land there.
            var code = ResolveStubs(entry);
            if (code != entry)
            {
                Claim(code, candidate);
            }
        }

        private void Claim(ulong address, MethodInfo candidate)
        {
            if (_byAddress.TryGetValue(address, out var existing) && existing != candidate)
            {
                _byAddress[address] = null;
                return;
            }

            _byAddress[address] = candidate;
        }
    }
}

/// <summary>One decoded instruction: Iced's <see cref="Iced.Intel.Instruction"/>, its Intel-syntax text and its bytes.</summary>
/// <param name="Instruction">The instruction as Iced decoded it: operands, memory operand, flow control.</param>
/// <param name="Text">Intel syntax, as <c>fpgaaccel asm</c> prints it.</param>
/// <param name="Bytes">The machine code bytes of the instruction.</param>
public sealed record DecodedInstruction(Instruction Instruction, string Text, byte[] Bytes)
{
    /// <summary>Where the instruction sits in this process's memory.</summary>
    public ulong Address => Instruction.IP;

    /// <summary>One listing line: address, bytes, Intel syntax.</summary>
    public override string ToString() => $"{Address:X16}  {Convert.ToHexString(Bytes),-24} {Text}";
}

/// <summary>
/// A call in decoded code: the code it reaches after stubs (null for a call through a register), the
/// method when it is one of the known targets (<see cref="Monitor"/>, <see cref="Lock"/>,
/// <see cref="Interlocked"/>, the runtime's cast and throw helpers, the decoded method's own type), and
/// whether it does not return (a throw).
/// </summary>
/// <param name="At">The call instruction.</param>
/// <param name="Target">Where the call lands after the runtime's stubs; null for a call through a register.</param>
/// <param name="TargetMethod">The method called, when it is one of the known targets; null otherwise.</param>
/// <param name="DoesNotReturn">True when the call throws (a throw helper, or followed by <c>int3</c>).</param>
public sealed record CallSite(DecodedInstruction At, ulong? Target, MethodInfo? TargetMethod, bool DoesNotReturn)
{
    /// <summary><c>Namespace.Type.Method</c> of <see cref="TargetMethod"/>, or null when the target is not known.</summary>
    public string? TargetName => TargetMethod is null ? null : $"{TargetMethod.DeclaringType?.FullName}.{TargetMethod.Name}";

    /// <summary>True for calls into <see cref="Monitor"/> or <see cref="Lock"/>: a lock taken.</summary>
    public bool IsMonitorOrLock => TargetMethod?.DeclaringType is { } type
        && (type == typeof(Monitor) || type == typeof(Lock) || type.DeclaringType == typeof(Lock));
}

/// <summary>Where a memory operand points, for telling device accesses from bookkeeping.</summary>
public enum MemoryAccessKind
{
    /// <summary>[rsp/rbp + ...]: spills, locals, arguments on the stack.</summary>
    Stack,

    /// <summary>[rip + ...]: constants and indirection cells.</summary>
    RipRelative,

    /// <summary>[argument register + constant], no index: a field of an object or struct passed in.</summary>
    ArgumentField,

    /// <summary>Everything else: through a pointer the code loaded or computed (an mmapped BAR, an array element).</summary>
    Pointer,
}

/// <summary>One memory access: the instruction, its width in bytes, whether it writes, and where it points.</summary>
/// <param name="At">The instruction with the memory operand.</param>
/// <param name="Size">Bytes accessed: a torn 64-bit register access shows as two of 4.</param>
/// <param name="IsWrite">True when the instruction writes the memory (a store, or a read-modify-write).</param>
/// <param name="Kind">What the address is based on, to tell register-window accesses from bookkeeping.</param>
public sealed record MemoryAccess(DecodedInstruction At, int Size, bool IsWrite, MemoryAccessKind Kind);

/// <summary>A decoded method, with the checks the machine-code tests need.</summary>
public sealed class MachineCodeListing
{
    // System V x64 integer argument registers, in order (the checks target Linux x64).
    private static readonly Register[] s_argumentRegisters = [Register.RDI, Register.RSI, Register.RDX, Register.RCX, Register.R8, Register.R9];

    internal MachineCodeListing(MethodBase method, ulong entry, CodeTier tier, bool viaProbe, IReadOnlyList<DecodedInstruction> instructions, IReadOnlyList<CallSite> calls)
    {
        Method = method;
        Entry = entry;
        Tier = tier;
        ViaProbe = viaProbe;
        Instructions = instructions;
        Calls = calls;
        MemoryAccesses = ClassifyMemoryAccesses(instructions);
    }

    /// <summary>The method whose code this is.</summary>
    public MethodBase Method { get; }

    /// <summary>Address of the first decoded instruction.</summary>
    public ulong Entry { get; }

    /// <summary>Whether the code is optimized, possibly tier-0, or unoptimized: a check on unoptimized code proves nothing.</summary>
    public CodeTier Tier { get; }

    /// <summary>True when this is the method inlined into an optimized probe (its code as callers get it).</summary>
    public bool ViaProbe { get; }

    /// <summary>The reachable instructions in address order.</summary>
    public IReadOnlyList<DecodedInstruction> Instructions { get; }

    /// <summary>Every call in the code, with its target named when known and whether it returns.</summary>
    public IReadOnlyList<CallSite> Calls { get; }

    /// <summary>Every explicit memory operand (not <c>lea</c>, not the implicit stack of push/pop/call).</summary>
    public IReadOnlyList<MemoryAccess> MemoryAccesses { get; }

    /// <summary>Calls that return: the ones on a path that completes normally, i.e. not throw helpers.</summary>
    public IEnumerable<CallSite> ReturningCalls => Calls.Where(c => !c.DoesNotReturn);

    /// <summary>
    /// Instructions that are atomic read-modify-writes: <c>lock</c>-prefixed ones and <c>xchg</c> with
    /// memory, which the CPU locks implicitly (how <see cref="Interlocked.Exchange(ref long, long)"/> compiles).
    /// </summary>
    public IEnumerable<DecodedInstruction> AtomicInstructions => Instructions.Where(i =>
        i.Instruction.HasLockPrefix
        || i.Instruction.Mnemonic == Mnemonic.Xchg && (i.Instruction.Op0Kind == OpKind.Memory || i.Instruction.Op1Kind == OpKind.Memory));

    /// <summary>Accesses of <paramref name="size"/> bytes through any memory operand.</summary>
    public int CountAccesses(int size) => MemoryAccesses.Count(a => a.Size == size);

    /// <summary>Accesses of <paramref name="size"/> bytes of the given <paramref name="kind"/>.</summary>
    public int CountAccesses(int size, MemoryAccessKind kind) => MemoryAccesses.Count(a => a.Size == size && a.Kind == kind);

    /// <summary>Accesses of <paramref name="size"/> bytes whose base register is <paramref name="baseRegister"/>.</summary>
    public int CountAccesses(int size, Register baseRegister) =>
        MemoryAccesses.Count(a => a.Size == size && a.At.Instruction.MemoryBase == baseRegister);

    /// <summary>The listing as text: one instruction per line, address, bytes, Intel syntax.</summary>
    public string Format()
    {
        var text = new System.Text.StringBuilder();
        foreach (var instruction in Instructions)
        {
            text.AppendLine(instruction.ToString());
        }

        return text.ToString();
    }

    private static List<MemoryAccess> ClassifyMemoryAccesses(IReadOnlyList<DecodedInstruction> instructions)
    {
        // Registers still holding an incoming argument, followed through register-to-register moves in
        // address order. An approximation (no merge at branch joins) that fits small accessors; it only
        // decides ArgumentField versus Pointer, never whether an access is counted.
        var arguments = new HashSet<Register>(s_argumentRegisters);
        var accesses = new List<MemoryAccess>();
        var info = new InstructionInfoFactory();
        foreach (var decoded in instructions)
        {
            var instruction = decoded.Instruction;
            if (instruction.Mnemonic is not (Mnemonic.Lea or Mnemonic.Nop) && HasExplicitMemoryOperand(instruction))
            {
                var size = instruction.MemorySize.GetSize();
                var kind = Classify(instruction, arguments);
                var usage = info.GetInfo(instruction).GetUsedMemory().FirstOrDefault();
                var write = usage.Access is OpAccess.Write or OpAccess.CondWrite or OpAccess.ReadWrite or OpAccess.ReadCondWrite;
                accesses.Add(new MemoryAccess(decoded, size, write, kind));
            }

            if (instruction.Op0Kind == OpKind.Register && instruction.OpCount > 0)
            {
                var written = instruction.Op0Register.GetFullRegister();
                var copiesArgument = instruction.Mnemonic == Mnemonic.Mov && instruction.OpCount == 2
                    && instruction.Op1Kind == OpKind.Register && arguments.Contains(instruction.Op1Register.GetFullRegister())
                    && instruction.Op0Register.GetSize() == 8;
                if (copiesArgument)
                {
                    arguments.Add(written);
                }
                else if (instruction.Mnemonic is not (Mnemonic.Cmp or Mnemonic.Test or Mnemonic.Push))
                {
                    arguments.Remove(written);
                }
            }
        }

        return accesses;
    }

    private static bool HasExplicitMemoryOperand(Instruction instruction)
    {
        for (var i = 0; i < instruction.OpCount; i++)
        {
            if (instruction.GetOpKind(i) == OpKind.Memory)
            {
                return true;
            }
        }

        return false;
    }

    private static MemoryAccessKind Classify(Instruction instruction, HashSet<Register> arguments)
    {
        if (instruction.IsIPRelativeMemoryOperand)
        {
            return MemoryAccessKind.RipRelative;
        }

        var baseRegister = instruction.MemoryBase;
        if (baseRegister is Register.RSP or Register.RBP)
        {
            return MemoryAccessKind.Stack;
        }

        return instruction.MemoryIndex == Register.None && arguments.Contains(baseRegister)
            ? MemoryAccessKind.ArgumentField
            : MemoryAccessKind.Pointer;
    }
}

/// <summary>A method's machine code could not be obtained or decoded; the message says why and what to decode instead.</summary>
public sealed class MachineCodeException : Exception
{
    /// <summary>Decoding failed; <paramref name="message"/> says why and what to decode instead.</summary>
    public MachineCodeException(string message)
        : base(message)
    {
    }
}
