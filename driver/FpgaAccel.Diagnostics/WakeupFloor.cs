using System.Diagnostics;
using FpgaAccel.Interop;

namespace FpgaAccel.Diagnostics;

/// <summary>
/// The machine's wake-up floor: one thread writes an eventfd, another blocked in epoll_wait on it wakes and reads it,
/// then answers on a second eventfd the same way (a ping-pong). The fault service's time is reported as a ratio to
/// this floor measured in the same run (issue 15): a fault's service cannot be cheaper than the wake-up that starts it.
/// </summary>
public static class WakeupFloor
{
    /// <summary>
    /// Measures <paramref name="count"/> one-way wake-ups (write on one thread to return from epoll_wait on the other,
    /// both directions), in ns, after <paramref name="warmup"/> unmeasured round trips. Bounded: each wait times out
    /// after a second, which ends the measurement with the samples taken so far.
    /// </summary>
    public static LatencyStats Measure(int count = 2000, int warmup = 200)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        using var ping = EventFd.Create();
        using var pong = EventFd.Create();
        var samples = new double[2 * count];
        var taken = 0;
        long sentAt = 0;
        var stop = false;
        var partner = new Thread(() =>
        {
            using var epoll = Epoll.Create();
            epoll.Add(ping.Handle, EpollEvents.In, 1);
            Span<EpollReady> ready = stackalloc EpollReady[1];
            for (var i = 0; i < warmup + count && !Volatile.Read(ref stop); i++)
            {
                if (epoll.Wait(ready, 1000) == 0)
                {
                    return;
                }

                var now = Stopwatch.GetTimestamp();
                ping.TryRead(out _);
                if (i >= warmup)
                {
                    samples[taken++] = Stopwatch.GetElapsedTime(Volatile.Read(ref sentAt), now).TotalNanoseconds;
                }

                Volatile.Write(ref sentAt, Stopwatch.GetTimestamp());
                pong.Signal();
            }
        })
        { IsBackground = true, Name = "fpgaaccel-floor" };
        partner.Start();
        using (var epoll = Epoll.Create())
        {
            epoll.Add(pong.Handle, EpollEvents.In, 1);
            Span<EpollReady> ready = stackalloc EpollReady[1];
            for (var i = 0; i < warmup + count; i++)
            {
                Volatile.Write(ref sentAt, Stopwatch.GetTimestamp());
                ping.Signal();
                if (epoll.Wait(ready, 1000) == 0)
                {
                    break;
                }

                var now = Stopwatch.GetTimestamp();
                pong.TryRead(out _);
                if (i >= warmup)
                {
                    samples[count + i - warmup] = Stopwatch.GetElapsedTime(Volatile.Read(ref sentAt), now).TotalNanoseconds;
                }
            }
        }

        Volatile.Write(ref stop, true);
        partner.Join(TimeSpan.FromSeconds(2));
        return LatencyStats.From(samples.AsSpan().ToArray().Where(v => v > 0).ToArray());
    }
}
