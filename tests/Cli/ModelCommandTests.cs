using System.Text.Json;
using FpgaAccel.Cli;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop;
using FpgaAccel.Management;
using FpgaAccel.Tests.HwSim.VfioUser;
using NUnit.Framework;

namespace FpgaAccel.Tests.Cli;

public class ModelCommandTests
{
    [Test]
    public void ServeOnceServesOneClientThenReportsAsJson()
    {
        var dir = Directory.CreateTempSubdirectory("fpgaaccel-serve-");
        try
        {
            var path = Path.Combine(dir.FullName, "fa1.sock");
            var trace = Path.Combine(dir.FullName, "trace.txt");
            var output = new StringWriter();
            var error = new StringWriter();
            var run = Task.Run(() => FpgaAccelCli.Run(["model", "serve", "--socket", path, "--once", "--json", "--trace", trace, "--device-id", "fa02"],
                TextWriter.Synchronized(output), TextWriter.Synchronized(error)));
            Assert.That(() => File.Exists(path), Is.True.After(20000, 20), "the server listens");
            using (var client = new VfioUserTestClient(UnixSocket.Connect(path)))
            {
                client.Negotiate();
                Assert.That(client.ReadConfig16(2), Is.EqualTo(0xFA02), "--device-id reaches config space");
                Assert.That(client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue));
            }

            Assert.That(run.Wait(TimeSpan.FromSeconds(30)), Is.True, "--once: the command ends when the client leaves");
            Assert.That(run.Result, Is.Zero, error.ToString());
            var events = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            Assert.That(events[0].GetProperty("event").GetString(), Is.EqualTo("listening"));
            var report = events[^1];
            Assert.That(report.GetProperty("event").GetString(), Is.EqualTo("report"));
            Assert.That(report.GetProperty("sessions").GetInt64(), Is.EqualTo(1));
            Assert.That(report.GetProperty("commands").GetProperty("RegionRead").GetInt64(), Is.EqualTo(2));
            Assert.That(report.GetProperty("stale_accesses").GetInt64(), Is.Zero);
            Assert.That(report.GetProperty("lost_faults").GetInt64(), Is.Zero);
            Assert.That(File.ReadAllLines(trace), Has.Length.EqualTo(3), "VERSION and two reads");
            Assert.That(File.Exists(path), Is.False, "the socket is gone");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public void TheBmcSocketsResetPowerCyclesTheServedModel()
    {
        var dir = Directory.CreateTempSubdirectory("fpgaaccel-serve-");
        try
        {
            var path = Path.Combine(dir.FullName, "fa1.sock");
            var bmcPath = Path.Combine(dir.FullName, "bmc.sock");
            var output = new StringWriter();
            var error = new StringWriter();
            var run = Task.Run(() => FpgaAccelCli.Run(
                ["model", "serve", "--socket", path, "--once", "--json", "--bmc-socket", bmcPath, "--bmc-reset-delay", "300", "--bmc-serial", "FA1-TEST-7"],
                TextWriter.Synchronized(output), TextWriter.Synchronized(error)));
            Assert.That(() => File.Exists(path) && File.Exists(bmcPath), Is.True.After(20000, 20), "both servers listen");
            using (var client = new VfioUserTestClient(UnixSocket.Connect(path)))
            {
                client.Negotiate();
                client.WriteConfig16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemory | PciConfigRegisters.CommandBusMaster);
                Assert.That(client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue));
                using (var bmc = new BmcClient(SocketSerialLink.Connect(bmcPath)))
                {
                    Assert.That(bmc.GetSerial(), Is.EqualTo("FA1-TEST-7"));
                    bmc.Reset();
                }

                // Spec 8: RESET drops the served FA-1 off the bus; it comes back after --bmc-reset-delay, cold-reset.
                Assert.That(client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.DeviceLost), "off the bus right after RESET's OK");
                Assert.That(() => client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue).After(10_000, 20), "back after the delay");
                Assert.That(client.ReadConfig16(PciConfigRegisters.Command), Is.Zero, "bus mastering is off after the power cycle (V11)");
            }

            Assert.That(run.Wait(TimeSpan.FromSeconds(30)), Is.True, "--once: the command ends when the client leaves");
            Assert.That(run.Result, Is.Zero, error.ToString());
            var events = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            Assert.That(events[0].GetProperty("bmc_socket").GetString(), Is.EqualTo(bmcPath));
            var report = events[^1];
            Assert.That(report.GetProperty("bmc_resets").GetInt64(), Is.EqualTo(1));
            Assert.That(report.GetProperty("power_cycles").GetInt64(), Is.EqualTo(1));
            Assert.That(File.Exists(bmcPath), Is.False, "the BMC's socket is gone too");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public void ABadBmcResetDelayIsAUsageError()
    {
        var error = new StringWriter();
        var code = FpgaAccelCli.Run(["model", "serve", "--socket", "/tmp/x.sock", "--bmc-socket", "/tmp/y.sock", "--bmc-reset-delay", "-5"], new StringWriter(), error);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(error.ToString(), Does.Contain("--bmc-reset-delay -5"));
    }

    [Test]
    public void ABadIdIsAUsageError()
    {
        var error = new StringWriter();
        var code = FpgaAccelCli.Run(["model", "serve", "--socket", "/tmp/x.sock", "--vendor-id", "xyz"], new StringWriter(), error);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(error.ToString(), Does.Contain("--vendor-id 'xyz'"));
    }

    [Test]
    public void AnOccupiedPathFailsWithTheFix()
    {
        var path = Path.GetTempFileName();
        try
        {
            var error = new StringWriter();
            var code = FpgaAccelCli.Run(["model", "serve", "--socket", path], new StringWriter(), error);
            Assert.That(code, Is.EqualTo(1));
            Assert.That(error.ToString(), Does.Contain("remove it"));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
