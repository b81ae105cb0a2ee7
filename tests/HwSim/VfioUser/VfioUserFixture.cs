using FpgaAccel.HwSim;
using FpgaAccel.HwSim.VfioUser;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim.VfioUser;

/// <summary>
/// A model served over a socketpair to a <see cref="VfioUserTestClient"/>, with the version negotiated; torn down
/// by closing the client and waiting for the session to release everything.
/// </summary>
public abstract class VfioUserFixture
{
    private readonly List<IDisposable> _disposables = [];

    internal Fa1Model Model { get; private set; } = null!;

    internal VfioUserServer Server { get; private set; } = null!;

    internal VfioUserTestClient Client { get; private set; } = null!;

    /// <summary>Server settings for this fixture.</summary>
    internal virtual VfioUserServerOptions Options => new();

    /// <summary>Whether SetUp negotiates the version.</summary>
    internal virtual bool Negotiate => true;

    [SetUp]
    public void StartServer()
    {
        Model = new Fa1Model();
        Server = new VfioUserServer(Model, Options);
        var (serverEnd, clientEnd) = UnixSocket.CreatePair();
        Server.Serve(serverEnd);
        Client = new VfioUserTestClient(clientEnd);
        if (Negotiate)
        {
            Client.Negotiate();
        }
    }

    [TearDown]
    public void StopServer()
    {
        Client.Dispose();
        Assert.That(Server.WaitForIdle(TimeSpan.FromSeconds(20)), Is.True, "the session ends once the client is gone");
        Server.Dispose();
        Model.Dispose();
        foreach (var d in _disposables)
        {
            d.Dispose();
        }
    }

    /// <summary>A file of <paramref name="size"/> bytes on tmpfs (unlinked: only its descriptor names it), and the test's own view of it.</summary>
    internal (SafeFileDescriptor Fd, MemoryMapping View) SharedFile(ulong size)
    {
        var path = Path.Combine("/dev/shm", "fpgaaccel-vfio-user-" + Guid.NewGuid().ToString("N"));
        using (var stream = File.Create(path))
        {
            stream.SetLength((long)size);
        }

        var fd = global::FpgaAccel.Interop.Interop.Libc.open(path, global::FpgaAccel.Interop.Interop.Libc.O_RDWR | global::FpgaAccel.Interop.Interop.Libc.O_CLOEXEC);
        File.Delete(path);
        Assert.That(fd.IsInvalid, Is.False, $"open {path}");
        var view = MemoryMapping.Shared(fd, size, 0, MemoryProtection.ReadWrite);
        _disposables.Add(view);
        _disposables.Add(fd);
        return (fd, view);
    }

    /// <summary>Sets the command register's bus master (and memory) bits: the device may reach client memory (decision V6).</summary>
    internal void EnableBusMaster() =>
        Client.WriteConfig16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemory | PciConfigRegisters.CommandBusMaster);
}
