using System.Diagnostics;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Driver.Mmu;

/// <summary>
/// A point in the device's invalidation stream: passed when INV_DONE has counted up to it (spec 4.3).
/// Fences from several invalidations can be collected and waited on once (the latest covers the rest).
/// </summary>
internal readonly record struct InvalidationFence(ulong Sequence);

/// <summary>
/// Issues TLB invalidations (INV_ADDR, INV_PAGES, INV_CMD) and waits for their fences (INV_DONE).
/// </summary>
/// <remarks>
/// Invariant: the n-th INV_CMD write this driver makes since reset is invalidation n, and INV_DONE
/// counts completed ones in issue order, so INV_DONE &gt;= n means invalidation n (and all before it)
/// completed. Argument: the three register writes of one invalidation happen under <see cref="_lock"/>,
/// so invalidations reach the device whole and in the order their sequence numbers were taken.
/// The device is not trusted: an INV_DONE above what was issued is reported, not believed.
/// </remarks>
internal sealed class TlbInvalidator
{
    private static readonly TimeSpan s_yieldOnly = TimeSpan.FromMicroseconds(200);
    private readonly IDeviceBackend _backend;
    private readonly TimeSpan _timeout;
    private readonly Lock _lock = new();
    private ulong _issued;
    private int _waiters;

    public TlbInvalidator(IDeviceBackend backend, TimeSpan timeout)
    {
        _backend = backend;
        _timeout = timeout;
        _issued = backend.Read64(Fa1Registers.InvDone);
    }

    /// <summary>The device's health: fence waiters end with its failure, and a fence past its deadline declares it hung.</summary>
    public Health.DeviceHealth? Health { get; set; }

    /// <summary>Threads waiting for a fence now (the health check runs while any does).</summary>
    public int Waiters => Volatile.Read(ref _waiters);

    /// <summary>After a reset (issue 12 recovery): INV_DONE restarted from 0, and so does the issue count.</summary>
    public void Resync()
    {
        lock (_lock)
        {
            var done = _backend.Read64(Fa1Registers.InvDone);
            if (done == Fa1Identity.DeviceLost)
            {
                throw new DeviceLostException("while reading INV_DONE after the reset", _backend.Description);
            }

            Volatile.Write(ref _issued, done);
        }
    }

    /// <summary>Invalidations issued since open.</summary>
    public ulong Issued => Volatile.Read(ref _issued);

    /// <summary>Invalidates <paramref name="pages"/> pages from <paramref name="dva"/> in <paramref name="context"/>.</summary>
    public InvalidationFence InvalidateRange(int context, ulong dva, ulong pages) =>
        pages == 0 ? InvalidateContext(context) : Issue(new InvalidationCommand((byte)context, InvalidationScope.Range), dva, pages);

    /// <summary>Invalidates every translation of <paramref name="context"/>.</summary>
    public InvalidationFence InvalidateContext(int context) =>
        Issue(new InvalidationCommand((byte)context, InvalidationScope.Context), 0, 0);

    /// <summary>Invalidates every translation of every context.</summary>
    public InvalidationFence InvalidateAll() => Issue(new InvalidationCommand(0, InvalidationScope.AllContexts), 0, 0);

    /// <summary>True when <paramref name="fence"/> has passed.</summary>
    public bool HasPassed(InvalidationFence fence) => ReadDone() >= fence.Sequence;

    /// <summary>
    /// Waits until <paramref name="fence"/> has passed: after it no access goes through the dropped translations.
    /// Ends with the device's failure as soon as the device is declared lost, FATAL or hung (issue 12), and declares it
    /// hung itself when the fence passes its deadline.
    /// </summary>
    public void Wait(InvalidationFence fence)
    {
        // Timestamps, not a Stopwatch object: the fault path's evictions wait here and allocate nothing.
        ScheduleHooks.At(SchedulePoint.FenceWaiting);
        var start = Stopwatch.GetTimestamp();
        var spin = default(SpinWait);
        var health = Health;
        var counted = false;
        try
        {
            while (true)
            {
                if (health?.Failure is { } failure)
                {
                    throw failure;
                }

                if (ReadDone() >= fence.Sequence)
                {
                    return;
                }

                if (!counted)
                {
                    counted = true;
                    Interlocked.Increment(ref _waiters);
                    health?.Kick();
                }

                if (Stopwatch.GetElapsedTime(start) > _timeout)
                {
                    var state = $"INV_DONE = {ReadDone()}, waiting for {fence.Sequence}";
                    var hung = new DeviceHungException("TLB invalidation fence", _timeout, state);
                    health?.Fail(DeviceState.Hung, $"the TLB invalidation fence passed its {_timeout.TotalMilliseconds:0} ms deadline ({state})", hung);
                    throw hung;
                }

                // Yield, never sleep, for the first 200 us: a fence usually passes within microseconds (the model's
                // invalidation costs 50 cycles plus the access in flight), and SpinWait's Sleep(1) costs a whole
                // millisecond, which the fault service's step timing showed as the reclaim's whole cost (issue 15).
                spin.SpinOnce(sleep1Threshold: Stopwatch.GetElapsedTime(start) < s_yieldOnly ? -1 : 200);
            }
        }
        finally
        {
            if (counted)
            {
                Interlocked.Decrement(ref _waiters);
            }
        }
    }

    private InvalidationFence Issue(InvalidationCommand command, ulong dva, ulong pages)
    {
        InvalidationFence fence;
        lock (_lock)
        {
            _backend.Write64(Fa1Registers.InvAddr, dva & ~(PageTableFormat.PageSize - 1));
            _backend.Write64(Fa1Registers.InvPages, pages);
            _backend.Write64(Fa1Registers.InvCmd, command.Raw);
            fence = new InvalidationFence(++_issued);
        }

        ScheduleHooks.At(SchedulePoint.InvalidationIssued);
        return fence;
    }

    private ulong ReadDone()
    {
        var done = _backend.Read64(Fa1Registers.InvDone);
        if (done == Fa1Identity.DeviceLost)
        {
            Health?.ReportAllOnes("in INV_DONE while waiting for a TLB invalidation fence");
            throw new DeviceLostException("while waiting for a TLB invalidation fence", _backend.Description);
        }

        if (done > Volatile.Read(ref _issued))
        {
            throw new DeviceProtocolException($"INV_DONE reads {done} but only {Volatile.Read(ref _issued)} invalidations were issued (spec 4.3); the device cannot be trusted to fence. Reset it.");
        }

        return done;
    }
}
