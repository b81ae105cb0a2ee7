using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;

namespace FpgaAccel.HwSim.VfioUser;

/// <summary>
/// The FA-1's MSI-X vectors as the client wires them (the concern of libvfio-user's irq.c): SET_IRQS gives each
/// vector an eventfd, and the model's interrupt controller signals them while the function's MSI-X enable bit is set.
/// </summary>
/// <remarks>
/// <para>Masking belongs to the client: QEMU emulates the MSI-X table and pending bits itself and checks a vector's
/// mask when its eventfd fires, so this side signals whenever the model raises a vector (decision V5).</para>
/// <para>Wiring: the model is given vectors 0..n-1, n being one past the highest vector with an eventfd. With vector 0
/// alone wired (a host that granted one vector) every cause arrives on it (spec 1, decision V5).</para>
/// <para>Threads: called from the session's receiving thread only. The model signals eventfds under its register
/// lock; <see cref="Fa1Model.ConnectInterrupts"/> and <see cref="Fa1Model.DisconnectInterrupts"/> take the same lock,
/// so once a rewire returned no signal can reach a replaced eventfd, which is then closed.</para>
/// </remarks>
internal sealed class MsixVectors
{
    private readonly Fa1Model _model;
    private readonly EventFd?[] _vectors = new EventFd?[Fa1Identity.MsixVectors];
    private bool _enabled;

    public MsixVectors(Fa1Model model) => _model = model;

    /// <summary>Vectors of the MSI-X index.</summary>
    public static int Count => Fa1Identity.MsixVectors;

    /// <summary>Vectors that have an eventfd now (read by other threads for statistics: a moment's count is all it claims).</summary>
    public int Wired => _vectors.Count(v => v is not null);

    /// <summary>True while the model is connected to the eventfds (MSI-X enabled and a vector wired).</summary>
    public bool Delivering { get; private set; }

    /// <summary>The function's MSI-X enable bit changed (config write or reset).</summary>
    public void SetEnabled(bool enabled)
    {
        if (_enabled != enabled)
        {
            _enabled = enabled;
            Rewire();
        }
    }

    /// <summary>
    /// VFIO_USER_DEVICE_SET_IRQS for the MSI-X index, already checked for its index and flag shape by the caller.
    /// Takes ownership of <paramref name="descriptors"/> (closed on error).
    /// </summary>
    public void Set(VfioIrqSetFlags flags, uint start, uint count, ReadOnlySpan<byte> boolData, List<SafeFileDescriptor> descriptors)
    {
        var data = flags & VfioIrqSetFlags.DataMask;
        var action = flags & VfioIrqSetFlags.ActionMaskAll;
        if (action != VfioIrqSetFlags.ActionTrigger)
        {
            // GET_IRQ_INFO does not say MASKABLE: the client masks in its own MSI-X table.
            throw new VfioUserException(Errno.EINVAL, $"SET_IRQS action {action} on MSI-X: the vectors are not maskable here (IRQ info has no MASKABLE flag); mask them in the MSI-X table");
        }

        if (data == VfioIrqSetFlags.DataNone && count == 0)
        {
            // The special case: DATA_NONE with count 0 disables every vector of the index.
            if (start != 0)
            {
                throw new VfioUserException(Errno.EINVAL, $"SET_IRQS DATA_NONE with count 0 disables the whole index and needs start 0, not {start}");
            }

            Unwire(0, (uint)Count);
            return;
        }

        if (count == 0 || start >= Count || count > Count - start)
        {
            throw new VfioUserException(Errno.EINVAL, $"SET_IRQS vectors {start}..{(long)start + count - 1} are outside MSI-X's {Count} vectors (0..{Count - 1})");
        }

        switch (data)
        {
            case VfioIrqSetFlags.DataEventFd:
                Wire(start, count, descriptors);
                break;
            case VfioIrqSetFlags.DataNone:
                Trigger(start, count, default);
                break;
            default:
                Trigger(start, count, boolData);
                break;
        }
    }

    /// <summary>The session ended: every eventfd is closed and the model disconnected (the client wires them anew).</summary>
    public void ReleaseAll() => Unwire(0, (uint)Count);

    private void Wire(uint start, uint count, List<SafeFileDescriptor> descriptors)
    {
        if (descriptors.Count > count)
        {
            throw new VfioUserException(Errno.EINVAL, $"SET_IRQS passed {descriptors.Count} eventfds for {count} vectors; at most one per vector");
        }

        // Every descriptor is checked before any vector changes, so a bad one leaves the wiring as it was.
        var adopted = new List<EventFd>(descriptors.Count);
        try
        {
            foreach (var fd in descriptors)
            {
                adopted.Add(EventFd.Adopt(fd));
            }
        }
        catch (ArgumentException ex)
        {
            throw new VfioUserException(Errno.EINVAL, $"SET_IRQS: {ex.Message}");
        }

        descriptors.Clear();
        var replaced = new List<EventFd>();
        for (var i = 0; i < count; i++)
        {
            var vector = (int)start + i;
            if (_vectors[vector] is { } old)
            {
                replaced.Add(old);
            }

            // Fewer eventfds than vectors: the ones past the last eventfd are unwired (as no eventfd, -1, would).
            _vectors[vector] = i < adopted.Count ? adopted[i] : null;
        }

        Rewire();
        foreach (var old in replaced)
        {
            old.Dispose();
        }
    }

    private void Unwire(uint start, uint count)
    {
        var replaced = new List<EventFd>();
        for (var vector = (int)start; vector < start + count; vector++)
        {
            if (_vectors[vector] is { } old)
            {
                replaced.Add(old);
                _vectors[vector] = null;
            }
        }

        Rewire();
        foreach (var old in replaced)
        {
            old.Dispose();
        }
    }

    // A trigger from the client: the wired eventfds of the range fire (where the bool byte is non-zero).
    private void Trigger(uint start, uint count, ReadOnlySpan<byte> which)
    {
        for (var i = 0; i < count; i++)
        {
            if ((which.IsEmpty || which[i] != 0) && _vectors[start + i] is { } fd)
            {
                fd.Signal();
            }
        }
    }

    private void Rewire()
    {
        var highest = Array.FindLastIndex(_vectors, v => v is not null);
        if (!_enabled || highest < 0)
        {
            _model.DisconnectInterrupts();
            Delivering = false;
            return;
        }

        _model.ConnectInterrupts(_vectors.AsSpan(0, highest + 1).ToArray());
        Delivering = true;
    }
}
