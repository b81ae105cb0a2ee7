namespace FpgaAccel.Management.Ftdi;

/// <summary>What the status bytes of the packets decoded so far said.</summary>
/// <param name="ModemStatus">The first status byte of the last packet (CTS 0x10, DSR 0x20, RI 0x40, DCD 0x80; bit 0 is always 1).</param>
/// <param name="LineErrors">Packets whose line status flagged overrun, parity or framing errors or a break: received bytes were damaged.</param>
/// <param name="StatusOnlyPackets">Packets that carried no data (a real chip sends them every latency period when idle).</param>
/// <param name="RuntPackets">Packets shorter than their 2 status bytes (a zero-length packet, or 1 byte).</param>
public readonly record struct FtdiLineStatus(byte ModemStatus, long LineErrors, long StatusOnlyPackets, long RuntPackets);

/// <summary>
/// Takes the UART bytes out of a bulk IN transfer. The chip starts every packet it sends with 2 status bytes
/// (modem status, line status), so a transfer of several packets has status bytes at every
/// <c>wMaxPacketSize</c> boundary, not only at its start. A transfer always begins on a packet boundary
/// (a short packet ends it), so each transfer is decoded on its own.
/// </summary>
public static class FtdiPacketDecoder
{
    /// <summary>
    /// Copies the payload of <paramref name="transfer"/> (packets of <paramref name="packetSize"/> bytes, the last one
    /// possibly short) to <paramref name="payload"/> and returns its length; <paramref name="status"/> accumulates what
    /// the status bytes said. <paramref name="payload"/> must hold the transfer's length.
    /// </summary>
    public static int Decode(ReadOnlySpan<byte> transfer, int packetSize, Span<byte> payload, ref FtdiLineStatus status)
    {
        if (packetSize <= FtdiProtocol.StatusBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(packetSize), packetSize, "A bulk packet must be larger than the 2 status bytes (64 at full speed, 512 at high speed).");
        }

        if (payload.Length < transfer.Length)
        {
            throw new ArgumentException($"The payload buffer ({payload.Length} bytes) must hold the transfer ({transfer.Length} bytes).", nameof(payload));
        }

        if (transfer.IsEmpty)
        {
            // A zero-length packet: no status, no data.
            status = status with { RuntPackets = status.RuntPackets + 1 };
            return 0;
        }

        var written = 0;
        for (var start = 0; start < transfer.Length; start += packetSize)
        {
            var packet = transfer.Slice(start, Math.Min(packetSize, transfer.Length - start));
            if (packet.Length < FtdiProtocol.StatusBytes)
            {
                status = status with { RuntPackets = status.RuntPackets + 1 };
                continue;
            }

            var lineErrors = (packet[1] & FtdiProtocol.LineErrors) != 0 ? 1 : 0;
            var data = packet[FtdiProtocol.StatusBytes..];
            status = status with
            {
                ModemStatus = packet[0],
                LineErrors = status.LineErrors + lineErrors,
                StatusOnlyPackets = status.StatusOnlyPackets + (data.IsEmpty ? 1 : 0),
            };
            data.CopyTo(payload[written..]);
            written += data.Length;
        }

        return written;
    }
}
