using System.Text.Json;
using FpgaAccel.Cli;
using FpgaAccel.HwSim.Bmc;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Cli;

/// <summary>fpgaaccel bmc against the BMC model on a socket: output, JSON, and exit codes 0, 1 and 2 without a stack trace.</summary>
public class BmcCommandTests
{
    private string _dir = "";
    private string _socket = "";
    private BmcModel _model = null!;
    private BmcSocketServer _server = null!;

    [SetUp]
    public void StartModel()
    {
        _dir = Directory.CreateTempSubdirectory("fpgaaccel-bmc-cli-").FullName;
        _socket = Path.Combine(_dir, "bmc.sock");
        _model = new BmcModel(new BmcModelOptions { Serial = "FA1-CLI-0001", ResetOffBus = TimeSpan.FromMinutes(1) });
        _server = BmcSocketServer.Start(_model, _socket);
    }

    [TearDown]
    public void StopModel()
    {
        _server.Dispose();
        _model.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    [Test]
    public void EachRequestPrintsItsAnswer()
    {
        Assert.That(Run("bmc", "version", "--port", _socket), Is.EqualTo((0, "FA1-BMC 1.2.0\n", "")));
        Assert.That(Run("bmc", "serial", "--port", _socket), Is.EqualTo((0, "FA1-CLI-0001\n", "")));
        var (code, temp, _) = Run("bmc", "temp", "--port", _socket);
        Assert.That(code, Is.Zero);
        Assert.That(temp, Does.Match(@"^4\d\.\d{3} C\n$"));
        (code, var log, _) = Run("bmc", "log", "2", "--port", _socket);
        Assert.That(code, Is.Zero);
        Assert.That(log.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(2));
        (code, var reset, _) = Run("bmc", "reset", "--port", _socket);
        Assert.That((code, reset), Is.EqualTo((0, "The BMC is cold-resetting the FPGA: its PCIe device is off the bus for about 1 s.\n")));
        Assert.That(_model.Resets, Is.EqualTo(1));
    }

    [Test]
    public void JsonCarriesTheExchangeAndTheParsedAnswer()
    {
        var (code, output, error) = Run("bmc", "log", "3", "--port", _socket, "--json");
        Assert.That(code, Is.Zero, error);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.That(root.GetProperty("request").GetString(), Is.EqualTo("LOG 3"));
        Assert.That(root.GetProperty("reply").GetString(), Is.EqualTo("OK 3"));
        Assert.That(root.GetProperty("port").GetString(), Is.EqualTo($"socket {_socket}"));
        Assert.That(root.GetProperty("round_trip_ms").GetDouble(), Is.GreaterThan(0));
        Assert.That(root.GetProperty("lines").GetArrayLength(), Is.EqualTo(3));

        (code, output, _) = Run("bmc", "temp", "--port", _socket, "--json");
        using var temp = JsonDocument.Parse(output);
        Assert.That(temp.RootElement.GetProperty("celsius").GetDouble() * 1000, Is.EqualTo(temp.RootElement.GetProperty("millidegrees").GetInt32()).Within(0.5));
    }

    [Test]
    public void AnErrReplyExitsOneWithTheBmcsReason()
    {
        Run("bmc", "reset", "--port", _socket);
        var (code, output, error) = Run("bmc", "reset", "--port", _socket);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Is.Empty);
        Assert.That(error, Does.StartWith("fpgaaccel: The BMC refused RESET: ERR reset in progress"));
        Assert.That(error, Does.Not.Contain("   at "), "no stack trace");
    }

    [TestCase(new[] { "bmc", "log", "1001" }, "N is 1001: LOG takes 0 to 1000 lines")]
    [TestCase(new[] { "bmc", "version", "--usb-id", "04036010" }, "--usb-id '04036010' is not a USB vendor:product pair")]
    [TestCase(new[] { "bmc", "version", "--usb-interface", "E" }, "--usb-interface 'E' is not an FTDI interface")]
    [TestCase(new[] { "bmc", "version", "--timeout", "0" }, "--timeout 0 is out of range")]
    [TestCase(new[] { "bmc", "model" }, "Give exactly one of --socket PATH and --pty")]
    [TestCase(new[] { "bmc", "model", "--pty", "--firmware", "1.2" }, "--firmware '1.2' is not major.minor.patch")]
    public void BadUsageExitsTwoAndSaysWhy(string[] args, string message)
    {
        var (code, _, error) = Run(args);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(error, Does.Contain(message));
    }

    [Test]
    public void APortThatIsNotThereExitsOneWithTheFix()
    {
        var (code, _, error) = Run("bmc", "serial", "--port", Path.Combine(_dir, "none.sock"));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.Contain("no such file").And.Contain("fpgaaccel bmc model --socket"));
        Assert.That(error, Does.Not.Contain("   at "));
    }

    [Test]
    public void TheUsbPortWithoutTheBridgeExitsOneWithAMessage()
    {
        // This host has no 0403:6010 (and may have no USB at all, or no libusb): exit 1, a message, no stack trace.
        var (code, _, error) = Run("bmc", "version", "--timeout", "200");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.StartWith("fpgaaccel: ").And.Not.Contain("   at "));
    }

    [Test]
    public void DoctorListsTheManagementPortItFound()
    {
        using var fx = new SysfsFixture();
        fx.AddBoard().AddVfioNodes(12).AddHugePages(16)
          .AddUsbDevice("1-4.2", 0x0403, 0x6010, bus: 1, address: 7, release: 0x0700, "ftdi_sio", "ftdi_sio");
        var (_, output, _) = Run("doctor", "--json", "--sysfs", fx.Sys, "--dev", fx.Dev, "--pin-bytes", "1M");
        using var doc = JsonDocument.Parse(output);
        var port = doc.RootElement.GetProperty("management_ports")[0];
        Assert.That(port.GetProperty("usb_path").GetString(), Is.EqualTo("1-4.2"));
        Assert.That(port.GetProperty("usb_id").GetString(), Is.EqualTo("0403:6010"));
        Assert.That(port.GetProperty("interface").GetString(), Is.EqualTo("B"));
        Assert.That(port.GetProperty("kernel_driver").GetString(), Is.EqualTo("ftdi_sio"));
        Assert.That(port.GetProperty("tty").GetString(), Is.EqualTo("ttyUSB1"));
        var checks = doc.RootElement.GetProperty("checks").EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!, c => c.GetProperty("status").GetString());
        Assert.That(checks["bmc-port"], Is.EqualTo("pass"));
        Assert.That(checks["bmc-driver"], Is.EqualTo("pass"));
        // The fixture's bridge is not on a real bus: asking it VERSION through libusb fails, with a message.
        Assert.That(checks["bmc-firmware"], Is.AnyOf("pass", "fail"));
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter { NewLine = "\n" };
        using var error = new StringWriter { NewLine = "\n" };
        var code = FpgaAccelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
