using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim;

/// <summary>
/// IRQ_STATUS, IRQ_MASK and MSI-X delivery through real Linux eventfds (spec 1, 3).
/// All members run with the model's register lock held.
/// </summary>
internal sealed class InterruptController
{
    private readonly int _grantedByHost;
    private EventFd?[] _vectors = [];
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
}
