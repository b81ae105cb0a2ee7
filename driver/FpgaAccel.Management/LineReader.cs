using System.Text;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Management;

/// <summary>
/// Splits what a link delivers into lines (decision D8: each ends with a newline; a trailing carriage return is
/// dropped), at most <see cref="BoardManagement.MaxLineLength"/> characters (P1) of printable ASCII (P5). Bytes
/// after a line stay buffered for the next one. One caller at a time (the client's lock).
/// </summary>
internal sealed class LineReader(ISerialLink link)
{
    private readonly byte[] _buffer = new byte[4096];
    private int _start;
    private int _count;

    // After an overlong line, the rest of it up to its newline is not a line of its own: it is dropped.
    private bool _skipToNewline;

    /// <summary>Bytes received and not yet consumed.</summary>
    public int Pending => _count;

    /// <summary>
    /// The next complete line, waiting until <paramref name="deadline"/> (Environment.TickCount64) for it. Throws
    /// <see cref="BmcTimeoutException"/> with what came of the line when its newline does not come in time, and
    /// <see cref="BmcProtocolException"/> for a line too long or not printable (consumed either way).
    /// </summary>
    public string ReadLine(string request, long deadline, TimeSpan timeout)
    {
        while (true)
        {
            var newline = _buffer.AsSpan(_start, _count).IndexOf(BoardManagement.LineTerminatorByte);
            if (_skipToNewline)
            {
                Consume(newline < 0 ? _count : newline + 1);
                _skipToNewline = newline < 0;
                if (newline < 0)
                {
                    Fill(request, deadline, timeout);
                }

                continue;
            }

            if (newline >= 0)
            {
                var line = _buffer.AsSpan(_start, newline);
                if (!line.IsEmpty && line[^1] == (byte)'\r')
                {
                    line = line[..^1];
                }

                var text = Encoding.Latin1.GetString(line);
                Consume(newline + 1);
                if (text.Length > BoardManagement.MaxLineLength)
                {
                    throw Overlong(request, text);
                }

                if (line.IndexOfAnyExceptInRange(BoardManagement.FirstPrintable, BoardManagement.LastPrintable) >= 0)
                {
                    throw new BmcProtocolException(request, BmcViolation.NotPrintable, text,
                        "the line holds bytes outside printable ASCII (decision P5): line noise, or a UART speed other than 115200 8N1.");
                }

                return text;
            }

            // No newline yet. A line may end in '\r' before its '\n', hence the one extra byte.
            if (_count > BoardManagement.MaxLineLength + 1)
            {
                var text = Encoding.Latin1.GetString(_buffer, _start, _count);
                Consume(_count);
                _skipToNewline = true;
                throw Overlong(request, text);
            }

            Fill(request, deadline, timeout);
        }
    }

    /// <summary>Drops every byte received and not consumed; returns how many.</summary>
    public int DiscardPending()
    {
        var n = _count;
        Consume(n);
        _skipToNewline = false;
        return n;
    }

    /// <summary>
    /// Reads and drops bytes until the link stays quiet for <paramref name="quiet"/> (zero: until a read finds nothing
    /// waiting), for at most <paramref name="limit"/>. Returns the bytes dropped, and whether the link went quiet.
    /// </summary>
    public (long Dropped, bool Quiet) Drain(TimeSpan quiet, TimeSpan limit)
    {
        var dropped = (long)DiscardPending();
        var end = Environment.TickCount64 + (long)limit.TotalMilliseconds;
        while (true)
        {
            var n = link.Read(_buffer, quiet);
            if (n == 0)
            {
                return (dropped, true);
            }

            dropped += n;
            if (Environment.TickCount64 >= end)
            {
                return (dropped, false);
            }
        }
    }

    private void Fill(string request, long deadline, TimeSpan timeout)
    {
        var left = deadline - Environment.TickCount64;
        if (left <= 0)
        {
            throw new BmcTimeoutException(request, timeout, _skipToNewline ? string.Empty : Encoding.Latin1.GetString(_buffer, _start, _count), link.Description);
        }

        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _count);
            _start = 0;
        }

        _count += link.Read(_buffer.AsSpan(_count), TimeSpan.FromMilliseconds(left));
    }

    private void Consume(int n)
    {
        _start += n;
        _count -= n;
        if (_count == 0)
        {
            _start = 0;
        }
    }

    private static BmcProtocolException Overlong(string request, string text) =>
        new(request, BmcViolation.OverlongLine, text,
            $"a line holds at most {BoardManagement.MaxLineLength} characters before its newline (decision P1); the rest of it is dropped.");
}
