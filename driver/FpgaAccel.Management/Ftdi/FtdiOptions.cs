using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop.Usb;

namespace FpgaAccel.Management.Ftdi;

/// <summary>Which FTDI bridge carries the BMC and how the link sets it up.</summary>
public sealed record FtdiOptions
{
    /// <summary>The bridge's USB IDs; spec 8's board has an FT2232 (0403:6010). QEMU's usb-serial is an FT232 (0403:6001).</summary>
    public UsbDeviceId Id { get; init; } = new(BoardManagement.UsbVendorId, BoardManagement.UsbProductId);

    /// <summary>
    /// The interface (channel) wired to the BMC: null takes the product's default, B (1) on the FT2232 (spec 8) and
    /// A (0) on a single-channel part (<see cref="FtdiProtocol.DefaultInterface"/>).
    /// </summary>
    public int? Interface { get; init; }

    /// <summary>
    /// The bridge's USB path as sysfs names it (<c>1-4.2</c>), when several boards are attached; null takes the only
    /// bridge with <see cref="Id"/>.
    /// </summary>
    public string? UsbPath { get; init; }

    /// <summary>
    /// Whether a kernel driver bound to the interface (ftdi_sio, holding <c>/dev/ttyUSBn</c>) is detached while the
    /// link is open and re-attached on dispose. When false and a driver is bound, opening fails with LIBUSB_ERROR_BUSY.
    /// </summary>
    public bool DetachKernelDriver { get; init; } = true;

    /// <summary>
    /// The chip's latency timer in milliseconds (1-255): how long it holds a partly filled packet. Short keeps a
    /// reply line from waiting; a real chip then sends a status-only packet that often when idle.
    /// </summary>
    public byte LatencyTimerMilliseconds { get; init; } = 2;

    /// <summary>Timeout of each vendor request during set-up.</summary>
    public TimeSpan ControlTimeout { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Where sysfs is mounted (to name a kernel driver in errors).</summary>
    public string SysfsRoot { get; init; } = "/sys";

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the setting out of range.</summary>
    public void Validate()
    {
        if (Interface is < 0 or > 7)
        {
            throw new ArgumentOutOfRangeException(nameof(Interface), Interface, "An FTDI part has interfaces 0 (A) to 3 (D).");
        }

        if (LatencyTimerMilliseconds == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(LatencyTimerMilliseconds), LatencyTimerMilliseconds, "The FTDI latency timer takes 1 to 255 ms.");
        }

        if (ControlTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ControlTimeout), ControlTimeout, "The control timeout must be positive.");
        }
    }
}
