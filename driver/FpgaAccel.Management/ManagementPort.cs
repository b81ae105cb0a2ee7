using FpgaAccel.Interop;
using FpgaAccel.Management.Ftdi;
using Microsoft.Extensions.Logging;

namespace FpgaAccel.Management;

/// <summary>Where the BMC is reached.</summary>
public sealed record ManagementPortOptions
{
    /// <summary><c>usb</c> (the board's FTDI bridge through libusb, <see cref="Usb"/> says which) or the path of a Unix socket or terminal.</summary>
    public string Port { get; init; } = ManagementPort.Usb;

    /// <summary>Which bridge and interface, when <see cref="Port"/> is <c>usb</c>.</summary>
    public FtdiOptions Usb { get; init; } = new();
}

/// <summary>Opens the link to the BMC that <see cref="ManagementPortOptions"/> name.</summary>
public static class ManagementPort
{
    /// <summary>The port name that means the board's USB bridge.</summary>
    public const string Usb = "usb";

    /// <summary>
    /// The link: the FTDI bridge over libusb for <c>usb</c>; for a path, a terminal (opened raw at 115200 8N1) or a
    /// Unix socket, whichever the path is.
    /// </summary>
    public static ISerialLink Open(ManagementPortOptions options, ILoggerFactory? loggerFactory = null)
    {
        if (options.Port == Usb)
        {
            return FtdiSerialLink.Open(options.Usb, loggerFactory);
        }

        var path = options.Port;
        if (!File.Exists(path))
        {
            throw new SerialLinkException(
                $"--port {path}: no such file. Give 'usb' for the board's USB bridge, the path of a Unix socket (the BMC model: " +
                "'fpgaaccel bmc model --socket PATH'), or a terminal such as /dev/ttyUSB1 (ftdi_sio's node for interface B).");
        }

        try
        {
            return TerminalSerialLink.Open(path);
        }
        catch (SystemCallException ex) when (ex.Errno == Errno.ENXIO)
        {
            // open(2) on a Unix socket answers ENXIO: connect to it instead.
            return SocketSerialLink.Connect(path);
        }
        catch (SystemCallException ex) when (ex.Errno is Errno.ENOTTY or Errno.EINVAL)
        {
            throw new SerialLinkException($"--port {path} is neither a terminal nor a Unix socket ({ex.Message}).", ex);
        }
        catch (SystemCallException ex) when (ex.Errno is Errno.EACCES or Errno.EPERM)
        {
            throw new SerialLinkException(
                $"--port {path}: this user may not open it ({ex.Message}). For a serial port add the user to its group " +
                "(ls -l shows it; 'dialout' on Debian) and log in again, or run as root.", ex);
        }
        catch (SystemCallException ex)
        {
            throw new SerialLinkException($"--port {path}: {ex.Message}", ex);
        }
    }
}
