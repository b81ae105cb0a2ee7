using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Dma;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Dma;

/// <summary>
/// Issue 11, defect 14: DMA memory (host buffers, rings, page tables) is marked MADV_DONTFORK, as libibverbs and DPDK
/// mark registered memory: a forked child does not inherit it (so a fork does not copy every pinned byte, and on older
/// kernels the parent's next write cannot move its page away from the one the device holds). Checked with a real
/// fork: a small C function forks, and the child, running only that C code, asks the kernel whether the buffer's
/// range is mapped in it (msync answers ENOMEM for an unmapped range) and exits with the answer.
/// </summary>
[NonParallelizable]
public class DmaForkTests
{
    private const string Probe = """
        #define _GNU_SOURCE
        #include <errno.h>
        #include <sys/mman.h>
        #include <sys/syscall.h>
        #include <sys/wait.h>
        #include <unistd.h>

        /* 0: the child has the range mapped; 1: it does not; negative: the probe failed. */
        int fork_probe(void *addr, unsigned long len)
        {
            pid_t pid = fork();
            if (pid < 0)
                return -errno;
            if (pid == 0) {
                /* The child runs nothing but system calls before it exits. */
                long r = syscall(SYS_msync, addr, len, MS_ASYNC);
                _exit(r == 0 ? 0 : (errno == ENOMEM ? 1 : 2));
            }
            int status;
            while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                    return -errno;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1000 - WTERMSIG(status);
        }
        """;

    private static nint s_library;
    private unsafe delegate* unmanaged<nint, nuint, int> _forkProbe;

    [OneTimeSetUp]
    public unsafe void BuildProbe()
    {
        if (s_library == 0)
        {
            var gcc = CHeaderCheck.FindGcc() ?? throw new IgnoreException("gcc is not installed: the fork probe cannot be built (make deps installs it).");
            var dir = Directory.CreateTempSubdirectory("fpgaaccel-forkprobe-");
            var source = Path.Combine(dir.FullName, "probe.c");
            var library = Path.Combine(dir.FullName, "probe.so");
            File.WriteAllText(source, Probe);
            using var gccRun = Process.Start(new ProcessStartInfo(gcc, ["-shared", "-fPIC", "-O2", "-o", library, source]) { RedirectStandardError = true })!;
            var errors = gccRun.StandardError.ReadToEnd();
            gccRun.WaitForExit();
            Assert.That(gccRun.ExitCode, Is.Zero, errors);
            s_library = NativeLibrary.Load(library);
        }

        _forkProbe = (delegate* unmanaged<nint, nuint, int>)NativeLibrary.GetExport(s_library, "fork_probe");
    }

    [Test]
    public void AForkedChildDoesNotInheritAHostBuffer()
    {
        using var buffer = HostBuffer.Allocate(64 * 1024);
        buffer.Span.Fill(0x42);
        Assert.That(ChildHasMapped(buffer.Address, buffer.Length), Is.False, "the child inherited the DMA buffer (no MADV_DONTFORK)");
        // proc(5): VmFlags "dc" = do not copy area on fork (VM_DONTCOPY, what MADV_DONTFORK sets; "dd" is VM_DONTDUMP).
        Assert.That(VmFlags(buffer.Address), Does.Contain(" dc "), "smaps shows no DONTFORK (dc) flag");

        using var plain = MemoryMapping.Anonymous(64 * 1024);
        Assert.That(ChildHasMapped(plain.Address, plain.Length), Is.True, "the probe itself: ordinary memory is inherited");
        Assert.That(VmFlags(plain.Address), Does.Not.Contain(" dc "));
    }

    [Test]
    public void RingsAndPageTablesAreNotInheritedEither()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var table = DmaMemory.Allocate(device.Mmu.Iommu, PageTableFormat.PageSize);
        Assert.That(ChildHasMapped(table.Host, table.Length), Is.False, "DMA memory for rings and page tables is inherited by a child");
        Assert.That(VmFlags(table.Host), Does.Contain(" dc "));
    }

    // After a fork the parent's writes still reach the pages the device uses: CPU and device agree.
    [Test]
    public async Task ParentDmaStaysCoherentAcrossAFork()
    {
        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }));
        using var buffer = HostBuffer.Allocate(16 * PageTableFormat.PageSize);
        using var context = device.CreateContext(new ContextOptions { NoFault = true });
        using var pin = context.Pin(buffer, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue();
        buffer.Span.Fill(1);
        Assert.That(ChildHasMapped(buffer.Address, buffer.Length), Is.False);

        new Random(9).NextBytes(buffer.Span);
        var crc = await queue.Crc32CAsync(context, (ulong)buffer.Address, buffer.Length).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That(crc.Result, Is.EqualTo((ulong)Crc32C.Compute(buffer.Span)));
    }

    private static string VmFlags(nint address)
    {
        var inRange = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            var dash = line.IndexOf('-', StringComparison.Ordinal);
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            if (dash > 0 && space > dash
                && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var from)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var to))
            {
                inRange = (ulong)address >= from && (ulong)address < to;
            }
            else if (inRange && line.StartsWith("VmFlags:", StringComparison.Ordinal))
            {
                return line;
            }
        }

        return string.Empty;
    }

    private unsafe bool ChildHasMapped(nint address, ulong length)
    {
        var answer = _forkProbe(address, (nuint)length);
        Assert.That(answer, Is.EqualTo(0).Or.EqualTo(1), "the fork probe failed");
        return answer == 0;
    }
}
