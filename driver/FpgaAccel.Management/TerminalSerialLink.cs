using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;

namespace FpgaAccel.Management;

/// <summary>
/// A link over a terminal opened raw at the BMC's 115200 8N1 (spec 8): <c>/dev/ttyUSB1</c> when ftdi_sio keeps the
/// bridge, or a pseudo-terminal's slave (<c>/dev/pts/N</c>) served by the BMC model.
/// </summary>
public sealed class TerminalSerialLink : ISerialLink
{
    private readonly TerminalDevice _terminal;

    private TerminalSerialLink(TerminalDevice terminal)
    {
        _terminal = terminal;
        Description = $"terminal {terminal.Path}";
    }

    /// <inheritdoc/>
    public string Description { get; }

    /// <summary>Opens <paramref name="path"/> raw at <see cref="BoardManagement.BaudRate"/>.</summary>
    public static TerminalSerialLink Open(string path) => new(TerminalDevice.Open(path, BoardManagement.BaudRate));

    /// <inheritdoc/>
    public int Read(Span<byte> buffer, TimeSpan timeout)
    {
        try
        {
            return _terminal.Read(buffer, timeout);
        }
        catch (SystemCallException ex)
        {
            throw new SerialLinkException($"{Description}: {ex.Message}", ex);
        }
    }

    /// <inheritdoc/>
    public void Write(ReadOnlySpan<byte> data, TimeSpan timeout)
    {
        try
        {
            _terminal.Write(data, timeout);
        }
        catch (SystemCallException ex)
        {
            throw new SerialLinkException($"{Description}: {ex.Message}", ex);
        }
    }

    /// <summary>Closes the terminal.</summary>
    public void Dispose() => _terminal.Dispose();
}
