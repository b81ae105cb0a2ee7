using System.Diagnostics;
using System.Globalization;
using System.Text;
using FpgaAccel.FirmwareInterface;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FpgaAccel.Management;

/// <summary>How the BMC client waits and resynchronises.</summary>
public sealed record BmcClientOptions
{
    /// <summary>How long a request may take from its first byte written to its reply read (LOG adds the lines' time on the wire).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>A resynchronisation ends when the link stays quiet this long.</summary>
    public TimeSpan DrainQuiet { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>A resynchronisation gives up (the BMC is babbling) after this long.</summary>
    public TimeSpan DrainLimit { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the setting out of range.</summary>
    public void Validate()
    {
        foreach (var (name, value) in new[] { (nameof(RequestTimeout), RequestTimeout), (nameof(DrainQuiet), DrainQuiet), (nameof(DrainLimit), DrainLimit) })
        {
            if (value <= TimeSpan.Zero || value > TimeSpan.FromMinutes(10))
            {
                throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive and at most 10 minutes.");
            }
        }
    }
}

/// <summary>
/// The BMC's protocol (spec 8) over any <see cref="ISerialLink"/>: one ASCII request a line, one reply line starting
/// with OK or ERR, and for LOG the lines it announces. Every request has a timeout; a reply that breaks the protocol
/// is a typed error naming the line; ERR is a <see cref="BmcErrorReplyException"/> carrying the BMC's reason.
/// </summary>
/// <remarks>
/// <para>
/// Matching replies to requests: the protocol has no tags, so the client keeps at most one request outstanding and
/// trusts the first line after it. Before a request it discards whatever arrived with no request outstanding (a
/// late reply to a request that timed out, or noise), and after any failed exchange, and before the first request,
/// it resynchronises: it sends a bare newline (ending any partial request line at the BMC, which ignores empty lines,
/// decision P2) and drains the link until it is quiet. A reply whose form does not fit the request (a VERSION
/// answered with a number) is taken for a reply to a request this client never sent:
/// <see cref="BmcViolation.UnexpectedReply"/>.
/// </para>
/// <para>
/// Concurrency: one lock serialises requests (invariant: at most one request outstanding on the link, so the first
/// line read answers it). A waiting caller waits at most as long as the request it waits behind may take.
/// </para>
/// </remarks>
public sealed partial class BmcClient : IDisposable
{
    private readonly ISerialLink _link;
    private readonly LineReader _reader;
    private readonly BmcClientOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private bool _needsResync = true;
    private long _discarded;
    private bool _disposed;

    /// <summary>A client over <paramref name="link"/>, which it owns and disposes.</summary>
    public BmcClient(ISerialLink link, BmcClientOptions? options = null, ILogger? logger = null)
    {
        _options = options ?? new BmcClientOptions();
        _options.Validate();
        _link = link;
        _reader = new LineReader(link);
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>Opens the port <paramref name="port"/> names and a client over it.</summary>
    public static BmcClient Open(ManagementPortOptions port, BmcClientOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        var link = ManagementPort.Open(port, loggerFactory);
        try
        {
            return new BmcClient(link, options, loggerFactory?.CreateLogger<BmcClient>());
        }
        catch
        {
            link.Dispose();
            throw;
        }
    }

    /// <summary>What the link reaches, for messages.</summary>
    public string Port => _link.Description;

    /// <summary>The last exchange that completed (with an OK reply).</summary>
    public BmcExchange? LastExchange { get; private set; }

    /// <summary>Bytes dropped so far because they came with no request outstanding.</summary>
    public long DiscardedBytes => Interlocked.Read(ref _discarded);

    /// <summary>VERSION: the firmware's version (<c>OK FA1-BMC 1.4.2</c>).</summary>
    public BmcFirmwareVersion GetVersion(TimeSpan? timeout = null)
    {
        BmcFirmwareVersion? version = null;
        Exchange(BoardManagement.CommandVersion, timeout, payload =>
        {
            version = ParseVersion(payload);
            return version is null
                ? Unexpected(BoardManagement.CommandVersion, payload, $"VERSION replies 'OK {BoardManagement.VersionProduct} <major>.<minor>.<patch>' (spec 8)")
                : 0;
        });
        return version!;
    }

    /// <summary>SERIAL: the board's serial number.</summary>
    public string GetSerial(TimeSpan? timeout = null)
    {
        var serial = string.Empty;
        Exchange(BoardManagement.CommandSerial, timeout, payload =>
        {
            serial = payload.Trim();
            return serial.Length == 0 ? Unexpected(BoardManagement.CommandSerial, payload, "SERIAL replies 'OK <board serial>' (spec 8); the serial is missing") : 0;
        });
        return serial;
    }

    /// <summary>TEMP: the board's temperature.</summary>
    public BmcTemperature GetTemperature(TimeSpan? timeout = null)
    {
        var temperature = default(BmcTemperature);
        Exchange(BoardManagement.CommandTemperature, timeout, payload =>
        {
            if (!int.TryParse(payload, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var milli))
            {
                return Unexpected(BoardManagement.CommandTemperature, payload, "TEMP replies 'OK <millidegrees C>', an integer (spec 8)");
            }

            if (milli is < BmcTemperature.MinimumMillidegrees or > BmcTemperature.MaximumMillidegrees)
            {
                throw new BmcProtocolException(BoardManagement.CommandTemperature, BmcViolation.ValueOutOfRange, $"OK {payload}",
                    $"{milli} millidegrees is outside {BmcTemperature.MinimumMillidegrees}..{BmcTemperature.MaximumMillidegrees}: not a reading.");
            }

            temperature = new BmcTemperature(milli);
            return 0;
        });
        return temperature;
    }

    /// <summary>RESET: the BMC answers OK, then cold-resets the FPGA, whose PCIe device is off the bus for about a second.</summary>
    public void Reset(TimeSpan? timeout = null) =>
        Exchange(BoardManagement.CommandReset, timeout, payload =>
            payload.Length == 0 ? 0 : Unexpected(BoardManagement.CommandReset, payload, "RESET replies a bare 'OK' (spec 8)"));

    /// <summary>LOG n: the last lines of the firmware log, oldest first; at most <paramref name="lines"/> (0 to <see cref="BoardManagement.MaxLogLines"/>).</summary>
    public IReadOnlyList<string> GetLog(int lines, TimeSpan? timeout = null)
    {
        if (lines is < 0 or > BoardManagement.MaxLogLines)
        {
            throw new ArgumentOutOfRangeException(nameof(lines), lines, $"LOG takes 0 to {BoardManagement.MaxLogLines} lines (decision P3).");
        }

        var request = string.Create(CultureInfo.InvariantCulture, $"{BoardManagement.CommandLog} {lines}");
        // Up to n lines of up to MaxLineLength characters cross a 115200-baud UART (10 bits a character): allow that time too.
        var wire = TimeSpan.FromSeconds((lines + 1.0) * (BoardManagement.MaxLineLength + 2) * 10 / BoardManagement.BaudRate);
        var exchange = Exchange(request, (timeout ?? _options.RequestTimeout) + wire, payload =>
        {
            if (!int.TryParse(payload, NumberStyles.None, CultureInfo.InvariantCulture, out var count))
            {
                return Unexpected(request, payload, "LOG replies 'OK <count>' then that many lines (spec 8)");
            }

            return count <= lines
                ? count
                : throw new BmcProtocolException(request, BmcViolation.ValueOutOfRange, $"OK {payload}",
                    $"the BMC announced {count} lines for LOG {lines}; it may send at most {lines} (decision P3).");
        });
        return exchange.Lines;
    }

    /// <summary>Closes the link (for USB: releases the interface and gives the kernel driver back).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _link.Dispose();
        }
    }

    /// <summary>
    /// Sends <paramref name="request"/> and reads its reply within the timeout. <paramref name="accept"/> checks an OK
    /// reply's payload and returns how many lines follow it (or throws).
    /// </summary>
    internal BmcExchange Exchange(string request, TimeSpan? timeout, Func<string, int> accept)
    {
        var limit = timeout ?? _options.RequestTimeout;
        if (limit <= TimeSpan.Zero || limit > TimeSpan.FromMinutes(10))
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), limit, "A request timeout must be positive and at most 10 minutes.");
        }

        // Bounded wait: the holder's request ends by its own deadline, after at most one resynchronisation.
        var wait = limit + _options.DrainLimit + _options.RequestTimeout + TimeSpan.FromSeconds(1);
        if (!_gate.TryEnter(wait))
        {
            throw new BmcTimeoutException(request, wait, string.Empty, $"{_link.Description} (another request on this client held it)");
        }

        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var exchange = ExchangeLocked(request, limit, accept);
            LastExchange = exchange;
            return exchange;
        }
        catch (BmcErrorReplyException)
        {
            // A well-formed ERR: the link is in step.
            throw;
        }
        catch (Exception ex) when (ex is IOException)
        {
            _needsResync = true;
            throw;
        }
        finally
        {
            _gate.Exit();
        }
    }

    private BmcExchange ExchangeLocked(string request, TimeSpan limit, Func<string, int> accept)
    {
        PrepareLink(request);
        var started = Stopwatch.GetTimestamp();
        var deadline = Environment.TickCount64 + (long)Math.Ceiling(limit.TotalMilliseconds);
        _link.Write(Encoding.ASCII.GetBytes(request + BoardManagement.LineTerminator), limit);
        var reply = _reader.ReadLine(request, deadline, limit);

        string payload;
        if (IsStatus(reply, BoardManagement.ReplyOk, out payload))
        {
            var count = accept(payload);
            var lines = new string[count];
            for (var i = 0; i < count; i++)
            {
                lines[i] = _reader.ReadLine(request, deadline, limit);
            }

            var exchange = new BmcExchange(request, reply, lines, Stopwatch.GetElapsedTime(started));
            LogExchange(_logger, request, reply, exchange.RoundTrip.TotalMilliseconds);
            return exchange;
        }

        if (IsStatus(reply, BoardManagement.ReplyError, out payload))
        {
            throw new BmcErrorReplyException(request, payload);
        }

        throw new BmcProtocolException(request, BmcViolation.UnknownStatus, reply,
            "a reply starts with OK or ERR (spec 8). The port may reach something other than the BMC; check --port and --usb-interface.");
    }

    /// <summary>
    /// Before a request: after a failure (and before the first request), resynchronise; otherwise drop whatever came
    /// with no request outstanding.
    /// </summary>
    private void PrepareLink(string request)
    {
        if (_needsResync)
        {
            // End any partial request line at the BMC (decision P2: it ignores the empty line), then drain.
            _link.Write(Encoding.ASCII.GetBytes(BoardManagement.LineTerminator), _options.RequestTimeout);
            var (dropped, quiet) = _reader.Drain(_options.DrainQuiet, _options.DrainLimit);
            Discarded(dropped, "resynchronising");
            if (!quiet)
            {
                throw new BmcProtocolException(request, BmcViolation.Babbling, string.Empty,
                    $"the BMC sent {dropped} bytes in {_options.DrainLimit.TotalMilliseconds:0} ms with no request outstanding and did not stop. " +
                    "Check that the port reaches the BMC and the UART runs at 115200 8N1.");
            }

            _needsResync = false;
            return;
        }

        var (stray, _) = _reader.Drain(TimeSpan.Zero, _options.DrainLimit);
        Discarded(stray, "before " + request);
    }

    private void Discarded(long bytes, string when)
    {
        if (bytes > 0)
        {
            Interlocked.Add(ref _discarded, bytes);
            LogDiscarded(_logger, bytes, when, _link.Description);
        }
    }

    private static bool IsStatus(string line, string status, out string payload)
    {
        payload = string.Empty;
        if (!line.StartsWith(status, StringComparison.Ordinal))
        {
            return false;
        }

        if (line.Length == status.Length)
        {
            return true;
        }

        if (line[status.Length] != ' ')
        {
            return false;
        }

        payload = line[(status.Length + 1)..];
        return true;
    }

    private static BmcFirmwareVersion? ParseVersion(string payload)
    {
        var prefix = BoardManagement.VersionProduct + " ";
        if (!payload.StartsWith(prefix, StringComparison.Ordinal))
        {
            return null;
        }

        var parts = payload[prefix.Length..].Split('.');
        var numbers = new int[3];
        if (parts.Length != 3)
        {
            return null;
        }

        for (var i = 0; i < 3; i++)
        {
            if (parts[i].Length is 0 or > 5 || !int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out numbers[i]))
            {
                return null;
            }
        }

        return new BmcFirmwareVersion(numbers[0], numbers[1], numbers[2]);
    }

    private static int Unexpected(string request, string payload, string rule) =>
        throw new BmcProtocolException(request, BmcViolation.UnexpectedReply, $"OK {payload}".TrimEnd(),
            $"{rule}. This reply fits another request: a late reply to an earlier request, or one this client never sent.");

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Request} -> {Reply} ({RoundTripMs:0.000} ms)")]
    private static partial void LogExchange(ILogger logger, string request, string reply, double roundTripMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dropped {Bytes} bytes that came with no request outstanding ({When}) on {Link}")]
    private static partial void LogDiscarded(ILogger logger, long bytes, string when, string link);
}
