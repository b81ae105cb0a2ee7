using System.Globalization;

namespace FpgaAccel.Management.Ftdi;

/// <summary>
/// The baud-rate divisor of an FT232BM-class UART (FT232R, FT2232C/D, and the H parts in their compatible mode):
/// a 3 MHz reference divided by a number with 14 integer bits and a fraction in eighths. The eighths are not
/// stored in order: the 3-bit code for 0, 1/8, 2/8 ... 7/8 is 0, 3, 2, 4, 1, 5, 6, 7. Code bits 1:0 go to
/// divisor bits 15:14 (wValue), code bit 2 is bit 16, sent in wIndex. Divisors 1 and 1.5 are written 0 and 1
/// (3 and 2 Mbaud).
/// </summary>
public static class FtdiBaudRate
{
    /// <summary>The reference clock after the chip's divide by 16: 48 MHz / 16.</summary>
    public const int ReferenceHz = 3_000_000;

    /// <summary>The rate error above which a baud rate is refused (a UART tolerates about 3% in all).</summary>
    public const double MaxError = 0.03;

    private static ReadOnlySpan<byte> FractionCode => [0, 3, 2, 4, 1, 5, 6, 7];

    /// <summary>
    /// The divisor for <paramref name="baudRate"/>: wValue, the bit that goes to wIndex, and the rate the chip will
    /// really run at. 115200 gives 26 (0x001A), 115385 baud, +0.16%.
    /// </summary>
    public static (ushort Value, ushort IndexBit, int ActualBaudRate) Encode(int baudRate)
    {
        if (baudRate is < 183 or > ReferenceHz)
        {
            throw new ArgumentOutOfRangeException(nameof(baudRate), baudRate, "An FTDI UART runs from 183 to 3,000,000 baud (the divisor has 14 integer bits).");
        }

        // The divisor in eighths, rounded to the nearest eighth.
        var eighths = (int)Math.Round(ReferenceHz * 8.0 / baudRate, MidpointRounding.AwayFromZero);
        var actual = (int)Math.Round(ReferenceHz * 8.0 / eighths);
        var error = Math.Abs(actual - baudRate) / (double)baudRate;
        if (error > MaxError)
        {
            throw new ArgumentOutOfRangeException(nameof(baudRate), baudRate,
                string.Create(CultureInfo.InvariantCulture, $"{baudRate} baud is {error:P1} away from the nearest rate the chip can make ({actual}); pick a rate within {MaxError:P0}."));
        }

        var encoded = (eighths >> 3) | (FractionCode[eighths & 7] << 14);
        encoded = encoded switch
        {
            1 => 0,           // divisor 1: 3 Mbaud
            0x4001 => 1,      // divisor 1.5: 2 Mbaud
            _ => encoded,
        };
        return ((ushort)(encoded & 0xffff), (ushort)(encoded >> 16), actual);
    }
}
