using System.Globalization;

namespace FpgaAccel.Interop;

/// <summary>The process's capabilities and mappings that DMA pinning depends on (limits: <see cref="ResourceLimits"/>).</summary>
public static class ProcessLimits
{
    /// <summary>CAP_IPC_LOCK: lets a process lock memory beyond RLIMIT_MEMLOCK (linux/capability.h).</summary>
    public const int CapIpcLock = 14;

    /// <summary>True when the effective capability set holds <paramref name="capability"/> (from /proc/self/status CapEff).</summary>
    public static bool HasCapability(int capability)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("CapEff:", StringComparison.Ordinal)
                && ulong.TryParse(line.AsSpan(7).Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var caps))
            {
                return (caps & (1UL << capability)) != 0;
            }
        }

        return false;
    }

    /// <summary>
    /// True when every page of [address, address + length) is mapped in this process. Uses msync, which
    /// answers ENOMEM for any unmapped page in the range: no /proc parsing, one system call.
    /// </summary>
    public static bool IsMapped(nint address, ulong length)
    {
        const long page = 4096;
        var start = (long)address & ~(page - 1);
        var end = (long)address + (long)length;
        var rounded = (ulong)(((end + page - 1) & ~(page - 1)) - start);
        return Interop.Libc.msync((nint)start, (nuint)rounded, Interop.Libc.MS_ASYNC) == 0;
    }
}
