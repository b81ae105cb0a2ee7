using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>The model's global block (spec 3), under both clocks.</summary>
[TestFixture(ClockMode.Virtual)]
[TestFixture(ClockMode.Wall)]
public class GlobalBlockTests
{
    private readonly ClockMode _clock;

    public GlobalBlockTests(ClockMode clock) => _clock = clock;

    private Fa1Model NewModel(ModelOptions? options = null) =>
        new((options ?? new ModelOptions()) with { Clock = _clock });

    [Test]
    public void IdentityRegistersReadAsSpecified()
    {
        using var model = NewModel();
        Assert.Multiple(() =>
        {
            Assert.That(model.Read64(Fa1Registers.Id), Is.EqualTo(0x0000_0000_FA01_ACCEUL));
            Assert.That(model.Read64(Fa1Registers.Version), Is.EqualTo(1UL << 32));
            Assert.That(model.Read64(Fa1Registers.ClockHz), Is.EqualTo(250_000_000UL));
            var caps = new Capabilities(model.Read64(Fa1Registers.Caps));
            Assert.That(caps.IsModel, Is.True);
            Assert.That(caps.Contexts, Is.EqualTo(16));
            Assert.That(caps.Queues, Is.EqualTo(8));
            Assert.That(caps.TlbEntries, Is.EqualTo(1024));
            Assert.That(caps.VaBits, Is.EqualTo(48));
            Assert.That(caps.IovaBits, Is.EqualTo(48));
        });
    }

    [Test]
    public void ReadOnlyRegistersIgnoreWrites()
    {
        using var model = NewModel();
        uint[] readOnly = [Fa1Registers.Id, Fa1Registers.Version, Fa1Registers.Caps, Fa1Registers.ClockHz, Fa1Registers.Status, Fa1Registers.Error];
        foreach (var offset in readOnly)
        {
            var before = model.Read64(offset);
            model.Write64(offset, 0x1234_5678_9ABC_DEF0);
            Assert.That(model.Read64(offset), Is.EqualTo(before), $"register 0x{offset:X} is read-only");
        }

        Assert.That(model.Counters.IgnoredWrites, Is.EqualTo(readOnly.Length));
    }

    [Test]
    public void ScratchHoldsWhatWasWritten()
    {
        using var model = NewModel();
        model.Write64(Fa1Registers.Scratch, 0xDEAD_BEEF_CAFE_F00D);
        Assert.That(model.Read64(Fa1Registers.Scratch), Is.EqualTo(0xDEAD_BEEF_CAFE_F00DUL));
    }

    [Test]
    public void UnimplementedOffsetsReadZeroAndIgnoreWrites()
    {
        using var model = NewModel();
        model.Write64(0xF000, 42);
        Assert.That(model.Read64(0xF000), Is.Zero);
        Assert.That(model.Read64(0x0004), Is.Zero, "a misaligned offset is not a register");
        Assert.That(model.Counters.UnimplementedAccesses, Is.EqualTo(3));
    }

    [Test]
    public void OffsetOutsideBarIsRejected()
    {
        using var model = NewModel();
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Read64(0x1_0000));
    }

    [Test]
    public void CyclesIsMonotonic()
    {
        using var model = NewModel();
        var last = model.Read64(Fa1Registers.Cycles);
        for (var i = 0; i < 1000; i++)
        {
            var now = model.Read64(Fa1Registers.Cycles);
            Assert.That(now, Is.GreaterThanOrEqualTo(last));
            last = now;
        }

        Assert.That(last, Is.GreaterThan(0UL), "the clock advances (by read costs on the virtual clock, by time on the wall clock)");
    }

    [Test]
    public void ResetSelfClearsAfterModelledDelayAndClearsState()
    {
        using var model = NewModel();
        model.Write64(Fa1Registers.Scratch, 77);
        model.Write64(Fa1Registers.IrqMask, (ulong)InterruptCauses.Completion);
        model.InjectFatal(FatalCause.Internal, 5);
        Assert.That(model.Read64(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Not.Zero);

        model.Write64(Fa1Registers.Ctrl, (ulong)(ControlBits.Reset | ControlBits.Enable));
        var status = model.Read64(Fa1Registers.Status);
        Assert.That(status & (ulong)StatusBits.Resetting, Is.Not.Zero, "RESETTING right after the write");
        Assert.That(status & (ulong)StatusBits.Ready, Is.Zero);
        model.Write64(Fa1Registers.Scratch, 99);

        var polls = 0;
        while ((model.Read64(Fa1Registers.Ctrl) & (ulong)ControlBits.Reset) != 0)
        {
            Assert.That(++polls, Is.LessThan(1_000_000), "reset never self-cleared");
        }

        status = model.Read64(Fa1Registers.Status);
        Assert.Multiple(() =>
        {
            Assert.That(status & (ulong)StatusBits.Ready, Is.Not.Zero);
            Assert.That(status & (ulong)(StatusBits.Resetting | StatusBits.Fatal), Is.Zero);
            Assert.That(model.Read64(Fa1Registers.Scratch), Is.Zero, "reset clears SCRATCH; writes during reset are ignored");
            Assert.That(model.Read64(Fa1Registers.Ctrl), Is.Zero, "ENABLE is clear after reset");
            Assert.That(model.Read64(Fa1Registers.Error), Is.Zero);
            Assert.That(model.Read64(Fa1Registers.IrqStatus), Is.Zero);
            Assert.That(model.Read64(Fa1Registers.IrqMask), Is.Zero);
            Assert.That(model.Read64(Fa1Registers.Cycles), Is.GreaterThanOrEqualTo(Fa1Timing.Reset).And.LessThan(Fa1Timing.Reset * 1000UL),
                "CYCLES counts from the reset");
        });
    }

    [Test]
    public void IrqStatusIsWriteOneToClear()
    {
        using var model = NewModel();
        model.RaiseInterrupt(InterruptCauses.Fault | InterruptCauses.Error);
        Assert.That(model.Read64(Fa1Registers.IrqStatus), Is.EqualTo((ulong)(InterruptCauses.Fault | InterruptCauses.Error)));
        model.Write64(Fa1Registers.IrqStatus, (ulong)InterruptCauses.Fault);
        Assert.That(model.Read64(Fa1Registers.IrqStatus), Is.EqualTo((ulong)InterruptCauses.Error), "writing 1 clears only that bit");
        model.Write64(Fa1Registers.IrqStatus, 0);
        Assert.That(model.Read64(Fa1Registers.IrqStatus), Is.EqualTo((ulong)InterruptCauses.Error), "writing 0 changes nothing");
    }

    [Test]
    public void InterruptArrivesOnItsVectorsEventFd()
    {
        using var model = NewModel();
        using var fault = EventFd.Create();
        using var completion = EventFd.Create();
        using var error = EventFd.Create();
        Assert.That(model.ConnectInterrupts([fault, completion, error]), Is.EqualTo(3));

        model.RaiseInterrupt(InterruptCauses.Completion);
        Assert.That(completion.TryRead(out var n), Is.True);
        Assert.That(n, Is.EqualTo(1UL));
        Assert.That(fault.TryRead(out _), Is.False);
        Assert.That(error.TryRead(out _), Is.False);

        model.InjectFatal(FatalCause.BadRingConfiguration, 3);
        Assert.That(error.TryRead(out _), Is.True, "a fatal error sends the ERROR vector");
        Assert.That(ErrorRegister.FromRaw(model.Read64(Fa1Registers.Error)), Is.EqualTo(new ErrorRegister(FatalCause.BadRingConfiguration, 3)));
    }

    [Test]
    public void MaskedCauseLatchesWithoutMessageAndSendsOnUnmask()
    {
        using var model = NewModel();
        using var fault = EventFd.Create();
        using var completion = EventFd.Create();
        using var error = EventFd.Create();
        model.ConnectInterrupts([fault, completion, error]);
        model.Write64(Fa1Registers.IrqMask, (ulong)InterruptCauses.Fault);
        model.RaiseInterrupt(InterruptCauses.Fault);
        Assert.That(fault.TryRead(out _), Is.False, "masked: no message");
        Assert.That(model.Read64(Fa1Registers.IrqStatus) & (ulong)InterruptCauses.Fault, Is.Not.Zero, "masked: the status still latches");
        model.Write64(Fa1Registers.IrqMask, 0);
        Assert.That(fault.TryRead(out _), Is.True, "unmasking a latched cause sends its message");
    }

    [Test]
    public void SingleVectorHostGetsEveryCauseOnVectorZero()
    {
        using var model = NewModel(new ModelOptions { MsixVectors = 1 });
        using var v0 = EventFd.Create();
        using var v1 = EventFd.Create();
        using var v2 = EventFd.Create();
        Assert.That(model.ConnectInterrupts([v0, v1, v2]), Is.EqualTo(1));
        model.RaiseInterrupt(InterruptCauses.Completion);
        model.RaiseInterrupt(InterruptCauses.Error);
        Assert.That(v0.TryRead(out var n), Is.True);
        Assert.That(n, Is.EqualTo(2UL));
        Assert.That(v1.TryRead(out _) || v2.TryRead(out _), Is.False);
        Assert.That(model.Read64(Fa1Registers.IrqStatus), Is.EqualTo((ulong)(InterruptCauses.Completion | InterruptCauses.Error)));
    }

    [Test]
    public void DeviceOffTheBusReadsAllOnes()
    {
        using var model = NewModel();
        model.Write64(Fa1Registers.Scratch, 5);
        model.Inject.RemoveFromBus();
        Assert.That(model.Read64(Fa1Registers.Id), Is.EqualTo(ulong.MaxValue));
        Assert.That(model.Read64(Fa1Registers.Scratch), Is.EqualTo(ulong.MaxValue));
        Assert.That(model.Read64(0xF000), Is.EqualTo(ulong.MaxValue), "even unimplemented offsets read all ones");
        model.Write64(Fa1Registers.Scratch, 6);
        model.Inject.ReturnToBus();
        Assert.That(model.Read64(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue));
        Assert.That(model.Read64(Fa1Registers.Scratch), Is.Zero, "it comes back reset");
    }

    [Test]
    public void BadSettingsAreRejectedByName()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new Fa1Model(new ModelOptions { Contexts = 200 }))!;
        Assert.That(ex.Message, Does.Contain("Contexts = 200").And.Contain("1..128"));
    }
}

/// <summary>Spec 7: on the virtual clock CYCLES advances only by modelled costs.</summary>
public class VirtualClockTests
{
    [Test]
    public void VirtualCyclesAdvanceOnlyByModelledCosts()
    {
        using var model = new Fa1Model(new ModelOptions { Clock = ClockMode.Virtual, MmioReadCycles = 100 });
        var a = model.Read64(Fa1Registers.Cycles);
        Thread.Sleep(20);
        var b = model.Read64(Fa1Registers.Cycles);
        Assert.That(b - a, Is.EqualTo(100UL), "one register read costs exactly MmioReadCycles; sleeping costs nothing");
    }

    [Test]
    public void WallCyclesFollowHostTime()
    {
        using var model = new Fa1Model(new ModelOptions { Clock = ClockMode.Wall });
        var a = model.Read64(Fa1Registers.Cycles);
        Thread.Sleep(20);
        var b = model.Read64(Fa1Registers.Cycles);
        Assert.That(b - a, Is.GreaterThanOrEqualTo(19UL * 250_000), "20 ms at 250 MHz is 5 million cycles");
    }

    [Test]
    public void WallClockSpendTakesRealTime()
    {
        var clock = ModelClock.Create(ClockMode.Wall);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        clock.Spend(250_000 * 5); // 5 ms
        Assert.That(watch.Elapsed.TotalMilliseconds, Is.GreaterThanOrEqualTo(4.9));
    }
}
