using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.HwSim.Bmc;
using FpgaAccel.Interop;
using FpgaAccel.Management;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Management;

/// <summary>The BMC client against the BMC model over a socket pair: every request of spec 8, ERR, and dispose.</summary>
public class BmcClientTests
{
    private static readonly BmcClientOptions s_fast = new() { RequestTimeout = TimeSpan.FromSeconds(5), DrainQuiet = TimeSpan.FromMilliseconds(20) };

    [Test]
    public void EveryRequestOfSpec8GetsItsAnswer()
    {
        using var model = new Fa1Model();
        using var bmc = new BmcModel(new BmcModelOptions { Serial = "FA1-TEST-7", Fpga = FpgaPower.Of(model), ResetOffBus = TimeSpan.FromMinutes(1) });
        using var peer = new ModelPeer(bmc);
        using var client = new BmcClient(peer.Link, s_fast);

        Assert.That(client.GetVersion(), Is.EqualTo(new BmcFirmwareVersion(1, 2, 0)));
        Assert.That(client.LastExchange!.Reply, Is.EqualTo("OK FA1-BMC 1.2.0"));
        Assert.That(client.LastExchange.RoundTrip, Is.GreaterThan(TimeSpan.Zero));
        Assert.That(client.GetSerial(), Is.EqualTo("FA1-TEST-7"));
        Assert.That(client.GetTemperature().Celsius, Is.InRange(42.0, 48.0));
        var log = client.GetLog(2);
        Assert.That(log, Has.Count.EqualTo(2));
        Assert.That(log[1], Does.EndWith("pcie: link up, FA-1 on the bus"));

        client.Reset();
        Assert.That(bmc.Resets, Is.EqualTo(1));
        Assert.That(model.Read64(Fa1Registers.Id), Is.EqualTo(ulong.MaxValue), "the RESET took the FA-1 off the bus");
        Assert.That(client.GetLog(BoardManagement.MaxLogLines), Has.Count.EqualTo(8), "every line the log holds (6 from boot, 2 from the reset), when fewer than asked");
        Assert.That(client.DiscardedBytes, Is.Zero);
    }

    [Test]
    public void AnErrReplyCarriesTheReasonAndTheClientGoesOn()
    {
        using var bmc = new BmcModel(new BmcModelOptions { ResetOffBus = TimeSpan.FromMinutes(1) });
        using var peer = new ModelPeer(bmc);
        using var client = new BmcClient(peer.Link, s_fast);
        client.Reset();
        var error = Assert.Throws<BmcErrorReplyException>(() => client.Reset());
        Assert.That(error!.Request, Is.EqualTo("RESET"));
        Assert.That(error.Reason, Does.StartWith("reset in progress"));
        Assert.That(error.Message, Does.Contain("ERR reset in progress"));
        Assert.That(client.GetSerial(), Is.EqualTo("FA1-SIM-000001"));
    }

    [Test]
    public void LogCountsOutsideTheRangeAreRefusedBeforeSending()
    {
        using var bmc = new BmcModel();
        using var peer = new ModelPeer(bmc);
        using var client = new BmcClient(peer.Link, s_fast);
        Assert.That(() => client.GetLog(-1), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("0 to 1000"));
        Assert.That(() => client.GetLog(1001), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(bmc.Requests, Is.Zero);
    }

    [Test]
    public void RequestsFromSeveralThreadsEachGetTheirOwnReply()
    {
        using var bmc = new BmcModel();
        using var peer = new ModelPeer(bmc);
        using var client = new BmcClient(peer.Link, s_fast);
        var failures = new List<string>();
        var threads = Enumerable.Range(0, 3).Select(t => new Thread(() =>
        {
            for (var i = 0; i < 40; i++)
            {
                // Each reply must answer its own request: one outstanding at a time.
                var ok = ((t + i) % 3) switch
                {
                    0 => client.GetVersion().Major == 1,
                    1 => client.GetSerial() == "FA1-SIM-000001",
                    _ => client.GetLog(1).Count == 1,
                };
                if (!ok)
                {
                    lock (failures)
                    {
                        failures.Add($"thread {t} request {i}");
                    }
                }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => Assert.That(t.Join(TimeSpan.FromSeconds(60)), Is.True));
        Assert.That(failures, Is.Empty);
        Assert.That(bmc.Requests, Is.EqualTo(120));
    }

    [Test]
    public void DisposeClosesTheLinkAndLeavesNoDescriptor()
    {
        var before = FdCount.Now();
        using (var bmc = new BmcModel())
        {
            var peer = new ModelPeer(bmc);
            var client = new BmcClient(peer.Link, s_fast);
            client.GetVersion();
            client.Dispose();
            client.Dispose();
            Assert.That(() => client.GetVersion(), Throws.TypeOf<ObjectDisposedException>());
            peer.Dispose();
        }

        Assert.That(FdCount.SettledAtMost(before), Is.LessThanOrEqualTo(before));
    }

    [Test]
    public void TheClientRunsOverAPseudoTerminalToo()
    {
        using var bmc = new BmcModel();
        using var master = TerminalDevice.CreatePseudoTerminal();
        var stop = false;
        var server = new Thread(() => BmcSocketServer.Serve(bmc, master, () => Volatile.Read(ref stop), TimeSpan.FromMilliseconds(20))) { IsBackground = true };
        server.Start();
        try
        {
            using var client = BmcClient.Open(new ManagementPortOptions { Port = master.Path }, s_fast);
            Assert.That(client.Port, Is.EqualTo($"terminal {master.Path}"));
            Assert.That(client.GetVersion().ToString(), Is.EqualTo("1.2.0"));
            Assert.That(client.GetLog(3), Has.Count.EqualTo(3));
        }
        finally
        {
            Volatile.Write(ref stop, true);
            server.Join(TimeSpan.FromSeconds(5));
        }
    }

    [Test]
    public void TheClientFindsTheModelsSocketByPath()
    {
        var dir = Directory.CreateTempSubdirectory("fpgaaccel-bmc-").FullName;
        try
        {
            var path = Path.Combine(dir, "bmc.sock");
            using var bmc = new BmcModel();
            using var server = BmcSocketServer.Start(bmc, path);
            using var client = BmcClient.Open(new ManagementPortOptions { Port = path }, s_fast);
            Assert.That(client.Port, Is.EqualTo($"socket {path}"));
            Assert.That(client.GetSerial(), Is.EqualTo("FA1-SIM-000001"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
