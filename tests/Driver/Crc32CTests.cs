using System.Text;
using FpgaAccel.Driver.Diagnostics;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver;

public class Crc32CTests
{
    [TestCase("", 0x00000000u)]
    [TestCase("a", 0xC1D04330u)]
    [TestCase("123456789", 0xE3069283u)]
    [TestCase("The quick brown fox jumps over the lazy dog", 0x22620404u)]
    public void KnownVectors(string text, uint crc) => Assert.That(Crc32C.Compute(Encoding.ASCII.GetBytes(text)), Is.EqualTo(crc));

    [Test]
    public void ThirtyTwoZeroBytes() => Assert.That(Crc32C.Compute(new byte[32]), Is.EqualTo(0x8A9136AAu), "RFC 3720 B.4 vector");

    [Test]
    public void AppendInPiecesEqualsWhole()
    {
        var data = new byte[1000];
        new Random(3).NextBytes(data);
        var whole = Crc32C.Compute(data);
        var crc = 0xFFFF_FFFFu;
        foreach (var chunk in data.Chunk(77))
        {
            crc = Crc32C.Append(crc, chunk);
        }

        Assert.That(~crc, Is.EqualTo(whole));
    }
}
