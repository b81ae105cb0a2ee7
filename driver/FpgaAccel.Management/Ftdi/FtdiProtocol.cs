using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Management.Ftdi;

/// <summary>
/// What the FTDI UART bridges expect over USB: their product IDs and channel counts, the vendor requests on
/// endpoint 0 (bmRequestType 0x40), and the values used here. Facts from the kernel's ftdi_sio driver and
/// libftdi, written here from their description, not their code.
/// </summary>
public static class FtdiProtocol
{
    /// <summary>FTDI's USB vendor ID.</summary>
    public const ushort VendorId = BoardManagement.UsbVendorId;

    /// <summary>FT232AM/BM/R: one UART channel (interface A). QEMU's usb-serial emulates this one.</summary>
    public const ushort Ft232ProductId = 0x6001;

    /// <summary>FT2232C/D/H: two channels, A and B. The board's bridge (spec 8).</summary>
    public const ushort Ft2232ProductId = BoardManagement.UsbProductId;

    /// <summary>FT4232H: four channels.</summary>
    public const ushort Ft4232ProductId = 0x6011;

    /// <summary>FT232H: one channel.</summary>
    public const ushort Ft232HProductId = 0x6014;

    /// <summary>FT-X series (FT230X, FT231X...): one channel.</summary>
    public const ushort FtXProductId = 0x6015;

    /// <summary>Reset the port (wValue: <see cref="ResetSio"/>, <see cref="PurgeRx"/>, <see cref="PurgeTx"/>).</summary>
    public const byte RequestReset = 0x00;

    /// <summary>Set DTR and RTS: wValue's high byte says which lines to change, its low byte their levels.</summary>
    public const byte RequestModemControl = 0x01;

    /// <summary>Flow control: wIndex's high byte is the protocol (0: none), its low byte the port.</summary>
    public const byte RequestSetFlowControl = 0x02;

    /// <summary>Baud rate: wValue the low 16 bits of the encoded divisor, wIndex carries bit 16 (<see cref="FtdiBaudRate"/>).</summary>
    public const byte RequestSetBaudRate = 0x03;

    /// <summary>Line properties: wValue bits 7:0 data bits, 10:8 parity, 13:11 stop bits, 14 break.</summary>
    public const byte RequestSetData = 0x04;

    /// <summary>Read the modem and line status (bmRequestType 0xC0, 2 bytes).</summary>
    public const byte RequestGetModemStatus = 0x05;

    /// <summary>Latency timer in ms (1-255): how long the chip holds a partly filled packet before sending it.</summary>
    public const byte RequestSetLatencyTimer = 0x09;

    /// <summary>wValue of <see cref="RequestReset"/>: reset the chip's port (flow control off, buffers purged).</summary>
    public const ushort ResetSio = 0;

    /// <summary>wValue of <see cref="RequestReset"/>: drop what the chip holds from the host for the UART.</summary>
    public const ushort PurgeRx = 1;

    /// <summary>wValue of <see cref="RequestReset"/>: drop what the chip holds from the UART for the host.</summary>
    public const ushort PurgeTx = 2;

    /// <summary>wValue of <see cref="RequestSetData"/> for 8 data bits, no parity, one stop bit (spec 8: 8N1).</summary>
    public const ushort Data8N1 = BoardManagement.DataBits | (0 << 8) | (0 << 11);

    /// <summary>wValue of <see cref="RequestModemControl"/>: change DTR and RTS (high byte) and raise both (low byte).</summary>
    public const ushort DtrRtsHigh = 0x0303;

    /// <summary>Flow-control protocol 0 (none): the BMC UART has no handshake lines.</summary>
    public const ushort NoFlowControl = 0;

    /// <summary>Bytes of modem and line status that start every bulk IN packet.</summary>
    public const int StatusBytes = 2;

    /// <summary>Line status bits that mean a received byte was damaged: overrun, parity, framing error, break.</summary>
    public const byte LineErrors = 0x02 | 0x04 | 0x08 | 0x10;

    /// <summary>
    /// The interface that carries the BMC on <paramref name="productId"/> when the user names none: B (1) on the
    /// dual-channel FT2232 (spec 8), A (0) on a single-channel part such as QEMU's FT232; null when the part has
    /// more channels than that and the choice must be given.
    /// </summary>
    public static int? DefaultInterface(ushort productId) => productId switch
    {
        Ft2232ProductId => BoardManagement.UsbInterface,
        Ft232ProductId or Ft232HProductId or FtXProductId => 0,
        _ => null,
    };

    /// <summary>The letter FTDI gives interface <paramref name="number"/>: 0 is A, 1 is B.</summary>
    public static char InterfaceLetter(int number) => number is >= 0 and < 26 ? (char)('A' + number) : '?';

    /// <summary>
    /// The port number the vendor requests carry in wIndex's low byte: 0 on a single-channel part, interface + 1
    /// (A = 1, B = 2) on a multi-channel one.
    /// </summary>
    public static ushort PortIndex(int interfaceNumber, int interfaceCount) => interfaceCount > 1 ? (ushort)(interfaceNumber + 1) : (ushort)0;
}
