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

    /// <summary>
    /// True when every byte of [address, address + length) is mapped in this process with at least
    /// <paramref name="needed"/> (what pin_user_pages checks: a mapping, readable, and writable when the pin
    /// asks for write). Reads /proc/self/maps, so it is slow (a file read) and allocates: use it for memory
    /// that <see cref="MemoryMapping.Find"/> does not know, which carries its protection itself.
    /// </summary>
    public static bool IsAccessible(nint address, ulong length, MemoryProtection needed)
    {
        var start = (ulong)address;
        var end = start + length;
        if (length == 0 || end < start)
        {
            return false;
        }

        // The file lists ranges in ascending order; walk it while the ranges cover [start, end) contiguously.
        var covered = start;
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            var dash = line.IndexOf('-', StringComparison.Ordinal);
            if (space < 0 || dash < 0 || dash > space || line.Length < space + 3
                || !ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var from)
                || !ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var to))
            {
                continue;
            }

            if (to <= covered)
            {
                continue;
            }

            if (from > covered)
            {
                return false; // a hole
            }

            var readable = line[space + 1] == 'r';
            var writable = line[space + 2] == 'w';
            if (((needed & MemoryProtection.Read) != 0 && !readable) || ((needed & MemoryProtection.Write) != 0 && !writable))
            {
                return false;
            }

            covered = to;
            if (covered >= end)
            {
                return true;
            }
        }

        return false;
    }
}
