using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;

namespace FpgaAccel.VlabGuest;

/// <summary>
/// The virtual board's guest run (<c>vlab-guest --vboard --device ADDR</c>, started by tests/vboard/init): the FA-1
/// that QEMU's vfio-user-pci presents, served by <c>fpgaaccel model serve</c> on the host, driven by the real
/// <c>fpgaaccel</c> through this guest's kernel: setup binds it to vfio-pci, doctor is healthy, then info, selftest,
/// a short stress and a short jitter run on the board backend. Then a probe measures what only raw VFIO shows: a
/// register read and a posted write from user space, and DMA mappings in 4 KiB and 2 MiB pages.
/// Lines the host reads start with <c>VBOARD-</c>: marks around the stress run (the host snapshots the model's oracle
/// there), the jitter JSON on one line, and measurements as key=value.
/// </summary>
internal static class VirtualBoard
{
    /// <summary>Where the probe maps its 1 MiB of 4 KiB pages; the host counts the DMA_MAP messages in this range.</summary>
    public const ulong SmallPagesIova = 0x4000_0000;

    /// <summary>Where the probe maps its 2 MiB huge page.</summary>
    public const ulong HugePageIova = 0x8000_0000;

    private const string SetupCheck = "vboard.setup";
    private const ulong Scratch = 0x28;
    private const ulong IdRegister = 0x00;
    private static readonly TimeSpan s_toolTimeout = TimeSpan.FromSeconds(300);

    public static void Run(CheckRunner runner, string address)
    {
        runner.Run(SetupCheck, () => Setup.Bind(runner, address));
        runner.Run("vboard.vfio-offers", () => VfioOffers(address), SetupCheck);
        runner.Run("vboard.doctor", () => Doctor(runner, address), SetupCheck);
        runner.Run("vboard.info", () => Info(runner, address), SetupCheck);
        runner.Run("vboard.selftest", () => SelfTest(runner, address), SetupCheck);
        runner.Run("vboard.stress", () => Stress(runner, address), SetupCheck);
        runner.Run("vboard.jitter", () => Jitter(runner, address), SetupCheck);
        runner.Run("vboard.driver.overlapping-pins", () => OverlappingPins(runner, address), SetupCheck);
        runner.Run("vboard.probe.registers", () => ProbeRegisters(runner, address), SetupCheck);
        runner.Run("vboard.probe.dma-maps", () => ProbeDmaMaps(runner, address), SetupCheck);
    }

    // What the board backend needs from the guest's VFIO: a reset (the AF FLR), BAR0 whole and mmappable, MSI-X x3.
    private static void VfioOffers(string address)
    {
        using var pci = VfioPciDevice.Open(address);
        Expect.True(pci.Info.IsPci, "VFIO does not report a PCI device");
        Expect.True(pci.Info.SupportsReset, "VFIO offers no VFIO_DEVICE_RESET: the guest kernel found no function reset (the AF capability's FLR)");
        var bar0 = pci.Device.GetRegionInfo(VfioPciRegion.Bar0);
        Expect.Equal(64UL * 1024, bar0.Size, "BAR0 size");
        Expect.True(bar0.CanMmapRange(0, bar0.Size), "BAR0 is not mmappable as a whole (the MSI-X table must be in BAR2)");
        var msix = pci.Device.GetIrqInfo(VfioPciIrq.Msix);
        Expect.Equal(3u, msix.Count, "MSI-X vectors");
    }

    private static void Doctor(CheckRunner runner, string address)
    {
        var (code, json) = FpgaAccelTool.Run(runner, ["doctor", "--device", address, "--pin-bytes", "64M", "--json"], show: false);
        FpgaAccelTool.Run(runner, ["doctor", "--device", address, "--pin-bytes", "64M"], show: true);
        Expect.Equal(0, code, "exit code of 'fpgaaccel doctor' (0: no check failed)");
        using var document = JsonDocument.Parse(json);
        var statuses = new Dictionary<string, string>();
        foreach (var check in document.RootElement.GetProperty("checks").EnumerateArray())
        {
            var name = check.GetProperty("name").GetString() ?? "";
            var status = check.GetProperty("status").GetString() ?? "";
            statuses.TryAdd(name, status);

            // The board has no management port here, so its checks may be skipped; none may fail.
            Expect.True(status != "fail", $"the doctor's '{name}' check failed");
        }

        foreach (var name in new[] { "iommu", "vfio-container", "device", "driver", "group", "access", "memlock", "hugepages" })
        {
            Expect.True(statuses.GetValueOrDefault(name) == "pass", $"the doctor's '{name}' check is '{statuses.GetValueOrDefault(name) ?? "missing"}', expected 'pass'");
        }
    }

    private static void Info(CheckRunner runner, string address)
    {
        var (code, json) = Tool(runner, ["info", "--backend", "board", "--device", address, "--json"]);
        Expect.Equal(0, code, "exit code of 'fpgaaccel info --backend board'");
        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        Expect.Equal("board", root.GetProperty("backend").GetString() ?? "", "backend");
        Expect.Equal("0x00000000FA01ACCE", root.GetProperty("id").GetString() ?? "", "ID register");
        Expect.Equal("1.0.0", root.GetProperty("version").GetString() ?? "", "VERSION register");
        Expect.Equal(3, root.GetProperty("interrupt_vectors").GetInt32(), "MSI-X vectors in use");
    }

    private static void SelfTest(CheckRunner runner, string address)
    {
        var (code, json) = Tool(runner, ["selftest", "--backend", "board", "--device", address, "--json"]);
        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        var failed = root.GetProperty("checks").EnumerateArray().Where(c => !c.GetProperty("passed").GetBoolean())
            .Select(c => $"{c.GetProperty("name").GetString()}: {c.GetProperty("detail").GetString()}").ToList();
        runner.Note($"{root.GetProperty("checks_passed").GetInt32()} selftest checks passed, {failed.Count} failed, up to {root.GetProperty("largest_size").GetInt64()} bytes");
        Expect.True(failed.Count == 0, $"selftest checks failed: {string.Join("; ", failed.Take(5))}");
        Expect.Equal(0, code, "exit code of 'fpgaaccel selftest --backend board'");
    }

    // The board has no oracle: the host snapshots the model's between the marks and joins the counters to the verdict.
    private static void Stress(CheckRunner runner, string address)
    {
        Console.WriteLine("VBOARD-MARK stress-begin");
        Console.Out.Flush();
        int code;
        string json;
        try
        {
            (code, json) = Tool(runner, ["stress", "--backend", "board", "--device", address, "--seconds", "5", "--threads", "2", "--json"]);
        }
        finally
        {
            Console.WriteLine("VBOARD-MARK stress-end");
            Console.Out.Flush();
        }

        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        runner.Note($"stress: {root.GetProperty("operations").GetInt64()} operations, {root.GetProperty("commands").GetInt64()} commands " +
            $"({root.GetProperty("verified_copies").GetInt64()} copies verified), {root.GetProperty("faults").GetInt64()} faults, " +
            $"{root.GetProperty("evictions").GetInt64()} evictions, oracle on the host");
        var failures = root.GetProperty("failures").EnumerateArray().Select(f => f.GetString()).ToList();
        Expect.True(root.GetProperty("passed").GetBoolean(), $"stress failed: {string.Join("; ", failures)}");
        Expect.Equal(0L, root.GetProperty("data_errors").GetInt64(), "copies with wrong data");
        Expect.Equal(0L, root.GetProperty("deadlocks").GetInt64(), "deadlocks");
        Expect.True(root.GetProperty("verified_copies").GetInt64() > 0, "stress verified no copy");
        Expect.True(root.GetProperty("faults").GetInt64() > 0, "stress took no fault: the on-demand path did not run");
        Expect.Equal(0, code, "exit code of 'fpgaaccel stress --backend board'");
    }

    private static void Jitter(CheckRunner runner, string address)
    {
        const string file = "/tmp/jitter.json";
        var (code, _) = Tool(runner, ["jitter", "--backend", "board", "--device", address, "--mode", "both", "--count", "300", "--warmup", "30", "--json", file]);
        Expect.Equal(0, code, "exit code of 'fpgaaccel jitter --backend board'");
        using var document = JsonDocument.Parse(File.ReadAllBytes(file));
        var modes = document.RootElement.GetProperty("modes");
        foreach (var mode in new[] { "pinned", "ondemand" })
        {
            var m = modes.GetProperty(mode);
            Expect.Equal(300L, m.GetProperty("count").GetInt64(), $"{mode} samples");
            Expect.Equal(0L, m.GetProperty("not_ok").GetInt64(), $"{mode} commands that did not complete OK");
            runner.Note($"jitter {mode}: p50 {Us(m, "p50_ns")} us, p90 {Us(m, "p90_ns")} us, p99 {Us(m, "p99_ns")} us, p99.9 {Us(m, "p999_ns")} us, " +
                $"max {Us(m, "max_ns")} us, {m.GetProperty("faults").GetInt64()} faults");
        }

        Expect.True(modes.GetProperty("ondemand").GetProperty("faults").GetInt64() > 0, "the on-demand mode took no fault");

        // One line, so the host can take it off the serial console whole.
        using var compact = new MemoryStream();
        using (var writer = new Utf8JsonWriter(compact))
        {
            document.WriteTo(writer);
        }

        Console.WriteLine("VBOARD-JITTER-JSON " + System.Text.Encoding.UTF8.GetString(compact.ToArray()));
        Console.Out.Flush();
    }

    // The driver library on the board, where the guest kernel's type1v2 refuses an unmap that splits a mapping:
    // two pins share two pages; releasing the first must leave the shared pages mapped for the second (a copy
    // through them still works) and never ask VFIO to unmap part of a mapping.
    private static void OverlappingPins(CheckRunner runner, string address)
    {
        const ulong page = 4096;
        using var device = FpgaDevice.Open(new FpgaDeviceOptions { Backend = BackendKind.Board, PciAddress = address });
        using var context = device.CreateContext();
        using var queue = device.OpenQueue();
        using var buffer = HostBuffer.Allocate(6 * page);
        var first = context.Pin(buffer.Address, 4 * page, DmaAccess.ReadWrite);
        var second = context.Pin(buffer.Address + (nint)(2 * page), 4 * page, DmaAccess.ReadWrite);
        context.Unpin(first);
        var bytes = buffer.Span;
        bytes.Slice((int)(2 * page), (int)page).Fill(0x5A);
        var result = queue.CopyAsync(context, (ulong)buffer.Address + (2 * page), (ulong)buffer.Address + (5 * page), page).AsTask().GetAwaiter().GetResult();
        Expect.True(result.Succeeded, $"a copy through the pin still held completed {result.Status}");
        Expect.True(bytes.Slice((int)(5 * page), (int)page).IndexOfAnyExcept((byte)0x5A) < 0, "the copy's bytes differ from its source");
        context.Unpin(second);
        runner.Note($"two pins over 6 pages sharing 2, the first released, a copy through the second: {result.Status}");
    }

    // Register read round trip and posted write, from user space through the guest's BAR0 mapping: each read is a
    // REGION_READ the server answers, each write a posted REGION_WRITE (one read at the end waits for them all).
    private static void ProbeRegisters(CheckRunner runner, string address)
    {
        const int count = 2000;
        using var pci = VfioPciDevice.Open(address);
        pci.Device.EnableBusMastering();
        using var bar0 = pci.Device.MapRegion(pci.Device.GetRegionInfo(VfioPciRegion.Bar0), 0, 64 * 1024);
        Expect.Equal(0x0000_0000_FA01_ACCEUL, bar0.Read64(IdRegister), "ID through the probe's own BAR0 mapping");
        var reads = new double[count];
        for (var i = 0; i < count; i++)
        {
            var start = Stopwatch.GetTimestamp();
            _ = bar0.Read64(Scratch);
            reads[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }

        var clock = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            bar0.Write64(Scratch, (ulong)i);
        }

        var last = bar0.Read64(Scratch);
        var writes = clock.Elapsed.TotalMicroseconds / count;
        Expect.Equal((ulong)(count - 1), last, "SCRATCH after the posted writes (they land in order)");
        Array.Sort(reads);
        var line = string.Create(CultureInfo.InvariantCulture,
            $"register_read_us_p50={reads[count / 2]:F1} register_read_us_p99={reads[count * 99 / 100]:F1} register_read_us_mean={reads.Average():F1} posted_write_us_mean={writes:F1}");
        runner.Note(line);
        Console.WriteLine("VBOARD-MEASURE " + line);
        Console.Out.Flush();
    }

    // DMA mappings as the guest's type1 makes them: 1 MiB of 4 KiB pages in one VFIO_IOMMU_MAP_DMA, then one 2 MiB
    // huge page. The guest's IOMMU turns them into DMA_MAP messages; the host counts those in each range.
    private static void ProbeDmaMaps(CheckRunner runner, string address)
    {
        using var pci = VfioPciDevice.Open(address);
        using (var small = MemoryMapping.Anonymous(1 << 20, populate: true))
        {
            pci.Container.MapDma(SmallPagesIova, small.Address, small.Length, DmaAccess.ReadWrite);
            Expect.Equal(small.Length, pci.Container.UnmapDma(SmallPagesIova, small.Length), "bytes unmapped (4 KiB pages)");
        }

        using (var huge = MemoryMapping.AnonymousHugePages(2 << 20))
        {
            pci.Container.MapDma(HugePageIova, huge.Address, huge.Length, DmaAccess.ReadWrite);
            Expect.Equal(huge.Length, pci.Container.UnmapDma(HugePageIova, huge.Length), "bytes unmapped (2 MiB page)");
        }

        var line = string.Create(CultureInfo.InvariantCulture,
            $"probe_small_pages_iova=0x{SmallPagesIova:x} probe_small_pages_bytes={1 << 20} probe_huge_page_iova=0x{HugePageIova:x} probe_huge_page_bytes={2 << 20}");
        runner.Note(line);
        Console.WriteLine("VBOARD-MEASURE " + line);
        Console.Out.Flush();
    }

    private static (int Code, string Output) Tool(CheckRunner runner, string[] arguments)
    {
        runner.Note($"$ fpgaaccel {string.Join(' ', arguments)}");
        var clock = Stopwatch.StartNew();
        var result = FpgaAccelTool.Run(runner, arguments, show: false, s_toolTimeout);
        runner.Note(string.Create(CultureInfo.InvariantCulture, $"  (exit code {result.ExitCode}, {clock.Elapsed.TotalSeconds:F1} s)"));
        return result;
    }

    private static string Us(JsonElement mode, string field) =>
        (mode.GetProperty(field).GetDouble() / 1000).ToString("F0", CultureInfo.InvariantCulture);
}
