using System.Runtime.CompilerServices;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>
/// IRQ_STATUS, IRQ_MASK and MSI-X delivery through real Linux eventfds (spec 1, 3).
/// All members run with the model's register lock held.
/// </summary>
/// <remarks>
/// Deferred messages (issue 15, decision D39): an engine that raises a cause while it holds the register lock (a fault record, a
/// completion) would otherwise wake the driver's thread while still holding the lock that thread needs first (IRQ_STATUS,
/// FQ_TAIL): on two cores the woken thread spins or sleeps on the lock until the engine lets go, which is model overhead
/// a board does not have. Between <see cref="BeginDeferral"/> and <see cref="EndDeferral"/> the causes latch and the
/// messages are decided (mask, lost-message injection, vector) under the lock as before, but the eventfd writes are
/// handed back to the caller, which makes them once it has released the lock. Order is kept: every register and record
/// the message announces was written before the lock was released, so a driver woken by it sees them; a reset between
/// the release and the write at worst delivers a message from before it, which a board's in-flight MSI-X can do too.
/// </remarks>
internal sealed class InterruptController
{
    private readonly int _grantedByHost;
    private EventFd?[] _vectors = [];
    private PendingMessages _deferred;
    private int _deferredCount;
    private int _deferring;
    private long _messages;
    private long _lost;
    private int _toLose;

    public InterruptController(int grantedByHost) => _grantedByHost = grantedByHost;

    /// <summary>Latched causes (IRQ_STATUS).</summary>
    public ulong Status { get; set; }

    /// <summary>Masked causes (IRQ_MASK): 1 = no message, the status still latches.</summary>
    public ulong Mask { get; set; }

    public long Messages => Interlocked.Read(ref _messages);

    /// <summary>Messages lost on the way to the host by fault injection (R5).</summary>
    public long Lost => Interlocked.Read(ref _lost);

    /// <summary>Fault injection (R5): the next <paramref name="count"/> messages sent to a connected vector are lost.</summary>
    public void LoseNext(int count) => _toLose = count;

    /// <summary>A cold reset (R1): messages still to be lost are forgotten with the link.</summary>
    public void ForgetLostMessages() => _toLose = 0;

    /// <summary>Vectors connected now (0 when none).</summary>
    public int Connected => _vectors.Length;

    /// <summary>
    /// Connects eventfds as MSI-X vectors, as VFIO_DEVICE_SET_IRQS does on the board. The host grants
    /// at most <c>MsixVectors</c> of the model's options; returns how many are in use.
    /// </summary>
    public int Connect(IReadOnlyList<EventFd?> vectors)
    {
        var count = Math.Min(vectors.Count, _grantedByHost);
        count = count >= Fa1Identity.MsixVectors ? Fa1Identity.MsixVectors : Math.Min(count, 1);
        var connected = new EventFd?[count];
        for (var i = 0; i < count; i++)
        {
            connected[i] = vectors[i];
        }

        _vectors = connected;
        return count;
    }

    public void Disconnect() => _vectors = [];

    /// <summary>Messages sent from now on are held for the caller (register lock held; see the remarks).</summary>
    public void BeginDeferral() => _deferring++;

    /// <summary>
    /// Ends a deferral (register lock held): the held messages are moved to <paramref name="messages"/>, for the caller to
    /// <see cref="Deliver"/> once it has released the lock. Returns how many. Nested deferrals hand them to the outermost.
    /// </summary>
    public int EndDeferral(ref PendingMessages messages)
    {
        if (--_deferring > 0 || _deferredCount == 0)
        {
            return 0;
        }

        var count = _deferredCount;
        for (var i = 0; i < count; i++)
        {
            messages[i] = _deferred[i];
            _deferred[i] = null;
        }

        _deferredCount = 0;
        return count;
    }

    /// <summary>Writes the eventfds <see cref="EndDeferral"/> handed back (no lock held).</summary>
    public void Deliver(ref PendingMessages messages, int count)
    {
        for (var i = 0; i < count; i++)
        {
            Signal(messages[i]!);
            messages[i] = null;
        }
    }

    /// <summary>Latches <paramref name="causes"/> and sends a message for each unmasked one.</summary>
    public void Raise(InterruptCauses causes)
    {
        Status |= (ulong)causes;
        Send((ulong)causes & ~Mask);
    }

    /// <summary>
    /// Decision (the spec is silent): unmasking a cause whose status bit is latched sends its message
    /// then, as an MSI-X pending bit would, so a driver that masks, works and unmasks loses nothing.
    /// </summary>
    public void WriteMask(ulong newMask)
    {
        var unmasked = Mask & ~newMask;
        Mask = newMask & (ulong)InterruptCauses.All;
        Send(unmasked & Status);
    }

    public void ClearStatus(ulong bits) => Status &= ~bits;

    public void Reset()
    {
        Status = 0;
        Mask = 0;
    }

    private void Send(ulong causes)
    {
        if (causes == 0 || _vectors.Length == 0)
        {
            return;
        }

        for (var bit = 0; bit < Fa1Identity.MsixVectors; bit++)
        {
            if ((causes & (1UL << bit)) == 0)
            {
                continue;
            }

            // With a single vector every cause shares vector 0; the driver reads IRQ_STATUS (spec 1).
            var vector = _vectors.Length == 1 ? 0 : bit;
            var fd = _vectors[vector];
            if (fd is null)
            {
                continue;
            }

            if (_toLose > 0)
            {
                // R5: a lost MSI-X message is a posted write that never reached the host; the cause stays
                // latched in IRQ_STATUS, so a driver that polls it (or the rings) still finds the work.
                _toLose--;
                Interlocked.Increment(ref _lost);
                continue;
            }

            if (_deferring > 0)
            {
                // One message per vector is enough: the eventfd counts, and the driver drains whatever latched.
                if (_deferredCount < PendingMessages.Capacity && !IsDeferred(fd))
                {
                    _deferred[_deferredCount++] = fd;
                }

                continue;
            }

            Signal(fd);
        }
    }

    private bool IsDeferred(EventFd fd)
    {
        for (var i = 0; i < _deferredCount; i++)
        {
            if (ReferenceEquals(_deferred[i], fd))
            {
                return true;
            }
        }

        return false;
    }

    private void Signal(EventFd fd)
    {
        try
        {
            fd.Signal();
            Interlocked.Increment(ref _messages);
        }
        catch (ObjectDisposedException)
        {
            // The host closed the eventfd without disconnecting it: the message goes nowhere,
            // as it would on a board whose MSI-X entry was torn down.
        }
    }
}

/// <summary>MSI-X messages held during a deferral, one per vector at most (no allocation).</summary>
[InlineArray(Capacity)]
internal struct PendingMessages
{
    /// <summary>The device's vectors.</summary>
    public const int Capacity = Fa1Identity.MsixVectors;

    private EventFd? _element;
}
