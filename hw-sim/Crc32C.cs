using System.Buffers.Binary;
using System.Runtime.Intrinsics.X86;

namespace FpgaAccel.HwSim;

/// <summary>
/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the CRC32C opcode of spec 5. The caller
/// starts from <see cref="Initial"/>, feeds the data in any number of pieces through
/// <see cref="Update"/>, and ends with <see cref="Finish"/> (the final xor): "123456789" gives 0xE3069283.
/// </summary>
internal static class Crc32C
{
    public const uint Initial = 0xFFFF_FFFF;

    private const uint ReflectedPolynomial = 0x82F6_3B78;

    private static readonly uint[] s_table = BuildTable();

    public static uint Finish(uint state) => state ^ 0xFFFF_FFFF;

    /// <summary>Feeds <paramref name="data"/> into the running (not yet finished) CRC.</summary>
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
