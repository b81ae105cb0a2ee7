namespace FpgaAccel.Tests.Support;

/// <summary>CPU references the model's results are checked against.</summary>
internal static class Reference
{
    private static readonly uint[] s_crcTable = BuildCrcTable();

    /// <summary>CRC-32C, bitwise-table form independent of the model's code.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFF_FFFFu;
        foreach (var b in data)
        {
            crc = (crc >> 8) ^ s_crcTable[(crc ^ b) & 0xFF];
        }

        return ~crc;
    }

    /// <summary>FILL: byte i of the range is byte (i mod 8) of the little-endian pattern.</summary>
    public static void Fill(Span<byte> target, ulong pattern)
    {
        for (var i = 0; i < target.Length; i++)
        {
            target[i] = (byte)(pattern >> (8 * (i % 8)));
        }
    }

    private static uint[] BuildCrcTable()
    {
        var table = new uint[256];
        for (var n = 0u; n < 256; n++)
        {
            var c = n;
            for (var k = 0; k < 8; k++)
            {
                c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
            }

            table[n] = c;
        }

        return table;
    }
}
