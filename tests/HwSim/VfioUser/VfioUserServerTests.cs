using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.HwSim.VfioUser;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim.VfioUser;

/// <summary>
/// The server's lifetime: a client that disconnects ends its session with nothing left behind (descriptors,
/// mappings, vectors, threads), the device state stays for the next client, and a listening server serves at a path.
/// </summary>
public class VfioUserServerTests
{
    [Test]
    public void AClientThatDisconnectsLeavesNothingBehind()
    {
        using var model = new Fa1Model();
        var baseline = FdCount.Now();
        var threads = System.Diagnostics.Process.GetCurrentProcess().Threads.Count;
        using (var server = new VfioUserServer(model))
        {
            var (serverEnd, clientEnd) = UnixSocket.CreatePair();
            server.Serve(serverEnd);
            var client = new VfioUserTestClient(clientEnd);
            client.Negotiate();
            using var fixture = new SharedFiles();
            var (fd, _) = fixture.Create(1 << 20);
            client.WriteConfig16(PciConfigRegisters.Command, PciConfigRegisters.CommandBusMaster);
            Assert.That(client.DmaMap(0x1_0000_0000, 1 << 20, fd: fd).Failed, Is.False);
            using var v0 = EventFd.Create();
            using var v1 = EventFd.Create();
            using var v2 = EventFd.Create();
            client.SetIrqs((uint)(VfioIrqSetFlags.DataEventFd | VfioIrqSetFlags.ActionTrigger), VfioPciIrq.Msix, 0, 3, fds: [v0.Handle, v1.Handle, v2.Handle]);
            client.WriteRegion(0, Fa1Registers.Scratch, BitConverter.GetBytes(99UL));
            Assert.That(model.Iommu.MappedPages, Is.EqualTo(256));

            client.Dispose();
            Assert.That(server.WaitForIdle(TimeSpan.FromSeconds(20)), Is.True);
            Assert.That(server.HasClient, Is.False);
            Assert.That(model.Iommu.MappedPages, Is.Zero, "every mapping left the model's IOMMU");
            Assert.That(server.Statistics.MappingsHeld, Is.Zero);
            Assert.That(server.Statistics.VectorsWired, Is.Zero, "the client's eventfds were closed");
            Assert.That(server.Statistics.Sessions, Is.EqualTo(1));
            Assert.That(model.Read64(Fa1Registers.Scratch), Is.EqualTo(99UL), "device state outlives the session");

            // The next client finds the device as the last one left it.
            var (serverEnd2, clientEnd2) = UnixSocket.CreatePair();
            server.Serve(serverEnd2);
            using (var second = new VfioUserTestClient(clientEnd2))
            {
                second.Negotiate();
                Assert.That(second.ReadBar0(Fa1Registers.Scratch), Is.EqualTo(99UL));
            }

            Assert.That(server.WaitForIdle(TimeSpan.FromSeconds(20)), Is.True);
        }

        Assert.That(FdCount.SettledAtMost(baseline), Is.LessThanOrEqualTo(baseline), "no descriptor left open");
        Assert.That(() => System.Diagnostics.Process.GetCurrentProcess().Threads.Count, Is.LessThanOrEqualTo(threads + 2).After(5000, 50),
            "the session threads ended (the runtime's own pool may keep a thread or two)");
    }

    [Test]
    public void AFaultOfTheServerEndsItsSessionNotTheProcess()
    {
        using var model = new Fa1Model();
        using var server = new VfioUserServer(model, new VfioUserServerOptions { MessageTrace = new BrokenWriter() });
        var (serverEnd, clientEnd) = UnixSocket.CreatePair();
        server.Serve(serverEnd);
        using (var client = new VfioUserTestClient(clientEnd))
        {
            client.Send(VfioUserCommand.Version, VfioUserTestClient.Struct((ushort)0, (ushort)0), flags: VfioUserFlags.NoReply);
            Assert.That(() => client.ServerClosed, Is.True.After(10000, 10), "the session ended on the trace writer's fault");
        }

        Assert.That(server.WaitForIdle(TimeSpan.FromSeconds(20)), Is.True);
        var (again, clientAgain) = UnixSocket.CreatePair();
        server.Serve(again);
        clientAgain.Dispose();
        Assert.That(server.WaitForIdle(TimeSpan.FromSeconds(20)), Is.True, "the server serves the next client");
    }

    [Test]
    public void DisposeEndsASessionWhoseClientStaysConnected()
    {
        using var model = new Fa1Model();
        var server = new VfioUserServer(model);
        var (serverEnd, clientEnd) = UnixSocket.CreatePair();
        server.Serve(serverEnd);
        using var client = new VfioUserTestClient(clientEnd);
        client.Negotiate();
        server.Dispose();
        Assert.That(server.HasClient, Is.False);
        Assert.That(() => client.ServerClosed, Is.True.After(5000, 10), "the client sees the connection end");
    }

    [Test]
    public void AListeningServerServesAtItsPathAndOnceStopsAfterTheFirstClient()
    {
        var dir = Directory.CreateTempSubdirectory("fpgaaccel-vfio-user-");
        try
        {
            var path = Path.Combine(dir.FullName, "fa1.sock");
            using var model = new Fa1Model();
            using var server = new VfioUserServer(model);
            server.Listen(path, once: true);
            Assert.That(() => server.Listen(path), Throws.InvalidOperationException);
            using (var client = new VfioUserTestClient(UnixSocket.Connect(path)))
            {
                client.Negotiate();
                Assert.That(client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue));
            }

            Assert.That(server.WaitForIdle(TimeSpan.FromSeconds(20)), Is.True, "once: the listener stops after the first client");
            Assert.That(File.Exists(path), Is.False, "the socket file is removed");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public void ListeningWhereSomethingExistsNamesTheFix()
    {
        var path = Path.GetTempFileName();
        try
        {
            using var model = new Fa1Model();
            using var server = new VfioUserServer(model);
            var ex = Assert.Throws<IOException>(() => server.Listen(path))!;
            Assert.That(ex.Message, Does.Contain(path).And.Contain("remove it"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void BadSettingsAreNamed()
    {
        using var model = new Fa1Model();
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new VfioUserServer(model, new VfioUserServerOptions { MaxDescriptorsPerMessage = 64 }))!;
        Assert.That(ex.Message, Does.Contain("MaxDescriptorsPerMessage = 64").And.Contain("1..16"));
    }

    /// <summary>A trace that fails: a fault inside the server, not in anything the client sent.</summary>
    private sealed class BrokenWriter : StringWriter
    {
        public override void WriteLine(string? value) => throw new IOException("disk full");
    }

    /// <summary>Unlinked tmpfs files for tests outside the fixture.</summary>
    private sealed class SharedFiles : IDisposable
    {
        private readonly List<IDisposable> _open = [];

        public (SafeFileDescriptor Fd, MemoryMapping View) Create(ulong size)
        {
            var path = Path.Combine("/dev/shm", "fpgaaccel-vfio-user-" + Guid.NewGuid().ToString("N"));
            using (var stream = File.Create(path))
            {
                stream.SetLength((long)size);
            }

            var fd = global::FpgaAccel.Interop.Interop.Libc.open(path, global::FpgaAccel.Interop.Interop.Libc.O_RDWR | global::FpgaAccel.Interop.Interop.Libc.O_CLOEXEC);
            File.Delete(path);
            var view = MemoryMapping.Shared(fd, size, 0, MemoryProtection.ReadWrite);
            _open.Add(view);
            _open.Add(fd);
            return (fd, view);
        }

        public void Dispose()
        {
            foreach (var d in _open)
            {
                d.Dispose();
            }
        }
    }
}
