using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim.VfioUser;
using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;
using NUnit.Framework;
using static FpgaAccel.Tests.HwSim.VfioUser.VfioUserTestClient;

namespace FpgaAccel.Tests.HwSim.VfioUser;

/// <summary>
/// The session against the protocol: version negotiation, device, region and IRQ info, region access rules, and
/// every kind of malformed message answered with its errno while the session goes on serving.
/// </summary>
public class VfioUserSessionTests : VfioUserFixture
{
    internal override bool Negotiate => false;

    [Test]
    public void VersionAnswersZeroZeroWithCapabilitiesTheClientProposed()
    {
        var reply = Client.Negotiate();
        Assert.That(reply.Header.Command, Is.EqualTo(VfioUserCommand.Version));
        Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(reply.Body), Is.Zero, "major");
        Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(reply.Body.AsSpan(2)), Is.Zero, "minor");
        Assert.That(reply.Body[^1], Is.Zero, "the JSON is NUL-terminated");
        using var json = JsonDocument.Parse(reply.Body.AsMemory(4, reply.Body.Length - 5));
        var capabilities = json.RootElement.GetProperty("capabilities");
        Assert.That(capabilities.GetProperty("max_msg_fds").GetInt32(), Is.InRange(1, 16));
        Assert.That(capabilities.GetProperty("max_data_xfer_size").GetInt32(), Is.EqualTo(1 << 20));
        Assert.That(capabilities.GetProperty("pgsizes").GetInt32(), Is.EqualTo(4096));
        Assert.That(capabilities.TryGetProperty("write_multiple", out _), Is.False, "REGION_WRITE_MULTI is not offered, so not advertised");
        Assert.That(capabilities.TryGetProperty("twin_socket", out _), Is.False);
    }

    [Test]
    public void AVersionReplyNeverOutgrowsTheRequest()
    {
        // A bare VERSION (no JSON): the client's reply buffer is its request's size, so no capabilities fit.
        var reply = Client.Send(VfioUserCommand.Version, Struct((ushort)0, (ushort)0));
        Assert.That(reply.Failed, Is.False);
        Assert.That(reply.Header.Size, Is.LessThanOrEqualTo(VfioUserHeader.Length + 4u));
        Assert.That(Client.Send(VfioUserCommand.DeviceGetInfo, Struct(16u, 0u, 0u, 0u)).Failed, Is.False, "negotiated");
    }

    [Test]
    public void CommandsBeforeVersionAndASecondVersionAreRefused()
    {
        Assert.That(Client.Send(VfioUserCommand.DeviceGetInfo, Struct(16u, 0u, 0u, 0u)).Errno, Is.EqualTo(Errno.EINVAL));
        Assert.That(Client.Send(VfioUserCommand.Version, Struct((ushort)1, (ushort)0)).Errno, Is.EqualTo(Errno.EOPNOTSUPP), "major 1");
        Assert.That(Client.Send(VfioUserCommand.Version, Struct((ushort)0, (ushort)0, "{\"capabilities\": 7"u8.ToArray())).Errno,
            Is.EqualTo(Errno.EINVAL), "JSON without its NUL");
        Assert.That(Client.Send(VfioUserCommand.Version, Struct((ushort)0, (ushort)0, (byte[])[.. "{nope"u8, 0])).Errno, Is.EqualTo(Errno.EINVAL), "not JSON");
        Client.Negotiate();
        Assert.That(Client.Send(VfioUserCommand.Version, Struct((ushort)0, (ushort)0)).Errno, Is.EqualTo(Errno.EINVAL), "VERSION again");
    }

    [Test]
    public void DeviceInfoIsAResettablePciDeviceWithNineRegionsAndFiveIrqTypes()
    {
        Client.Negotiate();
        var reply = Client.Send(VfioUserCommand.DeviceGetInfo, Struct(16u, 0u, 0u, 0u));
        Assert.That(reply.Body, Has.Length.EqualTo(16));
        Assert.That(reply.U32(0), Is.EqualTo(16u), "argsz");
        Assert.That((VfioDeviceFlags)reply.U32(4), Is.EqualTo(VfioDeviceFlags.Reset | VfioDeviceFlags.Pci));
        Assert.That(reply.U32(8), Is.EqualTo(9u));
        Assert.That(reply.U32(12), Is.EqualTo(5u));
        Assert.That(Client.Send(VfioUserCommand.DeviceGetInfo, Struct(8u, 0u, 0u, 0u)).Errno, Is.EqualTo(Errno.EINVAL), "argsz too small for the reply");
    }

    [TestCase(0u, 64UL * 1024)]
    [TestCase(1u, 0UL)]
    [TestCase(2u, 4096UL)]
    [TestCase(3u, 0UL)]
    [TestCase(6u, 0UL)]
    [TestCase(7u, 256UL)]
    [TestCase(8u, 0UL)]
    public void RegionInfoMatchesSpecOne(uint index, ulong size)
    {
        Client.Negotiate();
        var reply = Client.Send(VfioUserCommand.DeviceGetRegionInfo, Struct(32u, 0u, index, 0u, 0UL, 0UL));
        Assert.That(reply.Failed, Is.False);
        Assert.That(reply.Body, Has.Length.EqualTo(32));
        Assert.That(reply.U32(8), Is.EqualTo(index));
        Assert.That(reply.U64(16), Is.EqualTo(size));
        var flags = (VfioRegionFlags)reply.U32(4);
        Assert.That(flags, Is.EqualTo(size == 0 ? VfioRegionFlags.None : VfioRegionFlags.Read | VfioRegionFlags.Write),
            "readable and writable, never mmappable: every access is a message the model sees");
    }

    [Test]
    public void IrqInfoOffersThreeMsixVectorsAndNothingElse()
    {
        Client.Negotiate();
        uint[] counts = [0, 0, 3, 0, 0];
        for (var index = 0u; index < 5; index++)
        {
            var reply = Client.Send(VfioUserCommand.DeviceGetIrqInfo, Struct(16u, 0u, index, 0u));
            Assert.That(reply.U32(12), Is.EqualTo(counts[index]), $"IRQ index {index}");
            Assert.That(((VfioIrqFlags)reply.U32(4)).HasFlag(VfioIrqFlags.EventFd), Is.True);
        }

        Assert.That((VfioIrqFlags)Client.Send(VfioUserCommand.DeviceGetIrqInfo, Struct(16u, 0u, 2u, 0u)).U32(4),
            Is.EqualTo(VfioIrqFlags.EventFd | VfioIrqFlags.NoResize), "MSI-X is not maskable here: the client's table masks");
        Assert.That(Client.Send(VfioUserCommand.DeviceGetIrqInfo, Struct(16u, 0u, 5u, 0u)).Errno, Is.EqualTo(Errno.EINVAL));
    }

    [Test]
    public void Bar0ReadsAndWritesReachTheModelsRegisters()
    {
        Client.Negotiate();
        Assert.That(Client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue));
        Client.Post(VfioUserCommand.RegionWrite, Struct((ulong)Fa1Registers.Scratch, 0u, 8u, BitConverter.GetBytes(0x0123_4567_89AB_CDEFUL)));
        Assert.That(Client.ReadBar0(Fa1Registers.Scratch), Is.EqualTo(0x0123_4567_89AB_CDEFUL), "the posted write landed before the read (commands run in order)");
        Assert.That(Model.Read64(Fa1Registers.Scratch), Is.EqualTo(0x0123_4567_89AB_CDEFUL));
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(Client.ReadRegion(0, Fa1Registers.Scratch + 4, 4)), Is.EqualTo(0x0123_4567u),
            "a narrower read gets those bytes of the register (decision V2)");
        var nonPosted = Client.WriteRegion(0, Fa1Registers.Scratch, BitConverter.GetBytes(42UL));
        Assert.That(nonPosted.Failed, Is.False);
        Assert.That(nonPosted.Body, Has.Length.EqualTo(16), "a write's reply echoes offset, region and count, without the data");
    }

    [Test]
    public void RegionAccessRulesAreEnforcedWithEinvalAndTheSessionGoesOn()
    {
        Client.Negotiate();
        Model.Write64(Fa1Registers.Scratch, 7);
        Assert.Multiple(() =>
        {
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(0x2CUL, 0u, 8u)).Errno, Is.EqualTo(Errno.EINVAL), "straddles SCRATCH and CTRL");
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(0x29UL, 0u, 2u)).Errno, Is.EqualTo(Errno.EINVAL), "misaligned");
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(0x28UL, 0u, 3u)).Errno, Is.EqualTo(Errno.EINVAL), "3 bytes");
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(0x10000UL, 0u, 8u)).Errno, Is.EqualTo(Errno.EINVAL), "past BAR0");
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(ulong.MaxValue - 3, 0u, 8u)).Errno, Is.EqualTo(Errno.EINVAL), "offset wraps");
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(0UL, 9u, 4u)).Errno, Is.EqualTo(Errno.EINVAL), "region index 9");
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(0UL, 1u, 4u)).Errno, Is.EqualTo(Errno.EINVAL), "BAR1 has no bytes");
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(0UL, 2u, 2u)).Errno, Is.EqualTo(Errno.EINVAL), "MSI-X BAR takes 4 or 8 bytes");
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(0UL, 7u, 257u)).Errno, Is.EqualTo(Errno.EINVAL), "past config space");
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(0UL, 0u, (1u << 20) + 8)).Errno, Is.EqualTo(Errno.E2BIG), "over max_data_xfer_size");
            Assert.That(Client.WriteRegion(0, Fa1Registers.Scratch, BitConverter.GetBytes(1u)).Errno, Is.EqualTo(Errno.EINVAL),
                "a 4-byte write to a 64-bit register (decision V2)");
        });
        Assert.That(Model.Read64(Fa1Registers.Scratch), Is.EqualTo(7UL), "the refused write changed nothing");

        Client.Post(VfioUserCommand.RegionWrite, Struct((ulong)Fa1Registers.Scratch, 0u, 4u, BitConverter.GetBytes(9u)));
        Assert.That(Client.ReadBar0(Fa1Registers.Scratch), Is.EqualTo(7UL), "a posted partial write is dropped, not half-applied");
        Assert.That(Server.Statistics.RefusedPosted, Is.EqualTo(1));
        Assert.That(Server.Function.PartialWritesDropped, Is.EqualTo(2));
    }

    [Test]
    public void MalformedMessagesGetTheirErrnoAndTheSessionKeepsServing()
    {
        Client.Negotiate();
        using var eventFd = EventFd.Create();
        Assert.Multiple(() =>
        {
            Assert.That(Client.Send((VfioUserCommand)99, []).Errno, Is.EqualTo(Errno.EINVAL), "unknown command");
            Assert.That(Client.Send(VfioUserCommand.RegionWriteMulti, Struct(0UL)).Errno, Is.EqualTo(Errno.EOPNOTSUPP), "not offered");
            Assert.That(Client.Send(VfioUserCommand.DmaRead, Struct(0UL, 8UL)).Errno, Is.EqualTo(Errno.EINVAL), "wrong direction");
            Assert.That(Client.Send(VfioUserCommand.DeviceGetInfo, Struct(16u, 0u, 0u)).Errno, Is.EqualTo(Errno.EINVAL), "short payload");
            Assert.That(Client.Send(VfioUserCommand.DeviceGetInfo, Struct(16u, 0u, 0u, 0u, 0u)).Errno, Is.EqualTo(Errno.EINVAL), "long payload");
            Assert.That(Client.Send(VfioUserCommand.RegionRead, Struct(0UL, 0u, 8u), [eventFd.Handle]).Errno, Is.EqualTo(Errno.EINVAL), "an fd where none belongs");
            Assert.That(Client.Send(VfioUserCommand.RegionWrite, Struct(0x28UL, 0u, 8u, new byte[4])).Errno, Is.EqualTo(Errno.EINVAL), "count says 8, 4 bytes came");
            Assert.That(Client.Send(VfioUserCommand.RegionWrite, Struct(0x28UL, 0u, 4u, new byte[8])).Errno, Is.EqualTo(Errno.EINVAL), "count says 4, 8 bytes came");
            Assert.That(Client.Send(VfioUserCommand.DeviceReset, Struct(0u)).Errno, Is.EqualTo(Errno.EINVAL), "DEVICE_RESET has no payload");
            Assert.That(Client.Send(VfioUserCommand.DeviceGetInfo, Struct(16u, 0u, 0u, 0u), flags: (VfioUserFlags)2).Errno, Is.EqualTo(Errno.EINVAL), "message type 2");
        });
        Assert.That(Client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue), "still serving");
        Assert.That(Server.Statistics.Refused, Is.EqualTo(10));
    }

    [Test]
    public void SizeLiesAreCaughtBeforeTheBodyIsTrusted()
    {
        Client.Negotiate();

        // A size smaller than the header: nothing follows it, EINVAL.
        Assert.That(Client.Send(VfioUserCommand.DeviceGetInfo, [], declaredSize: 8).Errno, Is.EqualTo(Errno.EINVAL));

        // A size over the server's limit: E2BIG, and the declared body is read and dropped, so the stream stays in step.
        var id = Client.NextId();
        const int declared = (2 << 20) + 64;
        var message = new byte[declared];
        new VfioUserHeader(id, VfioUserCommand.RegionWrite, declared, VfioUserFlags.Command, 0).Write(message);
        Assert.That(Client.SendMessage(id, message)!.Errno, Is.EqualTo(Errno.E2BIG));

        // A size that claims a payload the command does not have: caught by the command's own size check.
        Assert.That(Client.Send(VfioUserCommand.DeviceReset, new byte[8]).Errno, Is.EqualTo(Errno.EINVAL));
        Assert.That(Client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue), "the stream is in step after all three");
    }

    [Test]
    public void AStrayReplyIsDroppedAndCounted()
    {
        Client.Negotiate();
        var message = new byte[VfioUserHeader.Length + 16];
        new VfioUserHeader(4242, VfioUserCommand.DmaRead, (uint)message.Length, VfioUserFlags.Reply, 0).Write(message);
        Client.SendMessage(4242, message, posted: true);
        Assert.That(Client.ReadBar0(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue));
        Assert.That(Server.Statistics.StrayReplies, Is.EqualTo(1));
        Assert.That(Client.Arrivals.Count(a => a.Contains("4242", StringComparison.Ordinal)), Is.Zero, "a reply is never answered");
    }

    [Test]
    public void TheTraceHasALinePerMessageAndNamesRefusals()
    {
        // This fixture's server has no trace; a second one with one, on its own socketpair.
        using var model = new global::FpgaAccel.HwSim.Fa1Model();
        var trace = new StringWriter();
        using var server = new VfioUserServer(model, new VfioUserServerOptions { MessageTrace = trace });
        var (a, b) = UnixSocket.CreatePair();
        server.Serve(a);
        using (var client = new VfioUserTestClient(b))
        using (var vector = EventFd.Create())
        {
            client.Negotiate();
            client.ReadBar0(0);
            client.Send(VfioUserCommand.RegionRead, Struct(0x29UL, 0u, 2u));
            client.SetIrqs((uint)(VfioIrqSetFlags.DataEventFd | VfioIrqSetFlags.ActionTrigger), VfioPciIrq.Msix, 0, 1, fds: [vector.Handle]);
        }

        Assert.That(server.WaitForIdle(TimeSpan.FromSeconds(20)), Is.True);
        var lines = trace.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(4));
        Assert.That(lines[1], Does.Contain("<- id=").And.Contain("RegionRead region=0+0x0 count=8"));
        Assert.That(lines[2], Does.Contain("refused EINVAL"));
        Assert.That(lines[3], Does.Contain("DeviceSetIrqs index=2 flags=0x24 start=0 count=1 fds=1"), "the descriptors counted as they came, before the handler kept them");
        Assert.That(Encoding.UTF8.GetByteCount(trace.ToString()), Is.GreaterThan(0));
    }
}
