using System.Net.Sockets;
using System.Text;
using FpgaAccel.HwSim.Bmc;
using FpgaAccel.Interop;
using FpgaAccel.Management;

namespace FpgaAccel.Tests.Management;

/// <summary>
/// The other end of a socket pair, on its own thread: the BMC model (<see cref="ModelPeer"/>), or a script that answers
/// each request line with whatever bytes a test wants, well-formed or not (<see cref="ScriptedPeer"/>).
/// </summary>
internal abstract class SocketPeer : IDisposable
{
    private readonly Thread _thread;
    private volatile bool _stop;

    protected SocketPeer()
    {
        (var client, Socket) = UnixSocketPair.Create();
        Link = new SocketSerialLink(client, "socketpair");
        _thread = new Thread(() => Run(() => _stop)) { IsBackground = true, Name = GetType().Name };
    }

    /// <summary>The client's end, as a link (the client owns and disposes it).</summary>
    public SocketSerialLink Link { get; }

    /// <summary>The peer's end.</summary>
    protected Socket Socket { get; }

    /// <summary>Sends bytes from the peer now, unasked.</summary>
    public void Send(string text) => Socket.Send(Encoding.Latin1.GetBytes(text));

    /// <summary>Sends bytes unasked if the socket takes them now (a client that stopped reading fills it); false if not.</summary>
    public bool TrySend(string text)
    {
        if (!Socket.Poll(0, System.Net.Sockets.SelectMode.SelectWrite))
        {
            return false;
        }

        Send(text);
        return true;
    }

    public void Dispose()
    {
        _stop = true;
        _thread.Join(TimeSpan.FromSeconds(5));
        Socket.Dispose();
    }

    protected void Start() => _thread.Start();

    protected abstract void Run(Func<bool> stop);
}

/// <summary>The BMC model behind the socket pair.</summary>
internal sealed class ModelPeer : SocketPeer
{
    public ModelPeer(BmcModel model)
    {
        Model = model;
        Start();
    }

    public BmcModel Model { get; }

    protected override void Run(Func<bool> stop)
    {
        try
        {
            BmcSocketServer.Serve(Model, Socket, stop, TimeSpan.FromMilliseconds(20));
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The test closed the pair.
        }
    }
}

/// <summary>Answers each request line through <c>answer</c> (raw bytes, Latin-1); records every line it saw, empty ones too.</summary>
internal sealed class ScriptedPeer : SocketPeer
{
    private readonly Func<string, string> _answer;
    private readonly List<string> _seen = [];

    public ScriptedPeer(Func<string, string> answer)
    {
        _answer = answer;
        Start();
    }

    public IReadOnlyList<string> Seen
    {
        get
        {
            lock (_seen)
            {
                return [.. _seen];
            }
        }
    }

    protected override void Run(Func<bool> stop)
    {
        var pending = new StringBuilder();
        var buffer = new byte[1024];
        try
        {
            while (!stop())
            {
                if (!Socket.Poll(20_000, SelectMode.SelectRead))
                {
                    continue;
                }

                var n = Socket.Receive(buffer);
                if (n == 0)
                {
                    return;
                }

                pending.Append(Encoding.Latin1.GetString(buffer, 0, n));
                int newline;
                while ((newline = pending.ToString().IndexOf('\n', StringComparison.Ordinal)) >= 0)
                {
                    var line = pending.ToString(0, newline);
                    pending.Remove(0, newline + 1);
                    lock (_seen)
                    {
                        _seen.Add(line);
                    }

                    if (line.Length > 0)
                    {
                        var reply = _answer(line);
                        if (reply.Length > 0)
                        {
                            Socket.Send(Encoding.Latin1.GetBytes(reply));
                        }
                    }
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The test closed the pair.
        }
    }
}
