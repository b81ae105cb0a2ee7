using FpgaAccel.Management;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Management;

/// <summary>Opening the port: a path is a terminal or a socket; anything else gets a message that says what to give.</summary>
public class ManagementPortTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("fpgaaccel-port-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void AMissingPathSaysWhatAPortIs()
    {
        var error = Assert.Throws<SerialLinkException>(() => ManagementPort.Open(new ManagementPortOptions { Port = Path.Combine(_dir, "none") }));
        Assert.That(error!.Message, Does.Contain("no such file").And.Contain("'usb'").And.Contain("fpgaaccel bmc model --socket"));
    }

    [Test]
    public void ARegularFileIsNeitherTerminalNorSocket()
    {
        var file = Path.Combine(_dir, "file");
        File.WriteAllText(file, "not a port");
        var error = Assert.Throws<SerialLinkException>(() => ManagementPort.Open(new ManagementPortOptions { Port = file }));
        Assert.That(error!.Message, Does.Contain("neither a terminal nor a Unix socket"));
    }

    [Test]
    public void ASocketNothingListensOnSaysHowToStartTheModel()
    {
        var path = Path.Combine(_dir, "stale.sock");
        StaleSocket.Create(path);
        Assert.That(File.Exists(path), Is.True);

        var error = Assert.Throws<SerialLinkException>(() => ManagementPort.Open(new ManagementPortOptions { Port = path }));
        Assert.That(error!.Message, Does.Contain("nothing listens there").And.Contain($"fpgaaccel bmc model --socket {path}"));
    }

    [Test]
    public void UsbWithoutTheBridgeFailsWithAMessageNotACrash()
    {
        // This host may have no USB at all (libusb cannot start), USB without the bridge, or no libusb: each is an
        // IOException whose message says what is missing.
        var error = Assert.Catch<IOException>(() => ManagementPort.Open(new ManagementPortOptions()).Dispose());
        Assert.That(error!.Message, Does.Contain("libusb").Or.Contain("0403:6010"));
    }
}
