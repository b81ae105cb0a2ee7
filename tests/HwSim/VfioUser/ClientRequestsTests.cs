using FpgaAccel.HwSim.VfioUser;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim.VfioUser;

/// <summary>The server's own DMA_READ/DMA_WRITE requests: the deadlock rule, bounded waits, and the session's end.</summary>
public class ClientRequestsTests
{
    [Test]
    public void ARequestFromTheReceivingThreadIsRefusedBeforeItIsSent()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (b)
        using (var transport = new VfioUserTransport(a, 4096, 1))
        {
            var requests = new ClientRequests(transport, () => true);
            var ex = Assert.Throws<InvalidOperationException>(() => requests.Read(0x1000, new byte[8], TimeSpan.FromSeconds(1)))!;
            Assert.That(ex.Message, Does.Contain("would deadlock"));
            Assert.That(requests.Sent, Is.Zero);
        }
    }

    [Test]
    public void ARequestWithoutAReplyTimesOut()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (b)
        using (var transport = new VfioUserTransport(a, 4096, 1))
        {
            var requests = new ClientRequests(transport, () => false);
            var ex = Assert.Throws<VfioUserClientRequestException>(() => requests.Read(0x1000, new byte[8], TimeSpan.FromMilliseconds(100)))!;
            Assert.That(ex.Message, Does.Contain("no reply within"));
        }
    }

    [Test]
    public void ClosingFailsAWaitingRequestAtOnce()
    {
        var (a, b) = UnixSocket.CreatePair();
        using (b)
        using (var transport = new VfioUserTransport(a, 4096, 1))
        {
            var requests = new ClientRequests(transport, () => false);
            var read = Task.Run(() => requests.Read(0x1000, new byte[8], TimeSpan.FromSeconds(30)));
            Assert.That(() => requests.Sent, Is.EqualTo(1).After(5000, 10));
            requests.Close();
            var ex = Assert.Throws<AggregateException>(() => read.Wait(TimeSpan.FromSeconds(10)))!;
            Assert.That(ex.InnerException, Is.InstanceOf<VfioUserClientRequestException>());
            Assert.That(() => requests.Read(0, new byte[1], TimeSpan.FromSeconds(1)), Throws.InstanceOf<VfioUserClientRequestException>(), "after the end");
        }
    }
}
