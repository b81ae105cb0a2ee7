using FpgaAccel.Management;
using NUnit.Framework;

namespace FpgaAccel.Tests.Management;

/// <summary>
/// Every way a reply can break spec 8, against a scripted BMC: each gets its typed error, and the next request, answered
/// well, succeeds (the client resynchronises). Also: per-request timeouts, and bytes that come with no request outstanding.
/// </summary>
public class BmcBadReplyTests
{
    private static readonly BmcClientOptions s_options = new() { RequestTimeout = TimeSpan.FromSeconds(2), DrainQuiet = TimeSpan.FromMilliseconds(30) };

    [Test]
    public void NoNewlineIsATimeoutThatShowsWhatCame()
    {
        // A second: long enough for the scripted peer's thread to answer on a loaded machine.
        var error = BadReply<BmcTimeoutException>("VERSION", "OK FA1-BMC 1.2.0", TimeSpan.FromSeconds(1));
        Assert.That(error.Received, Is.EqualTo("OK FA1-BMC 1.2.0"));
        Assert.That(error.Timeout, Is.EqualTo(TimeSpan.FromSeconds(1)));
        Assert.That(error.Message, Does.Contain("its newline did not come within 1000 ms"));
    }

    [Test]
    public void SilenceIsATimeoutThatSaysSo()
    {
        var error = BadReply<BmcTimeoutException>("TEMP", "", TimeSpan.FromMilliseconds(100));
        Assert.That(error.Received, Is.Empty);
        Assert.That(error.Message, Does.StartWith("No reply to TEMP within 100 ms on socketpair: the BMC is silent"));
    }

    [Test]
    public void AnOverlongLineIsMalformed()
    {
        var error = BadReply<BmcProtocolException>("SERIAL", "OK " + new string('9', 300) + "\n");
        Assert.That(error.Violation, Is.EqualTo(BmcViolation.OverlongLine));
        Assert.That(error.Message, Does.Contain("at most 255 characters"));
    }

    [Test]
    public void AnUnknownStatusIsMalformed()
    {
        var error = BadReply<BmcProtocolException>("TEMP", "WAT 41000\n");
        Assert.That(error.Violation, Is.EqualTo(BmcViolation.UnknownStatus));
        Assert.That(error.Line, Is.EqualTo("WAT 41000"));
        Assert.That(BadReply<BmcProtocolException>("TEMP", "OKAY 4\n").Violation, Is.EqualTo(BmcViolation.UnknownStatus), "OK must be a word of its own");
    }

    [Test]
    public void AReplyToARequestNeverSentIsUnexpected()
    {
        // VERSION answered with what TEMP would answer: a late reply, or one to another client's request.
        var error = BadReply<BmcProtocolException>("VERSION", "OK 41250\n");
        Assert.That(error.Violation, Is.EqualTo(BmcViolation.UnexpectedReply));
        Assert.That(error.Message, Does.Contain("one this client never sent"));
        Assert.That(BadReply<BmcProtocolException>("RESET", "OK FA1-BMC 1.2.0\n").Violation, Is.EqualTo(BmcViolation.UnexpectedReply));
        Assert.That(BadReply<BmcProtocolException>("TEMP", "OK FA1-SIM-000001\n").Violation, Is.EqualTo(BmcViolation.UnexpectedReply));
    }

    [Test]
    public void BytesOutsidePrintableAsciiAreMalformed()
    {
        var error = BadReply<BmcProtocolException>("SERIAL", "OK \u00ff\u0001\n");
        Assert.That(error.Violation, Is.EqualTo(BmcViolation.NotPrintable));
        Assert.That(error.Message, Does.Contain("\\xff\\x01"), "the line is shown with the bytes escaped");
    }

    [Test]
    public void NumbersOutsideTheirRangeAreMalformed()
    {
        Assert.That(BadReply<BmcProtocolException>("LOG 5", "OK 7\n").Violation, Is.EqualTo(BmcViolation.ValueOutOfRange), "7 lines for LOG 5");
        Assert.That(BadReply<BmcProtocolException>("TEMP", "OK -300000\n").Violation, Is.EqualTo(BmcViolation.ValueOutOfRange), "below absolute zero");
    }

    [Test]
    public void LogLinesThatNeverComeAreATimeout()
    {
        var error = BadReply<BmcTimeoutException>("LOG 5", "OK 3\nonly one line\n", TimeSpan.FromMilliseconds(200));
        Assert.That(error.Request, Is.EqualTo("LOG 5"));
    }

    [Test]
    public void ErrWithoutAReasonIsStillAnErrReply()
    {
        var error = BadReply<BmcErrorReplyException>("SERIAL", "ERR\n");
        Assert.That(error.Reason, Is.Empty);
        Assert.That(error.Message, Does.Contain("(no reason given)"));
    }

    [Test]
    public void GarbageWithNoRequestOutstandingIsDroppedBeforeTheNextRequest()
    {
        using var peer = new ScriptedPeer(Good);
        using var client = new BmcClient(peer.Link, s_options);
        Assert.That(client.GetSerial(), Is.EqualTo("FA1-0001"));
        peer.Send("\u0000\u00ffnoise OK 1\nOK FA1-BMC 9.9.9\npartial");
        Thread.Sleep(100);
        Assert.That(client.GetVersion().ToString(), Is.EqualTo("1.2.0"), "the stray reply was not taken for this one");
        Assert.That(client.DiscardedBytes, Is.EqualTo(37), "every byte that came unasked, the partial line included");
    }

    [Test]
    public void APartialLineThatEndsLateIsDrainedOnResynchronisation()
    {
        var calls = 0;
        using var peer = new ScriptedPeer(request => request == "TEMP" && Interlocked.Increment(ref calls) == 1 ? "OK 4" : Good(request));
        using var client = new BmcClient(peer.Link, s_options);
        Assert.That(() => client.GetTemperature(TimeSpan.FromMilliseconds(100)), Throws.TypeOf<BmcTimeoutException>());
        peer.Send("1000\n");
        Assert.That(client.GetTemperature().Millidegrees, Is.EqualTo(45125), "not 41000: the late tail was drained, not read as the reply");
        Assert.That(peer.Seen.Count(l => l.Length == 0), Is.EqualTo(2), "a bare newline before the first request and after the failure");
    }

    [Test]
    public void TheFirstRequestIsPrecededByAResynchronisation()
    {
        using var peer = new ScriptedPeer(Good);
        peer.Send("OK stale from an earlier session\n");
        using var client = new BmcClient(peer.Link, s_options);
        Assert.That(client.GetSerial(), Is.EqualTo("FA1-0001"));
        Assert.That(peer.Seen[0], Is.Empty, "a bare newline ends any partial line at the BMC first");
        Assert.That(client.DiscardedBytes, Is.GreaterThan(0));
    }

    [Test]
    public void ABabblingBmcIsReportedAfterTheDrainsBound()
    {
        // A link that always has bytes to give, until told to stop: the drain can never go quiet.
        var link = new BabblingLink();
        using var client = new BmcClient(link, s_options with { DrainLimit = TimeSpan.FromMilliseconds(200) });
        var error = Assert.Throws<BmcProtocolException>(() => client.GetSerial());
        Assert.That(error!.Violation, Is.EqualTo(BmcViolation.Babbling));
        Assert.That(error.Message, Does.Contain("did not stop"));
        link.Babbling = false;
        Assert.That(client.GetSerial(), Is.EqualTo("FA1-0001"), "once it stops, the client resynchronises");
    }

    [Test]
    public void EachRequestWaitsAtMostItsOwnTimeout()
    {
        using var peer = new ScriptedPeer(_ => "");
        using var client = new BmcClient(peer.Link, s_options);
        foreach (var ms in new[] { 50, 150 })
        {
            var error = Assert.Throws<BmcTimeoutException>(() => client.GetVersion(TimeSpan.FromMilliseconds(ms)));
            Assert.That(error!.Timeout, Is.EqualTo(TimeSpan.FromMilliseconds(ms)));
        }

        Assert.That(() => client.GetVersion(TimeSpan.Zero), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(() => client.GetVersion(Timeout.InfiniteTimeSpan), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    /// <summary>A link whose peer sends 'x' without end while <see cref="Babbling"/>, then answers SERIAL.</summary>
    private sealed class BabblingLink : ISerialLink
    {
        private readonly Queue<byte> _reply = new();

        public volatile bool Babbling = true;

        public string Description => "babbling link";

        public int Read(Span<byte> buffer, TimeSpan timeout)
        {
            if (Babbling)
            {
                buffer[..Math.Min(64, buffer.Length)].Fill((byte)'x');
                return Math.Min(64, buffer.Length);
            }

            var n = 0;
            while (n < buffer.Length && _reply.TryDequeue(out var b))
            {
                buffer[n++] = b;
            }

            return n;
        }

        public void Write(ReadOnlySpan<byte> data, TimeSpan timeout)
        {
            if (!Babbling && System.Text.Encoding.ASCII.GetString(data) == "SERIAL\n")
            {
                foreach (var b in "OK FA1-0001\n"u8)
                {
                    _reply.Enqueue(b);
                }
            }
        }

        public void Dispose()
        {
        }
    }

    private static string Good(string request) => request switch
    {
        "VERSION" => "OK FA1-BMC 1.2.0\n",
        "SERIAL" => "OK FA1-0001\n",
        "TEMP" => "OK 45125\n",
        "RESET" => "OK\n",
        _ when request.StartsWith("LOG ", StringComparison.Ordinal) => "OK 1\n[     0.001] boot\n",
        _ => "ERR unknown\n",
    };

    /// <summary>
    /// Sends <paramref name="request"/> to a BMC that answers it once with <paramref name="badReply"/>, returns the error the
    /// client throws, then checks that the same request, answered well, succeeds.
    /// </summary>
    private static TException BadReply<TException>(string request, string badReply, TimeSpan? timeout = null)
        where TException : BmcException
    {
        var answered = 0;
        using var peer = new ScriptedPeer(r => r == request && Interlocked.Increment(ref answered) == 1 ? badReply : Good(r));
        using var client = new BmcClient(peer.Link, s_options);
        var error = Assert.Throws<TException>(() => Send(client, request, timeout))!;
        Assert.That(error.Request, Is.EqualTo(request));
        Assert.That(() => Send(client, request, null), Throws.Nothing, $"after the bad reply to {request}, a good one is read");
        return error;
    }

    private static void Send(BmcClient client, string request, TimeSpan? timeout)
    {
        switch (request)
        {
            case "VERSION": client.GetVersion(timeout); break;
            case "SERIAL": client.GetSerial(timeout); break;
            case "TEMP": client.GetTemperature(timeout); break;
            case "RESET": client.Reset(timeout); break;
            default: client.GetLog(int.Parse(request[4..], System.Globalization.CultureInfo.InvariantCulture), timeout); break;
        }
    }
}
