using System.Text;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.HwSim.Bmc;

/// <summary>
/// One peer's byte stream into the BMC's UART: assembles request lines and answers each through the model.
/// A line ends with <c>\n</c>, <c>\r</c> or <c>\r\n</c> (decision P2: a terminal's Enter sends <c>\r</c>); an empty line
/// gets no reply, so a client may send one to end a partial line. A line longer than
/// <see cref="BoardManagement.MaxLineLength"/> (P1) or holding a byte outside printable ASCII (P5) gets an ERR once it
/// ends. Replies end with <c>\n</c> only (D8). Not thread-safe: one session per connection, fed by its one reader.
/// </summary>
public sealed class BmcSession(BmcModel model)
{
    private readonly byte[] _line = new byte[BoardManagement.MaxLineLength];
    private int _length;
    private bool _overlong;
    private bool _garbage;

    /// <summary>Feeds bytes received from the peer; returns the reply bytes to send back (empty when no line ended).</summary>
    public byte[] Receive(ReadOnlySpan<byte> bytes)
    {
        List<byte>? reply = null;
        foreach (var b in bytes)
        {
            if (b is (byte)'\n' or (byte)'\r')
            {
                var answer = EndLine();
                if (answer is not null)
                {
                    reply ??= [];
                    foreach (var line in answer)
                    {
                        reply.AddRange(Encoding.ASCII.GetBytes(line));
                        reply.Add(BoardManagement.LineTerminatorByte);
                    }
                }

                continue;
            }

            if (b is < BoardManagement.FirstPrintable or > BoardManagement.LastPrintable)
            {
                _garbage = true;
            }

            if (_length < _line.Length)
            {
                _line[_length++] = b;
            }
            else
            {
                _overlong = true;
            }
        }

        return reply is null ? [] : [.. reply];
    }

    private IReadOnlyList<string>? EndLine()
    {
        var (length, overlong, garbage) = (_length, _overlong, _garbage);
        _length = 0;
        _overlong = false;
        _garbage = false;
        if (overlong)
        {
            return [$"{BoardManagement.ReplyError} line too long: at most {BoardManagement.MaxLineLength} characters"];
        }

        if (garbage)
        {
            return [$"{BoardManagement.ReplyError} not printable ASCII"];
        }

        // Decision P2: the '\n' of a "\r\n" (or any empty line) is not a request.
        return length == 0 ? null : model.Answer(Encoding.ASCII.GetString(_line, 0, length));
    }
}
