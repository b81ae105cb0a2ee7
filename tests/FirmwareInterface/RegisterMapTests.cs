using FpgaAccel.FirmwareInterface;
using NUnit.Framework;

namespace FpgaAccel.Tests.FirmwareInterface;

/// <summary>Register offsets and fields against the spec's tables (sections 3, 4, 5).</summary>
public class RegisterMapTests
{
    [Test]
    public void GlobalOffsetsMatchSpec3()
    {
        uint[] offsets = [Fa1Registers.Id, Fa1Registers.Version, Fa1Registers.Caps, Fa1Registers.ClockHz, Fa1Registers.Cycles,
            Fa1Registers.Scratch, Fa1Registers.Ctrl, Fa1Registers.Status, Fa1Registers.Error, Fa1Registers.IrqStatus, Fa1Registers.IrqMask];
        Assert.That(offsets, Is.EqualTo(new uint[] { 0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38, 0x40, 0x48, 0x50 }));
    }

    [Test]
    public void FaultRingAndInvalidationOffsetsMatchSpec4()
    {
        uint[] fault = [Fa1Registers.FqBase, Fa1Registers.FqLog2, Fa1Registers.FqTail, Fa1Registers.FqHead, Fa1Registers.FqStalls, Fa1Registers.FaultResp, Fa1Registers.FaultPte];
        Assert.That(fault, Is.EqualTo(new uint[] { 0x100, 0x108, 0x110, 0x118, 0x120, 0x128, 0x130 }));
        uint[] inv = [Fa1Registers.InvAddr, Fa1Registers.InvPages, Fa1Registers.InvCmd, Fa1Registers.InvDone, Fa1Registers.TlbHits, Fa1Registers.TlbMisses, Fa1Registers.Walks];
        Assert.That(inv, Is.EqualTo(new uint[] { 0x200, 0x208, 0x210, 0x218, 0x220, 0x228, 0x230 }));
    }

    [Test]
    public void ContextAndQueueBlocksMatchSpec()
    {
        Assert.That(Fa1Registers.Context(0, Fa1Registers.CtxRoot), Is.EqualTo(0x1000));
        Assert.That(Fa1Registers.Context(3, Fa1Registers.CtxCtrl), Is.EqualTo(0x1000 + (0x20 * 3) + 0x08));
        Assert.That(Fa1Registers.Context(5, Fa1Registers.CtxFaults), Is.EqualTo(0x1000 + (0x20 * 5) + 0x10));
        Assert.That(Fa1Registers.MaxAddressableContexts, Is.EqualTo(128));
        Assert.That(Fa1Registers.Queue(0, Fa1Registers.SqBase), Is.EqualTo(0x2000));
        Assert.That(Fa1Registers.Queue(2, Fa1Registers.CqTail), Is.EqualTo(0x2000 + 0x80 + 0x38));
        uint[] q = [Fa1Registers.SqBase, Fa1Registers.SqLog2, Fa1Registers.SqTail, Fa1Registers.SqHead, Fa1Registers.CqBase, Fa1Registers.CqLog2, Fa1Registers.CqHead, Fa1Registers.CqTail];
        Assert.That(q, Is.EqualTo(new uint[] { 0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38 }));
        Assert.That(Fa1Registers.Queue(Fa1Registers.MaxAddressableQueues - 1, Fa1Registers.CqTail), Is.LessThan((uint)Fa1Identity.Bar0Size));
    }

    [Test]
    public void CapsFieldsRoundTrip()
    {
        var caps = Capabilities.Create(16, 8, 8, 7, isModel: true, huge2M: true, dropin: false, vaBits: 48, iovaBits: 39);
        Assert.Multiple(() =>
        {
            Assert.That(caps.Contexts, Is.EqualTo(16));
            Assert.That(caps.Queues, Is.EqualTo(8));
            Assert.That(caps.TlbWays, Is.EqualTo(8));
            Assert.That(caps.TlbSetsLog2, Is.EqualTo(7));
            Assert.That(caps.TlbEntries, Is.EqualTo(1024));
            Assert.That(caps.IsModel, Is.True);
            Assert.That(caps.Huge2M, Is.True);
            Assert.That(caps.Dropin, Is.False);
            Assert.That(caps.VaBits, Is.EqualTo(48));
            Assert.That(caps.IovaBits, Is.EqualTo(39));
        });
        Assert.That(caps.Raw >> 32 & 1, Is.EqualTo(1UL), "MODEL is bit 32");
        Assert.That(caps.Raw >> 40 & 0xFF, Is.EqualTo(48UL), "VA bits are [47:40]");
    }

    [Test]
    public void FaultResponseEncodingMatchesSpec44()
    {
        var r = new FaultResponse(0xBEEF, 0x12, FaultResponseCode.Dropin);
        Assert.That(r.Raw, Is.EqualTo(0xBEEFUL | (0x12UL << 16) | (3UL << 24)));
        Assert.That(FaultResponse.FromRaw(r.Raw), Is.EqualTo(r));
    }

    [Test]
    public void InvalidationCommandEncodingMatchesSpec43()
    {
        var c = new InvalidationCommand(7, InvalidationScope.Range);
        Assert.That(c.Raw, Is.EqualTo(7UL | (2UL << 8)));
        Assert.That(InvalidationCommand.FromRaw(c.Raw), Is.EqualTo(c));
    }

    [Test]
    public void ErrorRegisterSplitsCauseAndDetail()
    {
        var e = ErrorRegister.FromRaw(0x0001_2345_0000_0001);
        Assert.That(e.Cause, Is.EqualTo(FatalCause.UnmappedIova));
        Assert.That(e.Detail, Is.EqualTo(0x0001_2345u));
        Assert.That(e.Raw, Is.EqualTo(0x0001_2345_0000_0001UL));
    }

    [Test]
    public void ErrorRegisterEncodesTheSpecsDetails()
    {
        // spec 3: cause 1's detail is the IOVA's page number, IOVA >> 12, low 32 bits.
        Assert.That(ErrorRegister.ForUnmappedIova(0x0000_0123_4567_8ABC).Raw, Is.EqualTo((0x1234_5678UL << 32) | 1));
        Assert.That(ErrorRegister.ForUnmappedIova(0x7_0000_0000), Is.EqualTo(new ErrorRegister(FatalCause.UnmappedIova, 0x70_0000)));
        Assert.That(ErrorRegister.ForUnmappedIova(0x1_0000_0000_0000).Detail, Is.Zero, "only the low 32 bits of the page number");

        // D14: cause 2's detail is the BAR0 offset of the offending register.
        Assert.That(ErrorRegister.ForBadRingConfiguration(0x2028).Raw, Is.EqualTo((0x2028UL << 32) | 2));
    }

    [Test]
    public void InvalidationScopeThreeIsTheReservedScope()
    {
        Assert.That(InvalidationCommand.FromRaw(0x305).Scope, Is.EqualTo(InvalidationScope.Reserved));
        Assert.That(InvalidationCommand.FromRaw(0x305).Context, Is.EqualTo(5));
    }

    [Test]
    public void ContextRootHoldsTableBitsAndValidOnly()
    {
        Assert.That(ContextRoot.ImplementedBits, Is.EqualTo(~0xFFEUL), "[11:1] are not implemented (spec 4.2)");
        var root = new ContextRoot(0x1234_5FFF);
        Assert.That(root.TableIova, Is.EqualTo(0x1234_5000UL));
        Assert.That(root.Valid, Is.True);
        Assert.That(new ContextRoot(0x1234_5FFE).Valid, Is.False);
    }

    [Test]
    public void ContextRootKeepsAlignmentAndValid()
    {
        var root = ContextRoot.Create(0x1234_5000, valid: true);
        Assert.That(root.Valid, Is.True);
        Assert.That(root.TableIova, Is.EqualTo(0x1234_5000UL));
        Assert.That(root.Raw, Is.EqualTo(0x1234_5001UL));
    }
}
