using System.Globalization;
using System.Text;

namespace FpgaAccel.Management;

/// <summary>A BMC request failed. <see cref="Request"/> names it; subclasses say how.</summary>
public abstract class BmcException : IOException
{
    /// <summary>A failure of <paramref name="request"/>; <paramref name="message"/> names what happened and the fix.</summary>
    protected BmcException(string request, string message, Exception? inner = null)
        : base(message, inner)
    {
        Request = request;
    }

    /// <summary>The request line (<c>TEMP</c>, <c>LOG 5</c>).</summary>
    public string Request { get; }

    /// <summary>A line as it can be printed: non-printable bytes as \xNN, cut at 80 characters.</summary>
    internal static string Printable(string line)
    {
        var text = new StringBuilder();
        foreach (var c in line)
        {
            if (text.Length >= 80)
            {
                text.Append("...");
                break;
            }

            if (c is >= ' ' and <= '~')
            {
                text.Append(c);
            }
            else
            {
                text.Append(CultureInfo.InvariantCulture, $"\\x{(int)c & 0xff:x2}");
            }
        }

        return text.ToString();
    }
}

/// <summary>The BMC refused or could not carry out the request: it replied <c>ERR &lt;reason&gt;</c> (spec 8).</summary>
public sealed class BmcErrorReplyException : BmcException
{
    /// <summary>The BMC answered <paramref name="request"/> with ERR and <paramref name="reason"/>.</summary>
    public BmcErrorReplyException(string request, string reason)
        : base(request, $"The BMC refused {request}: ERR {(reason.Length == 0 ? "(no reason given)" : Printable(reason))}.")
    {
        Reason = reason;
    }

    /// <summary>What the BMC said after ERR (may be empty).</summary>
    public string Reason { get; }
}

/// <summary>
/// No complete reply within the request's timeout: nothing came (<see cref="Received"/> empty), or a line began but its
/// newline never came. The link is resynchronised before the next request.
/// </summary>
public sealed class BmcTimeoutException : BmcException
{
    /// <summary><paramref name="request"/> got no complete reply within <paramref name="timeout"/>; <paramref name="received"/> is what came.</summary>
    public BmcTimeoutException(string request, TimeSpan timeout, string received, string link)
        : base(request, Describe(request, timeout, received, link))
    {
        Timeout = timeout;
        Received = received;
    }

    /// <summary>The request's timeout.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>The part of a line that came without its newline (empty when nothing came).</summary>
    public string Received { get; }

    private static string Describe(string request, TimeSpan timeout, string received, string link)
    {
        var ms = timeout.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture);
        return received.Length == 0
            ? $"No reply to {request} within {ms} ms on {link}: the BMC is silent. Check that the board is powered, that the port reaches the BMC " +
              "(interface B of the FT2232 on the board; --usb-interface for another), and that nothing else holds the port."
            : $"The reply to {request} on {link} began ('{Printable(received)}') but its newline did not come within {ms} ms: the line was cut. " +
              "The client resynchronises before the next request; if it keeps happening, check the cable and the UART's speed (115200 8N1).";
    }
}

/// <summary>How a reply broke the protocol (spec 8, decisions P1-P5).</summary>
public enum BmcViolation
{
    /// <summary>The line starts with neither OK nor ERR.</summary>
    UnknownStatus,

    /// <summary>The line is longer than <c>BoardManagement.MaxLineLength</c>.</summary>
    OverlongLine,

    /// <summary>The line holds bytes outside printable ASCII: noise, or another speed than 115200.</summary>
    NotPrintable,

    /// <summary>An OK reply whose form fits no reply to this request: a reply to a request this client never sent (a late one, or another client's).</summary>
    UnexpectedReply,

    /// <summary>A number in the reply is outside what the request allows (LOG's count above n, a temperature below absolute zero).</summary>
    ValueOutOfRange,

    /// <summary>The BMC kept sending with no request outstanding, past the drain's bound.</summary>
    Babbling,
}

/// <summary>A reply broke the protocol. The link is resynchronised before the next request.</summary>
public sealed class BmcProtocolException : BmcException
{
    /// <summary>The reply <paramref name="line"/> to <paramref name="request"/> broke the protocol as <paramref name="violation"/> says; <paramref name="detail"/> explains.</summary>
    public BmcProtocolException(string request, BmcViolation violation, string line, string detail)
        : base(request, $"Malformed reply to {request} ({violation}): '{Printable(line)}': {detail}")
    {
        Violation = violation;
        Line = line;
    }

    /// <summary>How the reply broke the protocol.</summary>
    public BmcViolation Violation { get; }

    /// <summary>The offending line (or what came of it).</summary>
    public string Line { get; }
}
