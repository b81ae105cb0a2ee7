namespace FpgaAccel.FirmwareInterface;

/// <summary>
/// Spec 8: the board-management controller (BMC) behind the board's USB bridge.
/// ASCII lines, one request a line, one reply line starting with OK or ERR.
/// </summary>
public static class BoardManagement
{
    /// <summary>USB vendor ID of the bridge (FTDI).</summary>
    public const ushort UsbVendorId = 0x0403;

    /// <summary>USB product ID of the bridge (FT2232-style, two interfaces: A and B).</summary>
    public const ushort UsbProductId = 0x6010;

    /// <summary>Interface B, the second one (bInterfaceNumber 1), carries the BMC UART (decision D8).</summary>
    public const int UsbInterface = 1;

    /// <summary>UART speed in bits per second.</summary>
    public const int BaudRate = 115_200;

    /// <summary>Data bits per character.</summary>
    public const int DataBits = 8;

    /// <summary>No parity bit.</summary>
    public const char Parity = 'N';

    /// <summary>Stop bits per character.</summary>
    public const int StopBits = 1;

    /// <summary>Lines end with a newline (decision D8).</summary>
    public const string LineTerminator = "\n";

    /// <summary>The newline that ends every request and reply line, as a byte (decision D8).</summary>
    public const byte LineTerminatorByte = (byte)'\n';

    /// <summary>
    /// Decision P1: a line (request, reply, or a line of the firmware log) holds at most this many characters before
    /// its newline. The BMC answers a longer request with ERR; a client treats a longer reply as malformed.
    /// </summary>
    public const int MaxLineLength = 255;

    /// <summary>Decision P3: <c>LOG n</c> takes n from 0 to this many lines.</summary>
    public const int MaxLogLines = 1000;

    /// <summary>Decision P5: the lowest byte a line may hold (space); lines are printable ASCII.</summary>
    public const byte FirstPrintable = 0x20;

    /// <summary>Decision P5: the highest byte a line may hold (tilde).</summary>
    public const byte LastPrintable = 0x7e;

    /// <summary>First word of a reply to a request the BMC carried out.</summary>
    public const string ReplyOk = "OK";

    /// <summary>First word of a reply to a request the BMC refused or could not carry out.</summary>
    public const string ReplyError = "ERR";

    /// <summary>Replies <c>OK FA1-BMC &lt;major&gt;.&lt;minor&gt;.&lt;patch&gt;</c>.</summary>
    public const string CommandVersion = "VERSION";

    /// <summary>Replies <c>OK &lt;board serial&gt;</c>.</summary>
    public const string CommandSerial = "SERIAL";

    /// <summary>Replies <c>OK &lt;millidegrees C&gt;</c>.</summary>
    public const string CommandTemperature = "TEMP";

    /// <summary>
    /// Replies <c>OK</c>, then cold-resets the FPGA: the PCIe device drops off the bus for about a second. While it is off
    /// the bus another RESET is refused with <c>ERR</c> (decision P4).
    /// </summary>
    public const string CommandReset = "RESET";

    /// <summary>
    /// <c>LOG &lt;n&gt;</c> replies <c>OK &lt;count&gt;</c> then that many lines of the firmware log: the last count lines,
    /// oldest first, count = min(n, lines held) (decision P3).
    /// </summary>
    public const string CommandLog = "LOG";

    /// <summary>The product name in the VERSION reply.</summary>
    public const string VersionProduct = "FA1-BMC";

    /// <summary>How long the PCIe device stays off the bus after RESET (approximately).</summary>
    public static readonly TimeSpan ResetOffBus = TimeSpan.FromSeconds(1);
}
