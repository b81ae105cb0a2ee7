using System.Net.Sockets;
using System.Text;
using FpgaAccel.HwSim.Bmc;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim.Bmc;

/// <summary>The BMC model on a Unix socket, as QEMU's chardev or a host client reaches it: one peer at a time, in turn.</summary>
public class BmcSocketServerTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("fpgaaccel-bmc-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void PeersAreServedOneAfterAnother()
    {
        var path = Path.Combine(_dir, "bmc.sock");
        using var bmc = new BmcModel();
        using (var server = BmcSocketServer.Start(bmc, path))
        {
            Assert.That(Ask(path, "SERIAL\n"), Is.EqualTo("OK FA1-SIM-000001\n"));
            Assert.That(Ask(path, "VERSION\r\n"), Is.EqualTo("OK FA1-BMC 1.2.0\n"), "a new connection after the first hung up");
            Assert.That(server.Connections, Is.EqualTo(2));
        }

        Assert.That(File.Exists(path), Is.False, "the socket file goes with the server");
    }

    [Test]
    public void AStaleSocketIsTakenOverAndALiveOneIsNot()
    {
        var path = Path.Combine(_dir, "bmc.sock");
        StaleSocket.Create(path);
        Assert.That(File.Exists(path), Is.True, "a socket file left by a killed server");

        using var bmc = new BmcModel();
        using var server = BmcSocketServer.Start(bmc, path);
        Assert.That(Ask(path, "SERIAL\n"), Does.StartWith("OK "));
        var error = Assert.Throws<IOException>(() => BmcSocketServer.Start(bmc, path).Dispose());
        Assert.That(error!.Message, Does.Contain("already served by another process"));
    }

    [Test]
    public void StoppingJoinsTheThreadAndClosesEveryDescriptor()
    {
        var before = FdCount.Now();
        using var bmc = new BmcModel();
        var path = Path.Combine(_dir, "bmc.sock");
        var server = BmcSocketServer.Start(bmc, path);
        using var peer = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        peer.Connect(new UnixDomainSocketEndPoint(path));
        peer.Send("TEMP\n"u8);
        var buffer = new byte[64];
        peer.ReceiveTimeout = 5000;
        Assert.That(peer.Receive(buffer), Is.GreaterThan(0));
        server.Dispose();
        Assert.That(peer.Receive(buffer), Is.Zero, "the server closed its end of the connection");
        peer.Dispose();
        Assert.That(FdCount.SettledAtMost(before), Is.LessThanOrEqualTo(before));
    }

    private static string Ask(string path, string request)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        socket.ReceiveTimeout = 5000;
        socket.Send(Encoding.ASCII.GetBytes(request));
        var reply = new StringBuilder();
        var buffer = new byte[256];
        while (!reply.ToString().EndsWith('\n'))
        {
            var n = socket.Receive(buffer);
            Assert.That(n, Is.GreaterThan(0), "the server hung up before replying");
            reply.Append(Encoding.ASCII.GetString(buffer, 0, n));
        }

        return reply.ToString();
    }
}
