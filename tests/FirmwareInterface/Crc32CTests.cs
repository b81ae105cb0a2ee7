using System.Text;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.FirmwareInterface;

/// <summary>
/// The one CRC-32C (decision D30): known vectors (RFC 3720 B.4 and the "123456789" check value) on the
/// SSE4.2 path and the table fallback, checked against the tests' own reference.
/// </summary>
public class Crc32CTests
{
    private static readonly object[] s_vectors =
    [
        new object[] { Encoding.ASCII.GetBytes("123456789"), 0xE306_9283u },
        new object[] { new byte[32], 0x8A91_36AAu },
        new object[] { Enumerable.Repeat((byte)0xFF, 32).ToArray(), 0x62A8_AB43u },
        new object[] { Enumerable.Range(0, 32).Select(i => (byte)i).ToArray(), 0x46DD_794Eu },
    ];

    [TestCase("", 0x00000000u)]
    [TestCase("a", 0xC1D04330u)]
    [TestCase("123456789", 0xE3069283u)]
    [TestCase("The quick brown fox jumps over the lazy dog", 0x22620404u)]
    public void KnownTextVectors(string text, uint crc) => Assert.That(Crc32C.Compute(Encoding.ASCII.GetBytes(text)), Is.EqualTo(crc));

    [Test]
    public void ThirtyTwoZeroBytes() => Assert.That(Crc32C.Compute(new byte[32]), Is.EqualTo(0x8A9136AAu), "RFC 3720 B.4 vector");

    [TestCaseSource(nameof(s_vectors))]
    public void KnownVectors(byte[] data, uint expected)
    {
        Assert.That(Crc32C.Finish(Crc32C.Update(Crc32C.Initial, data)), Is.EqualTo(expected), "hardware path");
        Assert.That(Crc32C.Finish(Crc32C.UpdateSoftware(Crc32C.Initial, data)), Is.EqualTo(expected), "software path");
        Assert.That(Reference.Crc32C(data), Is.EqualTo(expected), "the tests' reference");
    }

    [Test]
    public void UpdateInPiecesEqualsCompute()
    {
        var data = new byte[1000];
        new Random(3).NextBytes(data);
        var whole = Crc32C.Compute(data);
        var crc = Crc32C.Initial;
        Assert.That(crc, Is.EqualTo(0xFFFF_FFFFu), "the definition's initial value");
        foreach (var chunk in data.Chunk(77))
        {
            crc = Crc32C.Update(crc, chunk);
        }

        Assert.That(~crc, Is.EqualTo(whole), "the final xor is 0xFFFFFFFF");
        Assert.That(Crc32C.Finish(crc), Is.EqualTo(whole));
    }

    [Test]
    public void PiecewiseEqualsWhole()
    {
        var data = new byte[10_000];
        new Random(5).NextBytes(data);
        var state = Crc32C.Initial;
        for (var i = 0; i < data.Length; i += 777)
        {
            state = Crc32C.Update(state, data.AsSpan(i, Math.Min(777, data.Length - i)));
        }

        Assert.That(Crc32C.Finish(state), Is.EqualTo(Reference.Crc32C(data)));
    }
}
