using System.Globalization;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim.Bmc;

/// <summary>
/// The board-management controller of spec 8, as a model: answers VERSION, SERIAL, TEMP, RESET and LOG n, keeps a
/// firmware log, reports a temperature that drifts and jitters, and on RESET takes the FPGA off the bus for
/// <see cref="BmcModelOptions.ResetOffBus"/>. Transport-free: <see cref="Answer"/> takes one request line and gives
/// the reply lines; <see cref="BmcSession"/> frames bytes into lines and the servers carry them.
/// </summary>
/// <remarks>
/// Concurrency: requests from any number of sessions and the reset timer run under <see cref="_lock"/>. The FPGA's
/// power calls run outside it (<see cref="ModelFaultInjection.ReturnToBus"/> takes the model's own lock and joins engine threads),
/// ordered by a generation count: a timer whose reset is no longer the current one does nothing.
/// </remarks>
public sealed class BmcModel : IDisposable
{
    private readonly Lock _lock = new();
    private readonly BmcModelOptions _options;
    private readonly Queue<string> _log = new();
    private readonly Random _noise;
    private readonly long _started;
    private ITimer? _returnTimer;
    private long _generation;
    private bool _offBus;
    private bool _disposed;

    /// <summary>A BMC that has just booted, with <paramref name="options"/> (defaults when null).</summary>
    public BmcModel(BmcModelOptions? options = null)
    {
        _options = options ?? new BmcModelOptions();
        _options.Validate();
        _noise = new Random(_options.Seed);
        _started = _options.Time.GetTimestamp();
        Log($"boot: {BoardManagement.VersionProduct} {Version}");
        Log($"board: serial {_options.Serial}");
        Log("sensors: board temperature sensor ready");
        Log(string.Create(CultureInfo.InvariantCulture, $"uart: host link at {BoardManagement.BaudRate} baud, 8N1"));
        Log("fpga: configured from flash");
        Log("pcie: link up, FA-1 on the bus");
    }

    /// <summary>The firmware version VERSION answers.</summary>
    public string Version => string.Create(CultureInfo.InvariantCulture, $"{_options.FirmwareMajor}.{_options.FirmwareMinor}.{_options.FirmwarePatch}");

    /// <summary>The serial number SERIAL answers.</summary>
    public string Serial => _options.Serial;

    /// <summary>False while a RESET holds the FPGA off the bus.</summary>
    public bool FpgaOnBus
    {
        get
        {
            lock (_lock)
            {
                return !_offBus;
            }
        }
    }

    /// <summary>RESETs carried out.</summary>
    public int Resets { get; private set; }

    /// <summary>Requests answered (ERR replies included).</summary>
    public long Requests { get; private set; }

    /// <summary>
    /// Answers one request line (its terminator removed) with the lines to send back, each without its newline.
    /// Anything that is not a request of spec 8 gets <c>ERR &lt;reason&gt;</c>.
    /// </summary>
    public IReadOnlyList<string> Answer(string request)
    {
        var reset = false;
        IReadOnlyList<string> reply;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Requests++;
            reply = Dispatch(request, ref reset);
        }

        if (reset)
        {
            StartReset();
        }

        return reply;
    }

    /// <summary>The temperature now, in millidegrees: a slow drift of ±2.5 °C over a minute, plus up to ±0.2 °C of noise.</summary>
    public int TemperatureMillidegrees()
    {
        lock (_lock)
        {
            return TemperatureLocked();
        }
    }

    /// <summary>Stops the reset timer; an FPGA still off the bus comes back now rather than stay gone.</summary>
    public void Dispose()
    {
        bool wasOff;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _returnTimer?.Dispose();
            _returnTimer = null;
            wasOff = _offBus;
            _offBus = false;
            _generation++;
        }

        if (wasOff)
        {
            _options.Fpga?.ReturnToBus();
        }
    }

    private List<string> Dispatch(string request, ref bool reset)
    {
        var space = request.IndexOf(' ', StringComparison.Ordinal);
        var command = space < 0 ? request : request[..space];
        var argument = space < 0 ? null : request[(space + 1)..];
        switch (command)
        {
            case BoardManagement.CommandVersion when argument is null:
                return [$"{BoardManagement.ReplyOk} {BoardManagement.VersionProduct} {Version}"];
            case BoardManagement.CommandSerial when argument is null:
                return [$"{BoardManagement.ReplyOk} {_options.Serial}"];
            case BoardManagement.CommandTemperature when argument is null:
                return [string.Create(CultureInfo.InvariantCulture, $"{BoardManagement.ReplyOk} {TemperatureLocked()}")];
            case BoardManagement.CommandReset when argument is null:
                if (_offBus)
                {
                    // Decision P4: one reset at a time.
                    return [$"{BoardManagement.ReplyError} reset in progress: the FPGA is off the bus until it comes back"];
                }

                _offBus = true;
                reset = true;
                Resets++;
                Log("host: RESET");
                Log("fpga: cold reset, PCIe device off the bus");
                return [BoardManagement.ReplyOk];
            case BoardManagement.CommandLog when argument is not null:
                return LogReply(argument);
            case BoardManagement.CommandVersion or BoardManagement.CommandSerial or BoardManagement.CommandTemperature or BoardManagement.CommandReset:
                return [$"{BoardManagement.ReplyError} {command} takes no argument"];
            case BoardManagement.CommandLog:
                return [$"{BoardManagement.ReplyError} LOG needs a line count, 0 to {BoardManagement.MaxLogLines}"];
            default:
                return [$"{BoardManagement.ReplyError} unknown request '{Clip(command)}'"];
        }
    }

    private List<string> LogReply(string argument)
    {
        // Decision P3: n is decimal digits only, 0 to MaxLogLines; the reply carries the last min(n, held) lines.
        if (argument.Length is 0 or > 4 || !int.TryParse(argument, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > BoardManagement.MaxLogLines)
        {
            return [$"{BoardManagement.ReplyError} LOG needs a line count, 0 to {BoardManagement.MaxLogLines}; got '{Clip(argument)}'"];
        }

        var count = Math.Min(n, _log.Count);
        var reply = new List<string>(count + 1) { string.Create(CultureInfo.InvariantCulture, $"{BoardManagement.ReplyOk} {count}") };
        reply.AddRange(_log.Skip(_log.Count - count));
        return reply;
    }

    private void StartReset()
    {
        long generation;
        lock (_lock)
        {
            generation = ++_generation;
        }

        _options.Fpga?.DropOffBus();
        lock (_lock)
        {
            if (_disposed || generation != _generation)
            {
                return;
            }

            // The timer starts after the drop, so the return can never overtake it.
            _returnTimer?.Dispose();
            _returnTimer = _options.Time.CreateTimer(_ => ReturnToBus(generation), null, _options.ResetOffBus, Timeout.InfiniteTimeSpan);
        }
    }

    private void ReturnToBus(long generation)
    {
        lock (_lock)
        {
            if (_disposed || generation != _generation || !_offBus)
            {
                return;
            }

            _offBus = false;
            _returnTimer?.Dispose();
            _returnTimer = null;
            Log("pcie: link up, FA-1 back on the bus");
        }

        _options.Fpga?.ReturnToBus();
    }

    private int TemperatureLocked()
    {
        var seconds = _options.Time.GetElapsedTime(_started).TotalSeconds;
        var drift = 2500 * Math.Sin(2 * Math.PI * seconds / 60);
        return _options.BaseTemperatureMillidegrees + (int)Math.Round(drift) + _noise.Next(-200, 201);
    }

    private void Log(string text)
    {
        var seconds = _options.Time.GetElapsedTime(_started).TotalSeconds;
        var line = string.Create(CultureInfo.InvariantCulture, $"[{seconds,10:0.000}] {text}");
        _log.Enqueue(line.Length <= BoardManagement.MaxLineLength ? line : line[..BoardManagement.MaxLineLength]);
        while (_log.Count > _options.LogCapacity)
        {
            _log.Dequeue();
        }
    }

    // What an ERR reply quotes back stays short and printable.
    private static string Clip(string text) => text.Length <= 32 ? text : text[..32] + "...";
}
