using System.Text.Json;
using FpgaAccel.Cli;
using NUnit.Framework;

namespace FpgaAccel.Tests.Cli;

public class InfoCommandTests
{
    [Test]
    public void InfoJsonOnModelHasTheDocumentedFields()
    {
        var (code, output, error) = Run("info", "--backend", "model", "--clock", "virtual", "--json");
        Assert.That(code, Is.Zero, error);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("backend").GetString(), Is.EqualTo("model"));
            Assert.That(root.GetProperty("id").GetString(), Is.EqualTo("0x00000000FA01ACCE"));
            Assert.That(root.GetProperty("version").GetString(), Is.EqualTo("1.0.0"));
            Assert.That(root.GetProperty("model").GetBoolean(), Is.True);
            Assert.That(root.GetProperty("contexts").GetInt32(), Is.EqualTo(16));
            Assert.That(root.GetProperty("queues").GetInt32(), Is.EqualTo(8));
            Assert.That(root.GetProperty("clock_hz").GetInt64(), Is.EqualTo(250_000_000));
        });
    }

    [Test]
    public void InfoTextNamesBackendAndVersion()
    {
        var (code, output, _) = Run("info", "--backend", "model");
        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("model: FA-1 software model").And.Contain("1.0.0").And.Contain("250 MHz"));
    }

    [Test]
    public void UnknownBackendIsUsageError()
    {
        var (code, _, error) = Run("info", "--backend", "fpga");
        Assert.That(code, Is.Not.Zero);
        Assert.That(error, Does.Contain("fpga"));
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = FpgaAccelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
