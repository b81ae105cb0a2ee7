namespace FpgaAccel.Tests.Support;

/// <summary>
/// Tells whether memory a test freed is really gone, although another thread of the test process (the runtime's JIT,
/// a thread stack, a concurrent test) may map a new allocation at the same address as soon as it is: a canary written
/// while the memory was ours must not be readable there any more. A new mapping is zero-filled or holds someone else's
/// bytes, never the canary; the read goes through /proc/self/mem, which reports an unmapped address as an error where a
/// load would crash the test host.
/// </summary>
internal static class FreedMemory
{
    private const ulong Canary = 0xF8EE_D0DE_CA11_AB1E;

    /// <summary>Writes the canary at <paramref name="address"/> (mapped, writable, ours): call it before freeing.</summary>
    public static unsafe void Mark(nint address) => *(ulong*)address = Canary;

    /// <summary>True when the page marked at <paramref name="address"/> is no longer mapped there.</summary>
    public static bool IsGone(nint address)
    {
        if (!FpgaAccel.Interop.ProcessLimits.IsMapped(address, sizeof(ulong)))
        {
            return true;
        }

        try
        {
            using var memory = new FileStream("/proc/self/mem", FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
            memory.Seek(address, SeekOrigin.Begin);
            Span<byte> bytes = stackalloc byte[sizeof(ulong)];
            return memory.Read(bytes) != bytes.Length || BitConverter.ToUInt64(bytes) != Canary;
        }
        catch (IOException)
        {
            return true; // unmapped between the two looks
        }
    }
}
