using System.Text;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Interop;

public class UnixSocketTests
{
    [Test]
    public void APairCarriesBytesBothWays()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        {
            a.Send("hello"u8);
            var buffer = new byte[16];
            var got = b.Receive(buffer);
            Assert.That(Encoding.ASCII.GetString(buffer, 0, got.Bytes), Is.EqualTo("hello"));
            Assert.That(got.DescriptorsTruncated, Is.False);
            b.Send("back"u8);
            Assert.That(a.Receive(buffer).Bytes, Is.EqualTo(4));
        }
    }

    [Test]
    public void ADescriptorSentIsTheSameFileOnTheOtherSide()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        using (var original = EventFd.Create())
        {
            a.Send([1, 2, 3], [original.Handle]);
            var received = new List<SafeFileDescriptor>();
            var got = b.Receive(new byte[8], received);
            Assert.That(got.Bytes, Is.EqualTo(3));
            Assert.That(received, Has.Count.EqualTo(1));
            Assert.That(received[0].DangerousGetHandle(), Is.Not.EqualTo(original.Handle.DangerousGetHandle()), "the receiver gets its own descriptor number");
            using var copy = EventFd.Adopt(received[0]);
            copy.Signal(5);
            Assert.That(original.TryRead(out var value), Is.True, "a signal through the received copy reaches the original eventfd");
            Assert.That(value, Is.EqualTo(5UL));
        }
    }

    [Test]
    public void DescriptorsBeyondTheRoomGivenAreReportedAndNoneLeak()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        {
            using var e1 = EventFd.Create();
            using var e2 = EventFd.Create();
            using var e3 = EventFd.Create();
            var baseline = FdCount.Now();
            a.Send([9], [e1.Handle, e2.Handle, e3.Handle]);
            var received = new List<SafeFileDescriptor>();
            var got = b.Receive(new byte[8], received, maxDescriptors: 1);
            Assert.That(got.DescriptorsTruncated, Is.True, "MSG_CTRUNC: two of the three did not fit");
            Assert.That(received, Has.Count.LessThanOrEqualTo(1));
            foreach (var fd in received)
            {
                fd.Dispose();
            }

            Assert.That(FdCount.SettledAtMost(baseline), Is.LessThanOrEqualTo(baseline), "the kernel closed the descriptors that did not fit");
        }
    }

    [Test]
    public void DescriptorsWithNoListToTakeThemAreClosed()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        using (var e = EventFd.Create())
        {
            var baseline = FdCount.Now();
            a.Send([1], [e.Handle]);
            Assert.That(b.Receive(new byte[4]).Bytes, Is.EqualTo(1));
            Assert.That(FdCount.SettledAtMost(baseline), Is.LessThanOrEqualTo(baseline));
        }
    }

    [Test]
    public void ReceiveReturnsZeroWhenThePeerCloses()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (b)
        {
            a.Dispose();
            Assert.That(b.Receive(new byte[4]).Bytes, Is.Zero);
        }
    }

    [Test]
    public void SendToAClosedPeerIsEpipeNotASignal()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (a)
        {
            b.Dispose();
            var ex = Assert.Throws<SystemCallException>(() => a.Send(new byte[64]))!;
            Assert.That(ex.Errno, Is.AnyOf(Errno.EPIPE, Errno.ECONNRESET));
            Assert.That(ex.Call, Is.EqualTo("sendmsg"));
        }
    }

    [Test]
    public void ShutdownEndsAReceiveBlockedOnAnotherThread()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        {
            var receive = Task.Run(() => b.Receive(new byte[4]).Bytes);
            Thread.Sleep(50);
            Assert.That(receive.IsCompleted, Is.False, "nothing was sent, so the receive waits");
            b.Shutdown();
            Assert.That(receive.Wait(TimeSpan.FromSeconds(10)), Is.True);
            Assert.That(receive.Result, Is.Zero);
        }
    }

    [Test]
    public void ListenAcceptAndConnectAtAPath()
    {
        var dir = Directory.CreateTempSubdirectory("fpgaaccel-sock-");
        try
        {
            var path = Path.Combine(dir.FullName, "s");
            using var listener = UnixSocket.Listen(path);
            Assert.That(File.Exists(path), Is.True);
            var accepted = Task.Run(listener.Accept);
            using var client = UnixSocket.Connect(path);
            Assert.That(accepted.Wait(TimeSpan.FromSeconds(10)), Is.True);
            using var server = accepted.Result!;
            client.Send([42]);
            var buffer = new byte[1];
            Assert.That(server.Receive(buffer).Bytes, Is.EqualTo(1));
            Assert.That(buffer[0], Is.EqualTo(42));

            var ex = Assert.Throws<SystemCallException>(() => UnixSocket.Listen(path))!;
            Assert.That(ex.Errno, Is.EqualTo(Errno.EADDRINUSE), "a second listener at the same path");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public void ShutdownOfAListenerEndsItsAccept()
    {
        var dir = Directory.CreateTempSubdirectory("fpgaaccel-sock-");
        try
        {
            using var listener = UnixSocket.Listen(Path.Combine(dir.FullName, "s"));
            var accepted = Task.Run(listener.Accept);
            Thread.Sleep(50);
            listener.Shutdown();
            Assert.That(accepted.Wait(TimeSpan.FromSeconds(10)), Is.True);
            Assert.That(accepted.Result, Is.Null);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public void ConnectingToNothingNamesThePathAndErrno()
    {
        var ex = Assert.Throws<SystemCallException>(() => UnixSocket.Connect("/tmp/fpgaaccel-no-such-socket-" + Guid.NewGuid().ToString("N")))!;
        Assert.That(ex.Errno, Is.EqualTo(Errno.ENOENT));
        Assert.That(ex.Call, Does.StartWith("connect(/tmp/fpgaaccel-no-such-socket-"));
    }

    [Test]
    public void APathTooLongForSunPathIsRefusedWithTheRule()
    {
        var path = "/tmp/" + new string('x', 120);
        var ex = Assert.Throws<ArgumentException>(() => UnixSocket.Listen(path))!;
        Assert.That(ex.Message, Does.Contain("125 bytes").And.Contain($"at most {UnixSocket.MaxPathBytes} bytes"));
    }

    [Test]
    public void AdoptRefusesADescriptorThatIsNotAnEventFd()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        {
            var ex = Assert.Throws<ArgumentException>(() => EventFd.Adopt(a.Handle))!;
            Assert.That(ex.Message, Does.Contain("socket:").And.Contain("not an eventfd"));
        }
    }

    [Test]
    public void AdoptKeepsTheCreatorsBlockingMode()
    {
        using var nonBlocking = EventFd.Create(nonBlocking: true);
        using var blocking = EventFd.Create(nonBlocking: false);
        var (a, b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        {
            a.Send([0, 0], [nonBlocking.Handle, blocking.Handle]);
            var received = new List<SafeFileDescriptor>();
            b.Receive(new byte[2], received);
            using var first = EventFd.Adopt(received[0]);
            using var second = EventFd.Adopt(received[1]);
            Assert.That(first.NonBlocking, Is.True);
            Assert.That(second.NonBlocking, Is.False);
        }
    }
}
