using FpgaAccel.Management.Ftdi;
using NUnit.Framework;

namespace FpgaAccel.Tests.Management.Ftdi;

/// <summary>The FT232BM-class divisor: 3 MHz over 14 integer bits and a fraction in eighths, coded out of order.</summary>
public class FtdiBaudRateTests
{
    [TestCase(115_200, 0x001A, 0, 115_385)] // 26: the BMC's speed (spec 8), +0.16%
    [TestCase(9600, 0x4138, 0, 9600)]       // 312.5: code 1 (one half) in bits 15:14
    [TestCase(38_400, 0xC04E, 0, 38_400)]   // 78.125: code 3 (one eighth)
    [TestCase(3_000_000, 0x0000, 0, 3_000_000)] // divisor 1 is written 0
    [TestCase(2_000_000, 0x0001, 0, 2_000_000)] // divisor 1.5 is written 1
    [TestCase(29_888, 0x0064, 1, 29_888)]   // 100.375: code 4, whose bit 2 is divisor bit 16, sent in wIndex
    public void RatesEncodeAsTheChipExpects(int baud, int value, int indexBit, int actual)
    {
        var encoded = FtdiBaudRate.Encode(baud);
        Assert.That(encoded.Value, Is.EqualTo(value), $"wValue for {baud} baud");
        Assert.That(encoded.IndexBit, Is.EqualTo(indexBit), "divisor bit 16");
        Assert.That(encoded.ActualBaudRate, Is.EqualTo(actual).Within(1));
    }

    [TestCase(100)]
    [TestCase(3_000_001)]
    [TestCase(2_500_000)] // nearest divisor 1.25 gives 2.4 Mbaud: 4% off
    public void RatesTheChipCannotMakeAreRefused(int baud) =>
        Assert.That(() => FtdiBaudRate.Encode(baud), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains(baud.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    [Test]
    public void TheBmcsInterfaceFollowsTheProduct()
    {
        Assert.That(FtdiProtocol.DefaultInterface(0x6010), Is.EqualTo(1), "FT2232: interface B (spec 8)");
        Assert.That(FtdiProtocol.DefaultInterface(0x6001), Is.Zero, "FT232 (QEMU's usb-serial): its only interface, A");
        Assert.That(FtdiProtocol.DefaultInterface(0x6011), Is.Null, "FT4232: four channels, the user says which");
        Assert.That(FtdiProtocol.PortIndex(1, interfaceCount: 2), Is.EqualTo(2), "B is port 2 in wIndex");
        Assert.That(FtdiProtocol.PortIndex(0, interfaceCount: 1), Is.Zero, "a single-channel part takes port 0");
        Assert.That(FtdiProtocol.InterfaceLetter(1), Is.EqualTo('B'));
    }
}
