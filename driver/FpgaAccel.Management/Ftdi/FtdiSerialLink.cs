using System.Globalization;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop.Usb;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FpgaAccel.Management.Ftdi;

/// <summary>Where the BMC sits on the bridge: interface, its port number for vendor requests, bulk endpoints, packet size.</summary>
/// <param name="Interface">bInterfaceNumber (0 is A, 1 is B).</param>
/// <param name="PortIndex">wIndex's low byte for vendor requests (0 on a single-channel part, interface + 1 otherwise).</param>
/// <param name="InEndpoint">The bulk IN endpoint (chip to host).</param>
/// <param name="OutEndpoint">The bulk OUT endpoint (host to chip).</param>
/// <param name="PacketSize">wMaxPacketSize of the IN endpoint: where the 2 status bytes repeat.</param>
/// <param name="Description">The link for messages.</param>
internal sealed record FtdiLinkLayout(int Interface, ushort PortIndex, byte InEndpoint, byte OutEndpoint, int PacketSize, string Description);

/// <summary>
/// The BMC's UART through the board's FTDI bridge, over libusb: finds the bridge, detaches ftdi_sio from the BMC's
/// interface if it holds it, claims the interface, sets 115200 8N1 without flow control (spec 8), and strips the
/// 2 status bytes from every bulk IN packet. Dispose releases the interface and gives the kernel driver back.
/// </summary>
/// <remarks>
/// One caller at a time (the BMC client holds its lock around every request): the read buffers are not shared.
/// A read that times out keeps the bytes that arrived before the timeout.
/// </remarks>
public sealed partial class FtdiSerialLink : ISerialLink
{
    // Bulk reads ask for whole packets (a partial packet buffer overflows) and several at once.
    private const int PacketsPerRead = 8;

    private readonly IFtdiUsb _usb;
    private readonly FtdiLinkLayout _layout;
    private readonly FtdiOptions _options;
    private readonly ILogger _logger;
    private readonly byte[] _raw;
    private readonly byte[] _payload;
    private int _pendingStart;
    private int _pendingCount;
    private FtdiLineStatus _status;
    private bool _claimed;
    private string? _detachedDriver;
    private bool _disposed;

    internal FtdiSerialLink(IFtdiUsb usb, FtdiLinkLayout layout, FtdiOptions options, ILogger logger)
    {
        _usb = usb;
        _layout = layout;
        _options = options;
        _logger = logger;
        _raw = new byte[layout.PacketSize * PacketsPerRead];
        _payload = new byte[_raw.Length];
        Description = layout.Description;
    }

    /// <inheritdoc/>
    public string Description { get; }

    /// <summary>What the status bytes have said so far (line errors, status-only and runt packets).</summary>
    public FtdiLineStatus LineStatus => _status;

    /// <summary>
    /// Finds the bridge (<see cref="FtdiOptions.Id"/>, and <see cref="FtdiOptions.UsbPath"/> when given), opens it and sets
    /// the BMC's interface up. Throws <see cref="ManagementPortNotFoundException"/> when no bridge (or more than one)
    /// matches, <see cref="UsbException"/> for libusb failures (permissions name the udev rule), and
    /// <see cref="UsbLibraryNotFoundException"/> without libusb.
    /// </summary>
    public static FtdiSerialLink Open(FtdiOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        options ??= new FtdiOptions();
        options.Validate();
        var logger = (ILogger?)loggerFactory?.CreateLogger<FtdiSerialLink>() ?? NullLogger.Instance;
        var context = UsbContext.Create();
        UsbDeviceHandle? handle = null;
        try
        {
            FtdiLinkLayout layout;
            using (var devices = context.GetDevices())
            {
                var device = Choose(devices, options);
                layout = Layout(device, options);
                handle = device.Open();
            }

            var link = new FtdiSerialLink(new LibUsbFtdiUsb(context, handle), layout, options, logger);
            handle = null;
            context = null;
            link.Initialize();
            return link;
        }
        finally
        {
            handle?.Dispose();
            context?.Dispose();
        }
    }

    /// <inheritdoc/>
    public int Read(Span<byte> buffer, TimeSpan timeout)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (buffer.IsEmpty)
        {
            return 0;
        }

        if (_pendingCount > 0)
        {
            return TakePending(buffer);
        }

        var deadline = Environment.TickCount64 + (long)Math.Ceiling(Math.Max(0, timeout.TotalMilliseconds));
        while (true)
        {
            // libusb waits forever on 0: the shortest bounded wait is 1 ms, which also serves a zero-timeout check.
            var left = TimeSpan.FromMilliseconds(Math.Max(1, deadline - Environment.TickCount64));
            var result = _usb.BulkRead(_layout.InEndpoint, _raw, left);
            var n = FtdiPacketDecoder.Decode(_raw.AsSpan(0, result.Transferred), _layout.PacketSize, _payload, ref _status);
            if (n > 0)
            {
                // Bytes that came with a timeout count like any others.
                _pendingStart = 0;
                _pendingCount = n;
                return TakePending(buffer);
            }

            // Nothing but status bytes (a real chip sends them every latency period when idle): wait on, to the deadline.
            if (result.TimedOut || Environment.TickCount64 >= deadline)
            {
                return 0;
            }
        }
    }

    /// <inheritdoc/>
    public void Write(ReadOnlySpan<byte> data, TimeSpan timeout)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var deadline = Environment.TickCount64 + (long)Math.Ceiling(Math.Max(1, timeout.TotalMilliseconds));
        var done = 0;
        while (done < data.Length)
        {
            var left = deadline - Environment.TickCount64;
            if (left <= 0)
            {
                throw new SerialLinkException(string.Create(CultureInfo.InvariantCulture,
                    $"{Description}: the bridge took {done} of {data.Length} bytes within {timeout.TotalMilliseconds:0} ms; the UART is not draining (check the BMC is powered)."));
            }

            var result = _usb.BulkWrite(_layout.OutEndpoint, data[done..], TimeSpan.FromMilliseconds(left));
            done += result.Transferred;
        }
    }

    /// <summary>
    /// Releases the interface and re-attaches the kernel driver it detached (so <c>/dev/ttyUSBn</c> comes back), then
    /// closes the device. Never throws: a step that fails is logged and the rest still run.
    /// </summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_claimed)
        {
            Try(() => _usb.ReleaseInterface(_layout.Interface), "release the interface");
            _claimed = false;
        }

        if (_detachedDriver is { } driver)
        {
            Try(() => _usb.AttachKernelDriver(_layout.Interface), $"re-attach {driver}");
            _detachedDriver = null;
        }

        _usb.Dispose();
    }

    /// <summary>Detach, claim and the vendor requests of set-up (spec 8: 115200 8N1); on failure everything done is undone.</summary>
    internal void Initialize()
    {
        try
        {
            var iface = _layout.Interface;
            if (_usb.IsKernelDriverActive(iface))
            {
                var driver = _usb.KernelDriverOf(iface) ?? "a kernel driver";
                if (_options.DetachKernelDriver)
                {
                    _usb.DetachKernelDriver(iface);
                    _detachedDriver = driver;
                    LogDetached(_logger, driver, Description);
                }
            }

            _usb.ClaimInterface(iface);
            _claimed = true;

            var (divisor, indexBit, actual) = FtdiBaudRate.Encode(BoardManagement.BaudRate);
            // Bit 16 of the divisor rides in wIndex: bit 0 on a single-channel part, bit 8 beside the port number otherwise.
            var baudIndex = _layout.PortIndex == 0 ? indexBit : (ushort)((indexBit << 8) | _layout.PortIndex);
            Vendor(FtdiProtocol.RequestReset, FtdiProtocol.ResetSio, _layout.PortIndex, "reset", required: true);
            Vendor(FtdiProtocol.RequestSetBaudRate, divisor, baudIndex, $"set {BoardManagement.BaudRate} baud (divisor 0x{divisor:x4}, {actual} baud)", required: true);
            Vendor(FtdiProtocol.RequestSetData, FtdiProtocol.Data8N1, _layout.PortIndex, "set 8N1", required: true);
            Vendor(FtdiProtocol.RequestSetFlowControl, 0, (ushort)((FtdiProtocol.NoFlowControl << 8) | _layout.PortIndex), "flow control off", required: true);
            Vendor(FtdiProtocol.RequestModemControl, FtdiProtocol.DtrRtsHigh, _layout.PortIndex, "raise DTR and RTS", required: false);
            Vendor(FtdiProtocol.RequestSetLatencyTimer, _options.LatencyTimerMilliseconds, _layout.PortIndex, "set the latency timer", required: false);
            // Purging clears the chip's own buffers only; the BMC client still drains what is in flight before its first request.
            Vendor(FtdiProtocol.RequestReset, FtdiProtocol.PurgeRx, _layout.PortIndex, "purge RX", required: true);
            Vendor(FtdiProtocol.RequestReset, FtdiProtocol.PurgeTx, _layout.PortIndex, "purge TX", required: true);
            LogReady(_logger, Description, actual);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private static UsbDevice Choose(UsbDeviceList devices, FtdiOptions options)
    {
        var matching = devices.Where(d => d.Descriptor.Id == options.Id && (options.UsbPath is null || d.Location.SysfsName == options.UsbPath)).ToList();
        if (matching.Count == 1)
        {
            return matching[0];
        }

        var wanted = options.UsbPath is null ? options.Id.ToString() : $"{options.Id} at USB path {options.UsbPath}";
        if (matching.Count > 1)
        {
            throw new ManagementPortNotFoundException(
                $"{matching.Count} USB bridges match {wanted} ({string.Join(", ", matching.Select(d => d.Location.SysfsName))}): " +
                "choose one with --usb-path (the sysfs name, as 'lsusb -t' or /sys/bus/usb/devices shows it).");
        }

        var ftdi = devices.Where(d => d.Descriptor.Id.VendorId == FtdiProtocol.VendorId).Select(d => $"{d.Descriptor.Id} at {d.Location.SysfsName}").ToList();
        var seen = ftdi.Count == 0 ? "no FTDI device at all" : "FTDI devices: " + string.Join(", ", ftdi);
        throw new ManagementPortNotFoundException(
            $"No USB bridge {wanted} on this host's USB buses ({devices.Count} devices, {seen}). Connect the board's management USB cable; " +
            "for another bridge give --usb-id VID:PID (QEMU's usb-serial is 0403:6001) and --usb-interface; or give --port PATH for a socket or terminal.");
    }

    private static FtdiLinkLayout Layout(UsbDevice device, FtdiOptions options)
    {
        var iface = options.Interface ?? FtdiProtocol.DefaultInterface(device.Descriptor.Id.ProductId)
            ?? throw new ManagementPortNotFoundException(
                $"{device.Descriptor.Id} at {device.Location.SysfsName} is not a bridge whose BMC interface is known: give it with --usb-interface (A, B, C or D).");
        var config = device.GetActiveConfiguration();
        var setting = config.Interfaces.FirstOrDefault(i => i.Number == iface && i.AlternateSetting == 0)
            ?? throw new ManagementPortNotFoundException(
                $"{device.Descriptor.Id} at {device.Location.SysfsName} has no interface {FtdiProtocol.InterfaceLetter(iface)} ({iface}); it has " +
                $"{string.Join(", ", config.Interfaces.Select(i => FtdiProtocol.InterfaceLetter(i.Number)).Distinct())}. Check --usb-interface.");
        var bulkIn = setting.Endpoints.FirstOrDefault(e => e.Type == UsbTransferType.Bulk && e.IsIn);
        var bulkOut = setting.Endpoints.FirstOrDefault(e => e.Type == UsbTransferType.Bulk && !e.IsIn);
        if (bulkIn is null || bulkOut is null || bulkIn.MaxPacketSize <= FtdiProtocol.StatusBytes)
        {
            throw new ManagementPortNotFoundException(
                $"Interface {FtdiProtocol.InterfaceLetter(iface)} of {device.Descriptor.Id} at {device.Location.SysfsName} has no usable bulk IN and OUT endpoints: it is not a UART channel.");
        }

        var interfaceCount = config.Interfaces.Select(i => i.Number).Distinct().Count();
        var description = string.Create(CultureInfo.InvariantCulture,
            $"usb {device.Location.SysfsName} ({device.Descriptor.Id}, interface {FtdiProtocol.InterfaceLetter(iface)})");
        return new FtdiLinkLayout(iface, FtdiProtocol.PortIndex(iface, interfaceCount), bulkIn.Address, bulkOut.Address, bulkIn.MaxPacketSize, description);
    }

    private int TakePending(Span<byte> buffer)
    {
        var n = Math.Min(buffer.Length, _pendingCount);
        _payload.AsSpan(_pendingStart, n).CopyTo(buffer);
        _pendingStart += n;
        _pendingCount -= n;
        return n;
    }

    private void Vendor(byte request, ushort value, ushort index, string what, bool required)
    {
        try
        {
            _usb.ControlTransfer(new UsbControlSetup(UsbControlSetup.VendorOut, request, value, index), [], _options.ControlTimeout);
        }
        catch (UsbException ex) when (!required && ex.Error == UsbError.Pipe)
        {
            // Some bridges (QEMU's among them, for some requests) stall what they do not implement and keep working.
            LogOptionalRequestStalled(_logger, what, Description);
        }
    }

    private void Try(Action step, string what)
    {
        try
        {
            step();
        }
        catch (IOException ex)
        {
            LogCleanupFailed(_logger, what, Description, ex.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Detached kernel driver {Driver} from {Link}; it is re-attached when the link closes")]
    private static partial void LogDetached(ILogger logger, string driver, string link);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Link} ready: 8N1 at {ActualBaud} baud, no flow control")]
    private static partial void LogReady(ILogger logger, string link, int actualBaud);

    [LoggerMessage(Level = LogLevel.Debug, Message = "The bridge stalled the optional request '{What}' on {Link}; going on without it")]
    private static partial void LogOptionalRequestStalled(ILogger logger, string what, string link);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not {What} on {Link} while closing it: {Reason}")]
    private static partial void LogCleanupFailed(ILogger logger, string what, string link, string reason);
}
