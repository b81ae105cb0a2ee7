using System.Globalization;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Diagnostics;

/// <summary>One check of the self-test.</summary>
/// <param name="Name">What was checked, e.g. <c>copy 4097 B src+1 dst+4093</c>.</param>
/// <param name="Passed">Whether the device's result matched the CPU's.</param>
/// <param name="Detail">What went wrong, or a short note.</param>
public sealed record SelfTestCheck(string Name, bool Passed, string Detail);

/// <summary>What <see cref="SelfTest.RunAsync"/> found.</summary>
/// <param name="Checks">Every check, in the order it ran.</param>
/// <param name="LargestSize">The largest transfer checked: <see cref="SelfTest.MaxSize"/>, or less when the pin limit is lower.</param>
/// <param name="Note">Why fewer sizes were checked than usual (the pin limit), or null.</param>
public sealed record SelfTestReport(IReadOnlyList<SelfTestCheck> Checks, ulong LargestSize, string? Note)
{
    /// <summary>Checks whose device result matched the CPU's.</summary>
    public int PassedCount => Checks.Count(c => c.Passed);

    /// <summary>Checks whose device result differed, or whose command did not complete OK.</summary>
    public int FailedCount => Checks.Count(c => !c.Passed);

    /// <summary>True when at least one check ran and none failed: the device is fit for use.</summary>
    public bool AllPassed => FailedCount == 0 && Checks.Count > 0;
}

/// <summary>
/// Liveness through SCRATCH, then COPY, FILL and CRC32C against the CPU over sizes from 1 byte to
/// 8 MiB, unaligned offsets, and ranges crossing 4 KiB and 2 MiB boundaries. Each device result is
/// compared byte for byte, including guard bytes around the destination that must stay untouched.
/// </summary>
public static class SelfTest
{
    /// <summary>The largest transfer checked when the pin limit allows it.</summary>
    public const ulong MaxSize = 8UL << 20;

    private const ulong Slack = 4UL << 20;
    private const byte Guard = 0xE7;

    /// <summary>
    /// Runs every check on <paramref name="device"/> with data from <paramref name="seed"/>, reporting each one to
    /// <paramref name="progress"/> as it finishes; uses one context, one queue and two pinned buffers of its own.
    /// </summary>
    public static async Task<SelfTestReport> RunAsync(FpgaDevice device, int seed = 1, Action<SelfTestCheck>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        var checks = new List<SelfTestCheck>();
        void Add(SelfTestCheck c)
        {
            checks.Add(c);
            progress?.Invoke(c);
        }

        foreach (var pattern in new ulong[] { 0, 0x5555_5555_5555_5555, 0xAAAA_AAAA_AAAA_AAAA, 0xA5A5_5A5A_0123_4567 })
        {
            Add(new SelfTestCheck($"liveness scratch 0x{pattern:X16}", device.CheckLiveness(pattern), "SCRATCH read back what was written"));
        }

        // Size the buffers to the pin limit when one is enforced: two buffers plus rings and tables.
        var (limit, enforced) = device.PinLimit;
        var largest = MaxSize;
        string? note = null;
        while (enforced && (2 * (largest + Slack)) + (1UL << 20) > limit - Math.Min(limit, device.PinnedBytes) && largest > 4096)
        {
            largest /= 2;
        }

        if (largest < MaxSize)
        {
            note = $"the pin limit ({limit} bytes) allows transfers up to {largest} bytes; raise RLIMIT_MEMLOCK to check {MaxSize}";
        }

        using var source = HostBuffer.Allocate(largest + Slack);
        using var destination = HostBuffer.Allocate(largest + Slack);
        using var context = device.CreateContext(new ContextOptions { NoFault = true });
        using var sourcePin = context.Pin(source, DmaAccess.DeviceRead);
        using var destinationPin = context.Pin(destination, DmaAccess.ReadWrite);
        using var queue = device.OpenQueue(0, 64);
        var random = new Random(seed);
        random.NextBytes(source.Span);

        foreach (var (size, srcOffset, dstOffset) in Cases(largest))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var label = string.Create(CultureInfo.InvariantCulture, $"{size} B src+{srcOffset} dst+{dstOffset}");
            Add(await CheckCopyAsync(queue, context, source, destination, size, srcOffset, dstOffset, label, cancellationToken).ConfigureAwait(false));
            Add(await CheckFillAsync(queue, context, destination, size, dstOffset, (ulong)random.NextInt64(), label, cancellationToken).ConfigureAwait(false));
            Add(await CheckCrcAsync(queue, context, source, size, srcOffset, label, cancellationToken).ConfigureAwait(false));
        }

        return new SelfTestReport(checks, largest, note);
    }

    /// <summary>Sizes from 1 byte to the largest, at offsets that are aligned, unaligned, and crossing 4 KiB and 2 MiB.</summary>
    internal static IEnumerable<(ulong Size, ulong SourceOffset, ulong DestinationOffset)> Cases(ulong largest)
    {
        const ulong mb2 = PageTableFormat.HugePageSize;
        ulong[] sizes = [1, 7, 8, 63, 64, 4095, 4096, 4097, 65536 + 3, mb2 - 1, mb2 + 1, 3UL << 20, largest];
        foreach (var size in sizes.Where(s => s <= largest).Distinct())
        {
            yield return (size, 0, 0);
            yield return (size, 1, 7);
            if (size <= 8192)
            {
                yield return (size, 4096 - 3, 4096 - 1);            // crossing 4 KiB
                yield return (size, mb2 - 5, mb2 - 2);              // crossing 2 MiB
            }
            else
            {
                yield return (size, mb2 - 3, mb2 + 5); // starts just below a 2 MiB boundary, unaligned
            }
        }
    }

    private static async Task<SelfTestCheck> CheckCopyAsync(CommandQueue queue, DeviceContext context, HostBuffer source, HostBuffer destination, ulong size, ulong srcOffset, ulong dstOffset, string label, CancellationToken ct)
    {
        destination.Span.Fill(Guard);
        var result = await queue.CopyAsync(context, (ulong)source.Address + srcOffset, (ulong)destination.Address + dstOffset, size, ct).ConfigureAwait(false);
        if (!result.Succeeded)
        {
            return new SelfTestCheck("copy " + label, false, $"status {result.Status}");
        }

        var expected = source.Span.Slice((int)srcOffset, (int)size);
        var actual = destination.Span.Slice((int)dstOffset, (int)size);
        var mismatch = expected.CommonPrefixLength(actual);
        if (mismatch != (int)size)
        {
            return new SelfTestCheck("copy " + label, false, $"byte {mismatch} differs: 0x{actual[mismatch]:X2}, expected 0x{expected[mismatch]:X2}");
        }

        return CheckGuards("copy " + label, destination, dstOffset, size, result);
    }

    private static async Task<SelfTestCheck> CheckFillAsync(CommandQueue queue, DeviceContext context, HostBuffer destination, ulong size, ulong dstOffset, ulong pattern, string label, CancellationToken ct)
    {
        destination.Span.Fill(Guard);
        var result = await queue.FillAsync(context, (ulong)destination.Address + dstOffset, size, pattern, ct).ConfigureAwait(false);
        if (!result.Succeeded)
        {
            return new SelfTestCheck("fill " + label, false, $"status {result.Status}");
        }

        var actual = destination.Span.Slice((int)dstOffset, (int)size);
        for (var i = 0; i < actual.Length; i++)
        {
            var want = (byte)(pattern >> (8 * (i % 8)));
            if (actual[i] != want)
            {
                return new SelfTestCheck("fill " + label, false, $"byte {i} is 0x{actual[i]:X2}, expected 0x{want:X2} (pattern 0x{pattern:X16})");
            }
        }

        return CheckGuards("fill " + label, destination, dstOffset, size, result);
    }

    private static async Task<SelfTestCheck> CheckCrcAsync(CommandQueue queue, DeviceContext context, HostBuffer source, ulong size, ulong srcOffset, string label, CancellationToken ct)
    {
        var result = await queue.Crc32CAsync(context, (ulong)source.Address + srcOffset, size, ct).ConfigureAwait(false);
        if (!result.Succeeded)
        {
            return new SelfTestCheck("crc32c " + label, false, $"status {result.Status}");
        }

        var expected = Crc32C.Compute(source.Span.Slice((int)srcOffset, (int)size));
        return result.Result == expected
            ? new SelfTestCheck("crc32c " + label, true, $"0x{expected:X8} in {result.DeviceCycles} cycles")
            : new SelfTestCheck("crc32c " + label, false, $"device 0x{result.Result:X8}, CPU 0x{expected:X8}");
    }

    private static SelfTestCheck CheckGuards(string name, HostBuffer destination, ulong offset, ulong size, CommandResult result)
    {
        var span = destination.Span;
        var before = span[..(int)offset].IndexOfAnyExcept(Guard);
        var after = span[(int)(offset + size)..].IndexOfAnyExcept(Guard);
        if (before >= 0 || after >= 0)
        {
            return new SelfTestCheck(name, false, before >= 0 ? $"wrote byte {before} of the buffer, before the range" : $"wrote {after} bytes past the end of the range");
        }

        return new SelfTestCheck(name, true, $"{result.DeviceCycles} cycles");
    }
}
