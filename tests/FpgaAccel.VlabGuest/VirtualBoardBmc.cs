using System.Diagnostics;
using System.Globalization;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.Driver.Queues;
using FpgaAccel.Interop;
using FpgaAccel.Management;
using FpgaAccel.Management.Ftdi;

namespace FpgaAccel.VlabGuest;

/// <summary>
/// Issue 14 on the virtual board: the host serves the FA-1's BMC beside it (<c>fpgaaccel model serve --bmc-socket</c>),
/// reached here through QEMU's usb-serial, the kernel's USB stack and libusb, as a board's management port would be.
/// Its RESET power-cycles the very FA-1 this guest drives (spec 8): the driver, with a stream of copies in flight, must
/// declare the device Lost and release every waiter with <see cref="DeviceLostException"/> within a bound, then
/// <see cref="FpgaDevice.Recover"/> waits for it to come back, restores it (bus mastering, decision R19; MSI-X; rings)
/// and copies move the right bytes again.
/// </summary>
internal static class VirtualBoardBmc
{
    private const int Size = 64 * 1024;
    private const int InFlight = 4;
    private static readonly TimeSpan s_lossBound = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan s_commandBound = TimeSpan.FromSeconds(30);

    public static void Run(CheckRunner runner, string address)
    {
        const string found = "vboard.bmc-usb-device";
        runner.Run(found, () => Bmc.WaitForBridge(runner));
        runner.Run("vboard.bmc-reset", () => ResetAcrossTheDriver(runner, address), found);
    }

    private static void ResetAcrossTheDriver(CheckRunner runner, string address)
    {
        using var device = FpgaDevice.Open(new FpgaDeviceOptions { Backend = BackendKind.Board, PciAddress = address, RecoverTimeout = TimeSpan.FromSeconds(15) });
        var changes = new List<(DeviceState State, DateTimeOffset At)>();
        using var changed = new ManualResetEventSlim();
        device.StateChanged += (_, e) =>
        {
            lock (changes)
            {
                changes.Add((e.State, e.Timestamp));
            }

            changed.Set();
        };
        using var context = device.CreateContext();
        using var queue = device.OpenQueue();
        using var src = HostBuffer.Allocate(Size);
        using var dst = HostBuffer.Allocate(Size);
        using var srcPin = context.Pin(src, DmaAccess.DeviceRead);
        using var dstPin = context.Pin(dst, DmaAccess.DeviceWrite);
        Copies(queue, context, src, dst, rounds: 3, seed: 1);

        // A stream of copies, InFlight at a time, until the device fails them (spec 5: same source, same bytes).
        using var stop = new CancellationTokenSource();
        long completed = 0;
        var stream = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var batch = new Task<CommandResult>[InFlight];
                for (var i = 0; i < InFlight; i++)
                {
                    batch[i] = queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, Size).AsTask();
                }

                foreach (var t in batch)
                {
                    _ = await t.WaitAsync(s_commandBound);
                    Interlocked.Increment(ref completed);
                }
            }
        });
        Expect.True(SpinWait.SpinUntil(() => Interlocked.Read(ref completed) >= 8, TimeSpan.FromSeconds(30)), "the stream of copies did not get going");

        using (var bmc = new BmcClient(FtdiSerialLink.Open(new FtdiOptions { Id = Bmc.QemuUsbSerial }), new BmcClientOptions { RequestTimeout = TimeSpan.FromSeconds(5) }))
        {
            var sent = DateTimeOffset.UtcNow;
            var clock = Stopwatch.StartNew();
            bmc.Reset();
            var replied = clock.Elapsed;

            // Every waiter is released with the loss, by detection (the health check), not by a command's deadline.
            var ended = Task.WhenAny(stream, Task.Delay(s_lossBound)).GetAwaiter().GetResult();
            Expect.True(ended == stream, $"the stream of copies was not released within {s_lossBound.TotalSeconds} s of RESET (state {device.State})");
            var failure = stream.Exception?.InnerException;
            Expect.True(failure is DeviceLostException, $"the copies in flight ended with {failure?.GetType().Name ?? "no exception"}, not DeviceLostException: {failure?.Message}");
            var released = clock.Elapsed;
            Expect.True(device.State == DeviceState.Lost, $"the device's state after RESET is {device.State}, not Lost");
            var lostAt = WaitFor(changes, changed, DeviceState.Lost);
            Expect.True(lostAt is not null, "no StateChanged to Lost");

            Expect.Throws<DeviceLostException>(() => queue.NopAsync(context).AsTask().WaitAsync(s_lossBound).GetAwaiter().GetResult(), "a command submitted to the lost device");

            // Spec 8: the BMC keeps the FA-1 off the bus about a second; Recover() waits for it (bounded) and restores it.
            var recoverClock = Stopwatch.StartNew();
            Expect.True(device.Recover(), "Recover() found nothing to recover");
            var recovered = recoverClock.Elapsed;
            var readyAt = WaitFor(changes, changed, DeviceState.Ready);
            Expect.True(device.State == DeviceState.Ready, $"the device's state after Recover() is {device.State}, not Ready");
            Expect.True(readyAt is not null, "no StateChanged to Ready");

            Copies(queue, context, src, dst, rounds: 20, seed: 2);
            Expect.True(device.State == DeviceState.Ready, $"the device's state after the copies is {device.State}, not Ready");
            Expect.Equal(1L, device.Recoveries, "recoveries");

            var toLost = (lostAt!.Value - sent).TotalMilliseconds;
            var toReady = (readyAt!.Value - sent).TotalMilliseconds;
            var line = string.Create(CultureInfo.InvariantCulture,
                $"bmc_reset_reply_ms={replied.TotalMilliseconds:F1} bmc_reset_to_lost_ms={toLost:F1} bmc_reset_to_released_ms={released.TotalMilliseconds:F1} " +
                $"bmc_reset_to_ready_ms={toReady:F1} bmc_recover_call_ms={recovered.TotalMilliseconds:F1} bmc_copies_before={Interlocked.Read(ref completed)}");
            runner.Note(line);
            Console.WriteLine("VBOARD-MEASURE " + line);
            Console.Out.Flush();
        }

        stop.Cancel();
    }

    // Copies of fresh bytes, each checked: the device moves the right bytes (after a recovery too).
    private static void Copies(CommandQueue queue, DeviceContext context, HostBuffer src, HostBuffer dst, int rounds, int seed)
    {
        var random = new Random(seed);
        var expected = new byte[Size];
        for (var round = 0; round < rounds; round++)
        {
            random.NextBytes(expected);
            expected.CopyTo(src.Span);
            dst.Span.Clear();
            var result = queue.CopyAsync(context, (ulong)src.Address, (ulong)dst.Address, Size).AsTask().WaitAsync(s_commandBound).GetAwaiter().GetResult();
            Expect.True(result.Succeeded, $"copy {round} completed {result.Status}");
            Expect.True(dst.Span.SequenceEqual(expected), $"copy {round}'s bytes differ from its source");
        }
    }

    private static DateTimeOffset? WaitFor(List<(DeviceState State, DateTimeOffset At)> changes, ManualResetEventSlim changed, DeviceState state)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < s_lossBound)
        {
            lock (changes)
            {
                foreach (var (s, at) in changes)
                {
                    if (s == state)
                    {
                        return at;
                    }
                }

                changed.Reset();
            }

            changed.Wait(TimeSpan.FromMilliseconds(50));
        }

        return null;
    }
}
