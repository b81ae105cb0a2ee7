namespace FpgaAccel.Management;

/// <summary>
/// A byte stream both ways to a UART peer (the BMC): the FTDI bridge over USB, a Unix socket, or a terminal.
/// Reads and writes wait at most their timeout. One caller at a time: <see cref="BmcClient"/> serialises its
/// requests, and a link is not shared.
/// </summary>
public interface ISerialLink : IDisposable
{
    /// <summary>What the link reaches, for messages: <c>usb 1-1 (0403:6001, interface A)</c>, <c>socket /run/bmc.sock</c>.</summary>
    string Description { get; }

    /// <summary>
    /// Copies bytes that have arrived into <paramref name="buffer"/>, waiting at most <paramref name="timeout"/> for the
    /// first (zero: do not wait). Returns how many; 0 when nothing arrived in time.
    /// </summary>
    int Read(Span<byte> buffer, TimeSpan timeout);

    /// <summary>Sends all of <paramref name="data"/> within <paramref name="timeout"/>, or throws <see cref="SerialLinkException"/>.</summary>
    void Write(ReadOnlySpan<byte> data, TimeSpan timeout);
}

/// <summary>A link to the BMC failed or could not be opened: the message names the link, what failed and the fix.</summary>
public class SerialLinkException : IOException
{
    /// <summary>A failure; <paramref name="message"/> names the link, the rule and the fix.</summary>
    public SerialLinkException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>No management port matched: no FTDI bridge with the IDs (or at the USB path) asked for, or several.</summary>
public sealed class ManagementPortNotFoundException : SerialLinkException
{
    /// <summary>Nothing (or too much) matched; <paramref name="message"/> lists what was seen and the fix.</summary>
    public ManagementPortNotFoundException(string message)
        : base(message)
    {
    }
}
