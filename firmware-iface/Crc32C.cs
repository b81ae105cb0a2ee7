using System.Buffers.Binary;
using System.Runtime.Intrinsics.X86;

namespace FpgaAccel.FirmwareInterface;

/// <summary>
/// What the CRC32C opcode computes (spec 5, decision D30): CRC-32C (Castagnoli), reflected polynomial
/// 0x82F63B78, initial value 0xFFFFFFFF, final xor 0xFFFFFFFF, over LEN bytes from SRC in address order;
/// the completion's result is the 32-bit CRC, zero-extended. The device computes it; the driver and
/// the tests check the device against it. "123456789" gives 0xE3069283.
/// </summary>
/// <remarks>
/// Start from <see cref="Initial"/>, feed the data in any number of pieces through <see cref="Update"/>,
/// and end with <see cref="Finish"/>; <see cref="Compute"/> does all three for one span.
/// </remarks>
public static class Crc32C
{
    /// <summary>The running state before the first byte (the initial value of the definition).</summary>
    public const uint Initial = 0xFFFF_FFFF;

    // The definition's final xor.
    private const uint FinalXor = 0xFFFF_FFFF;

    private const uint ReflectedPolynomial = 0x82F6_3B78;

    private static readonly uint[] s_table = BuildTable();

    /// <summary>The CRC-32C of <paramref name="data"/>: <see cref="Initial"/>, <see cref="Update"/>, <see cref="Finish"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Update(Initial, data));

    /// <summary>Turns a running state into the CRC (the final xor).</summary>
    public static uint Finish(uint state) => state ^ FinalXor;

    /// <summary>Feeds <paramref name="data"/> into the running (not yet finished) state and returns the new state.</summary>
    public static uint Update(uint state, ReadOnlySpan<byte> data)
    {
        // SSE4.2's CRC32 instruction computes exactly this polynomial; the table is the fallback
        // for hosts without it (and the reference the instruction is checked against in tests).
        if (Sse42.X64.IsSupported)
        {
            ulong wide = state;
            while (data.Length >= 8)
            {
                wide = Sse42.X64.Crc32(wide, BinaryPrimitives.ReadUInt64LittleEndian(data));
                data = data[8..];
            }

            state = (uint)wide;
        }

        if (Sse42.IsSupported)
        {
            foreach (var b in data)
            {
                state = Sse42.Crc32(state, b);
            }

            return state;
        }

        return UpdateSoftware(state, data);
    }

    /// <summary>The table-driven software path, one byte at a time.</summary>
    internal static uint UpdateSoftware(uint state, ReadOnlySpan<byte> data)
    {
        var table = s_table;
        foreach (var b in data)
        {
            state = table[(byte)(state ^ b)] ^ (state >> 8);
        }

        return state;
    }

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (var i = 0u; i < 256; i++)
        {
            var c = i;
            for (var bit = 0; bit < 8; bit++)
            {
                c = (c & 1) != 0 ? (c >> 1) ^ ReflectedPolynomial : c >> 1;
            }

            table[i] = c;
        }

        return table;
    }
}
