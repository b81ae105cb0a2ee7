using System.Buffers.Binary;
using FpgaAccel.Interop;

namespace FpgaAccel.HwSim.VfioUser;

/// <summary>
/// A conventional PCI function's 256-byte configuration space, described as data (the concern of libvfio-user's
/// pci.c and pci_caps.c): every byte's value, which of its bits the host may write, and which it clears by writing 1.
/// Capabilities are appended to a linked list by <see cref="AddCapability"/>. The function that owns it reacts to
/// writes (command register, MSI-X control, FLR) after they have landed.
/// </summary>
/// <remarks>Not thread-safe: the session's receiving thread is its only user.</remarks>
internal sealed class PciConfigSpace
{
    private readonly byte[] _bytes = new byte[PciConfigRegisters.ConventionalSize];
    private readonly byte[] _writable = new byte[PciConfigRegisters.ConventionalSize];
    private readonly byte[] _writeOneToClear = new byte[PciConfigRegisters.ConventionalSize];
    private byte[] _powerOn = [];
    private int _lastCapability;

    // Capabilities start after the type-0 header (64 bytes), dword aligned (PCI 3.0, 6.7).
    private int _nextCapability = 0x40;

    /// <summary>Bytes of config space.</summary>
    public int Size => _bytes.Length;

    /// <summary>Defines a byte's power-on value and which bits the host may write.</summary>
    public void Define8(int offset, byte value, byte writable = 0, byte writeOneToClear = 0)
    {
        _bytes[offset] = value;
        _writable[offset] = writable;
        _writeOneToClear[offset] = writeOneToClear;
    }

    /// <summary>Defines a little-endian u16.</summary>
    public void Define16(int offset, ushort value, ushort writable = 0, ushort writeOneToClear = 0)
    {
        Define8(offset, (byte)value, (byte)writable, (byte)writeOneToClear);
        Define8(offset + 1, (byte)(value >> 8), (byte)(writable >> 8), (byte)(writeOneToClear >> 8));
    }

    /// <summary>Defines a little-endian u32.</summary>
    public void Define32(int offset, uint value, uint writable = 0, uint writeOneToClear = 0)
    {
        Define16(offset, (ushort)value, (ushort)writable, (ushort)writeOneToClear);
        Define16(offset + 2, (ushort)(value >> 16), (ushort)(writable >> 16), (ushort)(writeOneToClear >> 16));
    }

    /// <summary>
    /// Appends a capability of <paramref name="length"/> bytes with ID <paramref name="id"/> to the list (capabilities
    /// pointer, or the previous capability's next pointer) and returns its offset; sets the status register's
    /// capability-list bit. Its remaining bytes are zero and read-only until defined.
    /// </summary>
    public int AddCapability(byte id, int length)
    {
        var offset = _nextCapability;
        if (offset + length > Size)
        {
            throw new InvalidOperationException($"A {length}-byte capability at 0x{offset:X} does not fit in {Size} bytes of config space.");
        }

        Define8(offset + PciConfigRegisters.CapabilityId, id);
        Define8(offset + PciConfigRegisters.CapabilityNext, 0);
        Define8(_lastCapability == 0 ? PciConfigRegisters.CapabilityList : _lastCapability + PciConfigRegisters.CapabilityNext, (byte)offset);
        Define16(PciConfigRegisters.Status, (ushort)(Read16(PciConfigRegisters.Status) | PciConfigRegisters.StatusCapabilityList));
        _lastCapability = offset;
        _nextCapability = (offset + length + 3) & ~3;
        return offset;
    }

    /// <summary>Records the current values as the power-on values <see cref="ResetToPowerOn"/> restores.</summary>
    public void Seal() => _powerOn = (byte[])_bytes.Clone();

    /// <summary>A function-level reset: every byte back to its power-on value.</summary>
    public void ResetToPowerOn() => _powerOn.CopyTo(_bytes, 0);

    /// <summary>Copies <paramref name="into"/>'s length of bytes from <paramref name="offset"/> (the caller checked the range).</summary>
    public void Read(int offset, Span<byte> into) => _bytes.AsSpan(offset, into.Length).CopyTo(into);

    /// <summary>
    /// A host write of <paramref name="data"/> at <paramref name="offset"/>: writable bits take the new value,
    /// write-one-to-clear bits clear where a 1 is written, every other bit keeps its value (the caller checked the range).
    /// </summary>
    public void Write(int offset, ReadOnlySpan<byte> data)
    {
        for (var i = 0; i < data.Length; i++)
        {
            var at = offset + i;
            var value = _bytes[at];
            value = (byte)((value & ~_writable[at]) | (data[i] & _writable[at]));
            value &= (byte)~(data[i] & _writeOneToClear[at]);
            _bytes[at] = value;
        }
    }

    /// <summary>The byte at <paramref name="offset"/>.</summary>
    public byte Read8(int offset) => _bytes[offset];

    /// <summary>The u16 at <paramref name="offset"/>.</summary>
    public ushort Read16(int offset) => BinaryPrimitives.ReadUInt16LittleEndian(_bytes.AsSpan(offset));

    /// <summary>The u32 at <paramref name="offset"/>.</summary>
    public uint Read32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(_bytes.AsSpan(offset));

    /// <summary>The device itself changes a byte (a self-clearing bit), whatever the host may write.</summary>
    public void Set8(int offset, byte value) => _bytes[offset] = value;

    /// <summary>The device itself changes a u16.</summary>
    public void Set16(int offset, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(_bytes.AsSpan(offset), value);

    /// <summary>True when the <paramref name="length"/> bytes at <paramref name="offset"/> overlap the <paramref name="registerLength"/> bytes at <paramref name="register"/>.</summary>
    public static bool Touches(int offset, int length, int register, int registerLength) =>
        offset < register + registerLength && register < offset + length;
}
