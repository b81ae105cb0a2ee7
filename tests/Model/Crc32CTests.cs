using System.Text;
using FpgaAccel.HwSim;
using NUnit.Framework;

namespace FpgaAccel.Tests.Model;

/// <summary>CRC-32C known vectors (RFC 3720 B.4 and the "123456789" check value).</summary>
public class Crc32CTests
{
    private static readonly object[] s_vectors =
    [
        new object[] { Encoding.ASCII.GetBytes("123456789"), 0xE306_9283u },
        new object[] { new byte[32], 0x8A91_36AAu },
        new object[] { Enumerable.Repeat((byte)0xFF, 32).ToArray(), 0x62A8_AB43u },
        new object[] { Enumerable.Range(0, 32).Select(i => (byte)i).ToArray(), 0x46DD_794Eu },
    ];

    [TestCaseSource(nameof(s_vectors))]
    public void KnownVectors(byte[] data, uint expected)
    {
        Assert.That(Crc32C.Finish(Crc32C.Update(Crc32C.Initial, data)), Is.EqualTo(expected), "hardware path");
        Assert.That(Crc32C.Finish(Crc32C.UpdateSoftware(Crc32C.Initial, data)), Is.EqualTo(expected), "software path");
        Assert.That(Reference.Crc32C(data), Is.EqualTo(expected), "the tests' reference");
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
