using System.Text;
using FpgaAccel.Management.Ftdi;
using NUnit.Framework;

namespace FpgaAccel.Tests.Management.Ftdi;

/// <summary>The 2 status bytes that start every bulk IN packet come out, at every packet boundary of a transfer.</summary>
public class FtdiPacketDecoderTests
{
    // QEMU's usb-serial sends b1 00; a real FT232R idle sends 01 60 (THRE and TEMT set).
    private static readonly byte[] s_qemuStatus = [0xb1, 0x00];
    private static readonly byte[] s_chipStatus = [0x01, 0x60];

    [Test]
    public void OnePacketLosesItsStatusBytes()
    {
        var (text, status) = Decode(Packet(s_qemuStatus, "OK FA1-BMC 1.2.0\n"), 64);
        Assert.That(text, Is.EqualTo("OK FA1-BMC 1.2.0\n"));
        Assert.That(status.ModemStatus, Is.EqualTo(0xb1));
        Assert.That(status.LineErrors, Is.Zero);
    }

    [Test]
    public void StatusBytesRepeatAtEveryPacketBoundaryOfATransfer()
    {
        // 62 data bytes fill the first packet; the next packet starts with status bytes again, then the rest.
        var first = new string('a', 62);
        var transfer = Packet(s_chipStatus, first).Concat(Packet(s_chipStatus, "bcdef\n")).ToArray();
        Assert.That(transfer, Has.Length.EqualTo(64 + 8));
        var (text, _) = Decode(transfer, 64);
        Assert.That(text, Is.EqualTo(first + "bcdef\n"), "no status byte (0x01, 0x60) left in the middle");
    }

    [Test]
    public void ALineSplitAcrossPacketsComesOutWhole()
    {
        const string line = "[    12.345] fpga: cold reset, PCIe device off the bus, a line longer than one packet holds\n";
        var bytes = Encoding.ASCII.GetBytes(line);
        var transfer = new List<byte>();
        for (var i = 0; i < bytes.Length; i += 62)
        {
            transfer.AddRange(s_qemuStatus);
            transfer.AddRange(bytes.Skip(i).Take(62));
        }

        Assert.That(Decode([.. transfer], 64).Text, Is.EqualTo(line));
    }

    [Test]
    public void AStatusHeaderCutShortByTheTransfersEndCarriesNoData()
    {
        // The last packet holds 1 byte: half a status header, no data. Before it, a status-only packet.
        var transfer = Packet(s_chipStatus, new string('x', 62)).Concat(s_chipStatus).ToArray();
        var status = default(FtdiLineStatus);
        var payload = new byte[transfer.Length + 1];
        Assert.That(FtdiPacketDecoder.Decode(transfer, 64, payload, ref status), Is.EqualTo(62));
        Assert.That(status.StatusOnlyPackets, Is.EqualTo(1));

        transfer = Packet(s_chipStatus, new string('y', 62)).Concat(new byte[] { 0x01 }).ToArray();
        Assert.That(FtdiPacketDecoder.Decode(transfer, 64, payload, ref status), Is.EqualTo(62));
        Assert.That(status.RuntPackets, Is.EqualTo(1), "the 1-byte packet is a runt");
    }

    [Test]
    public void AZeroLengthPacketIsNoData()
    {
        var status = default(FtdiLineStatus);
        Assert.That(FtdiPacketDecoder.Decode([], 64, new byte[8], ref status), Is.Zero);
        Assert.That(status.RuntPackets, Is.EqualTo(1));
    }

    [Test]
    public void StatusOnlyPacketsAreCountedAndYieldNothing()
    {
        var status = default(FtdiLineStatus);
        Assert.That(FtdiPacketDecoder.Decode(s_chipStatus, 64, new byte[2], ref status), Is.Zero);
        Assert.That(FtdiPacketDecoder.Decode(s_chipStatus, 64, new byte[2], ref status), Is.Zero);
        Assert.That(status.StatusOnlyPackets, Is.EqualTo(2));
    }

    [Test]
    public void DamagedBytesAreCountedFromTheLineStatus()
    {
        // Line status bit 3: framing error (a UART at another speed).
        var (text, status) = Decode(Packet([0x01, 0x68], "O?\n"), 64);
        Assert.That(text, Is.EqualTo("O?\n"), "the bytes still come through; the client judges the line");
        Assert.That(status.LineErrors, Is.EqualTo(1));
    }

    [Test]
    public void HighSpeedPacketsAre512Bytes()
    {
        var data = new string('h', 510) + new string('i', 20);
        var transfer = Packet(s_chipStatus, data[..510]).Concat(Packet(s_chipStatus, data[510..])).ToArray();
        Assert.That(Decode(transfer, 512).Text, Is.EqualTo(data));
        Assert.That(Decode(transfer, 64).Text, Is.Not.EqualTo(data), "decoded with the wrong packet size, bytes go missing");
    }

    [Test]
    public void BadArgumentsAreRefused()
    {
        var status = default(FtdiLineStatus);
        Assert.That(() => FtdiPacketDecoder.Decode(new byte[4], 2, new byte[4], ref status), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(() => FtdiPacketDecoder.Decode(new byte[4], 64, new byte[3], ref status), Throws.ArgumentException);
    }

    private static byte[] Packet(byte[] status, string data) => [.. status, .. Encoding.ASCII.GetBytes(data)];

    private static (string Text, FtdiLineStatus Status) Decode(byte[] transfer, int packetSize)
    {
        var status = default(FtdiLineStatus);
        var payload = new byte[transfer.Length];
        var n = FtdiPacketDecoder.Decode(transfer, packetSize, payload, ref status);
        return (Encoding.ASCII.GetString(payload, 0, n), status);
    }
}
