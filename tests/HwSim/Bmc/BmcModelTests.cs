using System.Diagnostics;
using System.Text;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.HwSim.Bmc;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim.Bmc;

/// <summary>The BMC model answers spec 8's requests, keeps its log, and its RESET takes the FA-1 model off the bus.</summary>
public class BmcModelTests
{
    [Test]
    public void VersionAndSerialAnswerAsSpec8Says()
    {
        using var bmc = new BmcModel(new BmcModelOptions { Serial = "FA1-LAB-0042", FirmwareMajor = 3, FirmwareMinor = 1, FirmwarePatch = 4 });
        Assert.That(bmc.Answer("VERSION"), Is.EqualTo(new[] { "OK FA1-BMC 3.1.4" }));
        Assert.That(bmc.Answer("SERIAL"), Is.EqualTo(new[] { "OK FA1-LAB-0042" }));
    }

    [Test]
    public void TheTemperatureMovesOverTimeAndStaysPlausible()
    {
        var time = new ManualTimeProvider();
        using var bmc = new BmcModel(new BmcModelOptions { Time = time });
        var readings = new List<int>();
        for (var i = 0; i < 8; i++)
        {
            var reply = bmc.Answer("TEMP").Single();
            Assert.That(reply, Does.Match("^OK -?[0-9]+$"));
            readings.Add(int.Parse(reply[3..], System.Globalization.CultureInfo.InvariantCulture));
            time.Advance(TimeSpan.FromSeconds(5));
        }

        Assert.That(readings, Has.All.InRange(42_000, 48_000), "45 C, drifting 2.5 C and jittering 0.2 C");
        Assert.That(readings.Max() - readings.Min(), Is.GreaterThan(1000), "over 40 s the drift moves it by more than a degree");
    }

    [Test]
    public void LogGivesTheLastLinesOldestFirst()
    {
        using var bmc = new BmcModel();
        bmc.Answer("RESET");
        var reply = bmc.Answer("LOG 2");
        Assert.That(reply[0], Is.EqualTo("OK 2"));
        Assert.That(reply[1], Does.EndWith("host: RESET"));
        Assert.That(reply[2], Does.EndWith("fpga: cold reset, PCIe device off the bus"));
        Assert.That(bmc.Answer("LOG 0"), Is.EqualTo(new[] { "OK 0" }));

        var all = bmc.Answer("LOG 1000");
        Assert.That(all[0], Is.EqualTo($"OK {all.Count - 1}"), "the count is the lines held when fewer than asked");
        Assert.That(all[1], Does.Contain("boot: FA1-BMC"));
        Assert.That(all.Skip(1), Has.All.Length.LessThanOrEqualTo(BoardManagement.MaxLineLength));
    }

    [TestCase("LOG 1001")]
    [TestCase("LOG -1")]
    [TestCase("LOG x")]
    [TestCase("LOG")]
    [TestCase("LOG 5 6")]
    public void LogOutsideItsRangeIsRefused(string request)
    {
        using var bmc = new BmcModel();
        Assert.That(bmc.Answer(request).Single(), Does.StartWith("ERR LOG needs a line count, 0 to 1000"));
    }

    [TestCase("FOO", "ERR unknown request 'FOO'")]
    [TestCase("version", "ERR unknown request 'version'")]
    [TestCase("VERSION now", "ERR VERSION takes no argument")]
    [TestCase("TEMP 1", "ERR TEMP takes no argument")]
    public void AnythingElseGetsErrWithAReason(string request, string reply)
    {
        using var bmc = new BmcModel();
        Assert.That(bmc.Answer(request), Is.EqualTo(new[] { reply }));
    }

    [Test]
    public void ResetTakesTheFa1OffTheBusUntilTheDelayEnds()
    {
        var time = new ManualTimeProvider();
        using var model = new Fa1Model();
        using var bmc = new BmcModel(new BmcModelOptions { Fpga = FpgaPower.Of(model), Time = time });
        model.Write64(Fa1Registers.Scratch, 5);

        Assert.That(bmc.Answer("RESET"), Is.EqualTo(new[] { "OK" }));
        Assert.That(bmc.FpgaOnBus, Is.False);
        Assert.That(model.Read64(Fa1Registers.Id), Is.EqualTo(ulong.MaxValue), "off the bus, it reads all ones (spec 8)");
        Assert.That(bmc.Answer("RESET").Single(), Does.StartWith("ERR reset in progress"), "decision P4");

        time.Advance(BoardManagement.ResetOffBus - TimeSpan.FromMilliseconds(1));
        Assert.That(model.Read64(Fa1Registers.Id), Is.EqualTo(ulong.MaxValue), "still off just before the delay ends");
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.That(bmc.FpgaOnBus, Is.True);
        Assert.That(model.Read64(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue));
        Assert.That(model.Read64(Fa1Registers.Scratch), Is.Zero, "it comes back cold-reset");
        Assert.That(bmc.Answer("LOG 1")[1], Does.EndWith("FA-1 back on the bus"));
        Assert.That(bmc.Answer("RESET"), Is.EqualTo(new[] { "OK" }), "once back, it may be reset again");
        Assert.That(bmc.Resets, Is.EqualTo(2));
    }

    [Test]
    public void TheDefaultDelayIsAboutASecondAndRunsOnTheRealClock()
    {
        Assert.That(new BmcModelOptions().ResetOffBus, Is.EqualTo(TimeSpan.FromSeconds(1)), "spec 8: about a second");
        using var model = new Fa1Model();
        using var bmc = new BmcModel(new BmcModelOptions { Fpga = FpgaPower.Of(model), ResetOffBus = TimeSpan.FromMilliseconds(30) });
        bmc.Answer("RESET");
        var clock = Stopwatch.StartNew();
        while (!bmc.FpgaOnBus && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(5);
        }

        Assert.That(bmc.FpgaOnBus, Is.True, "the FPGA came back within 10 s of a 30 ms reset");
        Assert.That(model.Read64(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue));
    }

    [Test]
    public void DisposeBringsAnFpgaThatIsOffTheBusBack()
    {
        var time = new ManualTimeProvider();
        using var model = new Fa1Model();
        var bmc = new BmcModel(new BmcModelOptions { Fpga = FpgaPower.Of(model), Time = time });
        bmc.Answer("RESET");
        bmc.Dispose();
        Assert.That(model.Read64(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue));
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.That(model.Read64(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue), "the cancelled timer does nothing later");
        Assert.That(() => bmc.Answer("VERSION"), Throws.TypeOf<ObjectDisposedException>());
    }

    [Test]
    public void BadSettingsAreRefusedByName()
    {
        Assert.That(() => new BmcModel(new BmcModelOptions { Serial = "bad\nserial" }), Throws.ArgumentException.With.Message.Contains("Serial"));
        Assert.That(() => new BmcModel(new BmcModelOptions { ResetOffBus = TimeSpan.FromHours(1) }), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("ResetOffBus"));
    }
}

/// <summary>The BMC's UART framing: lines end with \n, \r or \r\n; empty lines are ignored; bad lines get ERR once they end.</summary>
public class BmcSessionTests
{
    [Test]
    public void ALineSplitAcrossReceivesIsAnsweredOnceItEnds()
    {
        using var bmc = new BmcModel();
        var session = new BmcSession(bmc);
        Assert.That(session.Receive("VER"u8), Is.Empty);
        Assert.That(Text(session.Receive("SION\r"u8)), Is.EqualTo("OK FA1-BMC 1.2.0\n"));
        Assert.That(session.Receive("\n"u8), Is.Empty, "the \\n of \\r\\n ends an empty line, which gets no reply (P2)");
        Assert.That(Text(session.Receive("SERIAL\nVERSION\n"u8)), Is.EqualTo("OK FA1-SIM-000001\nOK FA1-BMC 1.2.0\n"));
        Assert.That(session.Receive("\n\n\r\r"u8), Is.Empty);
    }

    [Test]
    public void AnOverlongLineGetsOneErrAndTheNextLineIsServed()
    {
        using var bmc = new BmcModel();
        var session = new BmcSession(bmc);
        var overlong = Encoding.ASCII.GetBytes(new string('A', BoardManagement.MaxLineLength + 50));
        Assert.That(session.Receive(overlong), Is.Empty, "nothing until the line ends");
        Assert.That(Text(session.Receive("\nSERIAL\n"u8)), Is.EqualTo("ERR line too long: at most 255 characters\nOK FA1-SIM-000001\n"));
        var exactly = Encoding.ASCII.GetBytes(new string('B', BoardManagement.MaxLineLength) + "\n");
        Assert.That(Text(session.Receive(exactly)), Does.StartWith("ERR unknown request"), "255 characters is still a line (P1)");
    }

    [Test]
    public void BytesOutsidePrintableAsciiGetErr()
    {
        using var bmc = new BmcModel();
        var session = new BmcSession(bmc);
        Assert.That(Text(session.Receive([0xff, (byte)'T', (byte)'E', (byte)'M', (byte)'P', (byte)'\n'])), Is.EqualTo("ERR not printable ASCII\n"));
        Assert.That(Text(session.Receive("TEMP\n"u8)), Does.Match("^OK [0-9]+\n$"));
    }

    private static string Text(byte[] bytes) => Encoding.ASCII.GetString(bytes);
}
