using System.Diagnostics;
using System.Text;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Interop;

/// <summary>Raw terminals (a pseudo-terminal pair) and socket pairs: bytes pass unchanged, reads wait at most their timeout.</summary>
public class TerminalTests
{
    [Test]
    public void BytesCrossAPseudoTerminalUnchanged()
    {
        using var master = TerminalDevice.CreatePseudoTerminal();
        Assert.That(master.Path, Does.StartWith("/dev/pts/"));
        using var slave = TerminalDevice.Open(master.Path, 115_200);

        // Raw mode: no CR/LF translation, no echo, every byte value passes.
        var sent = new byte[256];
        for (var i = 0; i < sent.Length; i++)
        {
            sent[i] = (byte)i;
        }

        slave.Write(sent, TimeSpan.FromSeconds(5));
        Assert.That(ReadExactly(master, sent.Length), Is.EqualTo(sent));
        master.Write("OK\r\n"u8, TimeSpan.FromSeconds(5));
        Assert.That(Encoding.ASCII.GetString(ReadExactly(slave, 4)), Is.EqualTo("OK\r\n"));
        Assert.That(master.Read(new byte[16], TimeSpan.FromMilliseconds(50)), Is.Zero, "no echo came back to the writer");
    }

    [Test]
    public void AReadWithNothingToReadReturnsZeroAfterItsTimeout()
    {
        using var master = TerminalDevice.CreatePseudoTerminal();
        using var slave = TerminalDevice.Open(master.Path, 115_200);
        var clock = Stopwatch.StartNew();
        Assert.That(slave.Read(new byte[8], TimeSpan.FromMilliseconds(30)), Is.Zero);
        Assert.That(clock.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(25)), "the read returned before its timeout");
    }

    [Test]
    public void OpeningAMissingTerminalNamesThePath()
    {
        var error = Assert.Throws<SystemCallException>(() => TerminalDevice.Open("/dev/fpgaaccel-no-such-tty", 115_200));
        Assert.That(error!.Message, Does.StartWith("open(/dev/fpgaaccel-no-such-tty): ENOENT"));
        Assert.That(() => TerminalDevice.Open("/dev/null", 57_600), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void ASocketPairCarriesBytesBothWaysAndClosesItsDescriptors()
    {
        var before = FdCount.Now();
        var (a, b) = UnixSocketPair.Create();
        using (a)
        using (b)
        {
            a.Send("VERSION\n"u8);
            var buffer = new byte[16];
            Assert.That(Encoding.ASCII.GetString(buffer, 0, b.Receive(buffer)), Is.EqualTo("VERSION\n"));
            b.Send("OK\n"u8);
            Assert.That(Encoding.ASCII.GetString(buffer, 0, a.Receive(buffer)), Is.EqualTo("OK\n"));
        }

        Assert.That(FdCount.SettledAtMost(before), Is.LessThanOrEqualTo(before));
    }

    private static byte[] ReadExactly(TerminalDevice terminal, int count)
    {
        var buffer = new byte[count];
        var got = 0;
        var deadline = Stopwatch.StartNew();
        while (got < count && deadline.Elapsed < TimeSpan.FromSeconds(5))
        {
            got += terminal.Read(buffer.AsSpan(got), TimeSpan.FromMilliseconds(200));
        }

        Assert.That(got, Is.EqualTo(count), "bytes that crossed the terminal");
        return buffer;
    }
}
