using System.Diagnostics;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.HwSim;

/// <summary>
/// The model's fault injection (<see cref="Fa1Model.Inject"/>) as the host sees it: registers, ring memory, MSI-X
/// eventfds. Decisions R1-R9. Each test asserts what the device does, never how fast: an absence (no completion, no
/// write) is checked after the device had ample time to do it.
/// </summary>
public class FaultInjectionTests
{
    // Long enough for the model to have done anything it was going to do (it runs as fast as the host allows on the
    // virtual clock); only absences are checked after it, so a slow machine cannot make a test fail.
    private static readonly TimeSpan s_settle = TimeSpan.FromMilliseconds(50);

    [Test]
    public void RemovedDeviceReadsAllOnesDropsWritesAndSendsNothing()
    {
        using var rig = NewRig();
        using var vectors = new Vectors(rig.Model);
        rig.Model.Write64(Fa1Registers.Scratch, 5);
        rig.Model.Inject.RemoveFromBus();
        Assert.Multiple(() =>
        {
            Assert.That(rig.Read(Fa1Registers.Id), Is.EqualTo(Fa1Identity.DeviceLost), "spec 2: ID reads all ones");
            Assert.That(rig.Read(Fa1Registers.Status), Is.EqualTo(ulong.MaxValue));
            Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.EqualTo(ulong.MaxValue));
            Assert.That(rig.Read(0xF000), Is.EqualTo(ulong.MaxValue), "even unimplemented offsets");
        });

        rig.Model.Write64(Fa1Registers.Scratch, 6);
        rig.Submit(0, DmaRig.Nop(tag: 1, flags: DescriptorFlags.Irq));
        rig.Model.Inject.RaiseSpuriousError();
        rig.Model.Inject.RaiseFatal(FatalCause.Internal, 1);
        Assert.That(rig.Model.Inject.GarbageCompletion(0, CompletionRecord.Create(1, CompletionStatus.Ok, true, 0, 0, 0, 0)), Is.False);
        Assert.That(rig.Model.Inject.Garbage(new Random(1)), Is.False);
        Thread.Sleep(s_settle);
        Assert.Multiple(() =>
        {
            Assert.That(vectors.AnySignalled(), Is.False, "no MSI-X from a device off the bus");
            Assert.That(rig.PeekCompletion(0, 0).StatusAndPhase, Is.Zero, "no completion written");
            Assert.That(rig.Model.Inject.Counts, Is.EqualTo(new ModelFaultInjectionCounts(1, 0, 0, 0, 0, 0, 0, 0)), "only the removal took effect");
        });

        rig.Model.Inject.ReturnToBus();
        Assert.That(rig.Read(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue));
        Assert.That(rig.Read(Fa1Registers.Scratch), Is.Zero, "R1: back in its power-on state; the write while off was dropped");
    }

    [Test]
    public void ReturnAfterATimeComesBackInThePowerOnState()
    {
        using var rig = NewRig();
        using var vectors = new Vectors(rig.Model);
        rig.Model.Write64(Fa1Registers.IrqMask, (ulong)InterruptCauses.Fault);
        rig.Run(0, DmaRig.Nop(tag: 1));
        rig.Model.Inject.RemoveFromBus(TimeSpan.FromMilliseconds(20));
        Assert.That(rig.Read(Fa1Registers.Id), Is.EqualTo(Fa1Identity.DeviceLost));

        var watch = Stopwatch.StartNew();
        while (rig.Read(Fa1Registers.Id) != Fa1Identity.IdValue && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(1);
        }

        WaitReady(rig.Model);
        Assert.Multiple(() =>
        {
            Assert.That(rig.Read(Fa1Registers.Id), Is.EqualTo(Fa1Identity.IdValue), "back within 10 s of a 20 ms removal");
            Assert.That(rig.Read(Fa1Registers.Ctrl), Is.Zero, "ENABLE 0");
            Assert.That(rig.Read(Fa1Registers.IrqMask), Is.Zero);
            Assert.That(rig.Read(Fa1Registers.FqLog2), Is.Zero, "fault ring unconfigured");
            Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.SqLog2)), Is.Zero, "queues unconfigured");
            Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.Zero);
            Assert.That(rig.Read(Fa1Registers.Context(0, Fa1Registers.CtxRoot)), Is.Zero, "contexts unconfigured");
            Assert.That(rig.Model.Inject.Counts.Returns, Is.EqualTo(1));
        });

        // Spec 1: a cold reset clears MSI-X enable: the vectors must be connected again before any message arrives.
        rig.Model.Inject.RaiseSpuriousError();
        Assert.That(rig.Read(Fa1Registers.IrqStatus) & (ulong)InterruptCauses.Error, Is.Not.Zero, "the cause still latches");
        Assert.That(vectors.AnySignalled(), Is.False, "R1: vectors disconnected by the power cycle");
        vectors.Connect();
        rig.Model.Inject.RaiseSpuriousError();
        Assert.That(vectors.Error.TryRead(out _), Is.True, "reconnected, messages flow again");
    }

    [Test]
    public void AnotherRemovalCancelsTheEarlierReturnAndDisposeCancelsAPendingOne()
    {
        var rig = NewRig();
        rig.Model.Inject.RemoveFromBus(TimeSpan.FromMilliseconds(30));
        rig.Model.Inject.RemoveFromBus(); // no return this time: the earlier timer must not bring it back
        Thread.Sleep(TimeSpan.FromMilliseconds(150));
        Assert.That(rig.Read(Fa1Registers.Id), Is.EqualTo(Fa1Identity.DeviceLost));
        Assert.That(rig.Model.Inject.Counts.Removals, Is.EqualTo(1), "already off: one removal");

        rig.Model.Inject.RemoveFromBus(TimeSpan.FromMilliseconds(30));
        rig.Dispose();
        Thread.Sleep(TimeSpan.FromMilliseconds(150));
        Assert.That(rig.Model.Inject.Counts.Returns, Is.Zero, "the timer died with the model");
        Assert.That(rig.Model.EngineThreads, Is.Zero);
    }

    [Test]
    public void RemovalMidCommandWritesNothingMorePostsNothingAndFiresNothing()
    {
        using var rig = NewRig();
        using var vectors = new Vectors(rig.Model);
        const ulong length = 64 * 1024;
        var src = rig.MapBuffer(0, length);
        var dst = rig.MapBuffer(0, length);
        rig.Bytes(src.Iova, length).Fill(0xA5);

        // The device leaves the bus while it moves the third page: that page and every later one are never written.
        var accesses = 0;
        rig.Model.DataAccessHook = access =>
        {
            if (access.Write && Interlocked.Increment(ref accesses) == 3)
            {
                rig.Model.Inject.RemoveFromBus();
            }
        };
        rig.Submit(0, DmaRig.Copy(src.Dva, dst.Dva, length, tag: 9, flags: DescriptorFlags.Irq));
        var watch = Stopwatch.StartNew();
        while (rig.Model.IsPresent && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(1);
        }

        Thread.Sleep(s_settle);
        var written = rig.Bytes(dst.Iova, length).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(rig.Model.IsPresent, Is.False);
            Assert.That(written[..8192], Is.All.EqualTo(0xA5), "the pages moved before the removal landed");
            Assert.That(written[8192..], Is.All.EqualTo(0), "R3: nothing written after the removal");
            Assert.That(rig.PeekCompletion(0, 0).StatusAndPhase, Is.Zero, "R2: no completion");
            Assert.That(vectors.AnySignalled(), Is.False, "no MSI-X");
        });

        // The lane that called RemoveFromBus from its own hook could not join itself; the return joins it.
        rig.Model.DataAccessHook = null;
        rig.Model.Inject.ReturnToBus();
        Assert.That(rig.Model.EngineThreads, Is.Zero, "the lost work's engine stopped");
    }

    [Test]
    public void RemovalUnderAStreamOfCommandsLeavesMemoryStillAfterItReturns()
    {
        using var rig = NewRig();
        const ulong length = 256 * 1024;
        var dst = rig.MapBuffer(0, length);
        for (var i = 0; i < 32; i++)
        {
            rig.Submit(0, DmaRig.Fill(dst.Dva, length, 0x0101_0101_0101_0101UL * (ulong)(i + 1), tag: (uint)i));
        }

        rig.Model.Inject.RemoveFromBus();
        var snapshot = rig.Bytes(dst.Iova, length).ToArray();
        Thread.Sleep(s_settle);
        Assert.Multiple(() =>
        {
            Assert.That(rig.Bytes(dst.Iova, length).ToArray(), Is.EqualTo(snapshot), "R3: memory does not change once RemoveFromBus returned");
            Assert.That(rig.Model.EngineThreads, Is.Zero);
        });
    }

    [Test]
    public void StoppedEngineLatchesDoorbellsButConsumesNothingUntilReset()
    {
        using var rig = NewRig();
        rig.ConfigureQueue(1);
        rig.Model.Inject.StopEngine(0);
        rig.Submit(0, DmaRig.Nop(tag: 1), DmaRig.Nop(tag: 2));
        Assert.That(rig.Run(1, DmaRig.Nop(tag: 3)).Tag, Is.EqualTo(3u), "other queues go on");
        Thread.Sleep(s_settle);
        Assert.Multiple(() =>
        {
            Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.SqTail)), Is.EqualTo(2UL), "the doorbell latched");
            Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.SqHead)), Is.Zero, "nothing consumed");
            Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.Zero, "nothing completed");
            Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Zero, "a hang is not FATAL");
            Assert.That(rig.Model.Inject.Counts.EngineStops, Is.EqualTo(1));
        });

        Reset(rig);
        rig.ConfigureQueue(0);
        Assert.That(rig.Run(0, DmaRig.Nop(tag: 4)).Tag, Is.EqualTo(4u), "R4: CTRL.RESET ends the hang");
        Assert.That(() => rig.Model.Inject.StopEngine(8), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("0..7"));
    }

    [Test]
    public void EngineStoppedMidCommandMovesNoMoreDataAndNeverCompletes()
    {
        using var rig = NewRig();
        const ulong length = 64 * 1024;
        var dst = rig.MapBuffer(0, length);
        var accesses = 0;
        rig.Model.DataAccessHook = access =>
        {
            if (Interlocked.Increment(ref accesses) == 2)
            {
                rig.Model.Inject.StopEngine(0);
            }
        };
        rig.Submit(0, DmaRig.Fill(dst.Dva, length, ulong.MaxValue, tag: 1));
        var watch = Stopwatch.StartNew();
        while (Volatile.Read(ref accesses) < 2 && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(1);
        }

        Thread.Sleep(s_settle);
        Assert.Multiple(() =>
        {
            Assert.That(Volatile.Read(ref accesses), Is.EqualTo(2), "no data access after the hang");
            Assert.That(rig.Bytes(dst.Iova, length)[8192..].ToArray(), Is.All.EqualTo(0));
            Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.Zero);
        });

        // R4: the hung lane holds no fence ticket, so a driver's invalidation still completes.
        rig.Model.Write64(Fa1Registers.InvCmd, new InvalidationCommand(0, InvalidationScope.Context).Raw);
        Assert.That(WaitInvDone(rig.Model, 1), Is.EqualTo(1UL));
    }

    [Test]
    public void LostMessagesLeaveIrqStatusLatchedAndLaterOnesArrive()
    {
        using var rig = NewRig();
        using var vectors = new Vectors(rig.Model);
        rig.Model.Inject.LoseInterrupts(1);
        rig.Run(0, DmaRig.Nop(tag: 1, flags: DescriptorFlags.Irq));
        Assert.Multiple(() =>
        {
            Assert.That(vectors.Completion.TryRead(out _), Is.False, "the message was lost");
            Assert.That(rig.Read(Fa1Registers.IrqStatus) & (ulong)InterruptCauses.Completion, Is.Not.Zero, "R5: IRQ_STATUS still latched");
            Assert.That(rig.Model.Inject.Counts.LostInterrupts, Is.EqualTo(1));
        });

        rig.Run(0, DmaRig.Nop(tag: 2, flags: DescriptorFlags.Irq));
        Assert.That(vectors.Completion.TryRead(out _), Is.True, "only the next message was lost");
        Assert.That(() => rig.Model.Inject.LoseInterrupts(-1), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("-1"));
    }

    [Test]
    public void StuckInvalidationsNeverCompleteUntilReset()
    {
        using var rig = NewRig();
        var command = new InvalidationCommand(0, InvalidationScope.Context).Raw;
        rig.Model.Write64(Fa1Registers.InvCmd, command);
        Assert.That(WaitInvDone(rig.Model, 1), Is.EqualTo(1UL), "a healthy fence completes");

        rig.Model.Inject.StickInvalidations();
        rig.Model.Write64(Fa1Registers.InvCmd, command);
        for (var i = 0; i < 100; i++)
        {
            Assert.That(rig.Read(Fa1Registers.InvDone), Is.EqualTo(1UL), "R6: INV_DONE does not advance");
        }

        Thread.Sleep(s_settle);
        Assert.That(rig.Read(Fa1Registers.InvDone), Is.EqualTo(1UL));
        Assert.That(rig.Model.Inject.Counts.StuckInvalidations, Is.EqualTo(1));

        Reset(rig);
        rig.Model.Write64(Fa1Registers.InvCmd, command);
        Assert.That(WaitInvDone(rig.Model, 1), Is.EqualTo(1UL), "reset cleared the count and the fault");
    }

    [TestCase(FatalCause.UnmappedIova, 0x12345u)]
    [TestCase(FatalCause.BadRingConfiguration, 0x2008u)]
    [TestCase(FatalCause.Internal, 7u)]
    public void FatalWithEachCauseLatchesErrorSendsVector2AndStopsTheEngines(FatalCause cause, uint detail)
    {
        using var rig = NewRig();
        using var vectors = new Vectors(rig.Model);
        rig.Model.Inject.RaiseFatal(cause, detail);
        Assert.Multiple(() =>
        {
            Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Not.Zero);
            Assert.That(ErrorRegister.FromRaw(rig.Read(Fa1Registers.Error)), Is.EqualTo(new ErrorRegister(cause, detail)));
            Assert.That(rig.Read(Fa1Registers.IrqStatus) & (ulong)InterruptCauses.Error, Is.Not.Zero);
            Assert.That(vectors.Error.TryRead(out _), Is.True, "vector 2");
        });

        rig.Model.Inject.RaiseFatal(FatalCause.Internal, 99);
        Assert.That(ErrorRegister.FromRaw(rig.Read(Fa1Registers.Error)).Detail, Is.EqualTo(detail), "ERROR keeps the first cause");
        rig.Submit(0, DmaRig.Nop(tag: 1));
        Thread.Sleep(s_settle);
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.Zero, "D10: a FATAL device starts nothing");
        Assert.That(rig.Model.Inject.Counts.Fatals, Is.EqualTo(1));

        Reset(rig);
        Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Zero, "CTRL.RESET clears FATAL");
        Assert.That(() => rig.Model.Inject.RaiseFatal(FatalCause.None, 0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("cause 0"));
    }

    [Test]
    public void FatalMidCommandEndsItWithoutACompletion()
    {
        using var rig = NewRig();
        const ulong length = 64 * 1024;
        var dst = rig.MapBuffer(0, length);
        var accesses = 0;
        rig.Model.DataAccessHook = _ =>
        {
            if (Interlocked.Increment(ref accesses) == 1)
            {
                rig.Model.Inject.RaiseFatal(FatalCause.UnmappedIova, 0x42);
            }
        };
        rig.Submit(0, DmaRig.Fill(dst.Dva, length, 1, tag: 1));
        var watch = Stopwatch.StartNew();
        while (Volatile.Read(ref accesses) == 0 && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(1);
        }

        Thread.Sleep(s_settle);
        Assert.That(rig.Read(Fa1Registers.Queue(0, Fa1Registers.CqTail)), Is.Zero);
        Assert.That(rig.PeekCompletion(0, 0).StatusAndPhase, Is.Zero);
    }

    [Test]
    public void SpuriousErrorRaisesVector2WithStatusClearAndTheDeviceWorks()
    {
        using var rig = NewRig();
        using var vectors = new Vectors(rig.Model);
        rig.Model.Inject.RaiseSpuriousError();
        Assert.Multiple(() =>
        {
            Assert.That(vectors.Error.TryRead(out _), Is.True, "vector 2");
            Assert.That(rig.Read(Fa1Registers.IrqStatus) & (ulong)InterruptCauses.Error, Is.Not.Zero);
            Assert.That(rig.Read(Fa1Registers.Status) & (ulong)StatusBits.Fatal, Is.Zero, "R7: STATUS.FATAL clear");
            Assert.That(rig.Read(Fa1Registers.Error), Is.Zero, "ERROR unchanged");
            Assert.That(rig.Model.Inject.Counts.SpuriousErrors, Is.EqualTo(1));
        });
        Assert.That(rig.Run(0, DmaRig.Nop(tag: 5)).Tag, Is.EqualTo(5u));
    }

    [Test]
    public void PublicGarbageWrappersWriteAsTheInternalHooksDo()
    {
        using var rig = NewRig();
        var record = new FaultRecord { Dva = 0xBAD, Tag = 3, Context = 200, Sequence = 77, Reserved1 = 1 };
        Assert.That(rig.Model.Inject.GarbageFaultRecord(record), Is.True);
        Assert.That(rig.WaitFaultRecord(0), Is.EqualTo(record));
        var completion = CompletionRecord.Create(0xDEAD, (CompletionStatus)0x123, true, 0, 0, 0, 0);
        Assert.That(rig.Model.Inject.GarbageCompletion(0, completion), Is.True);
        Assert.That(rig.PeekCompletion(0, 0), Is.EqualTo(completion));
        Assert.That(rig.Model.Inject.FaultTailJump(500), Is.True);
        Assert.That(rig.Read(Fa1Registers.FqTail), Is.EqualTo(501UL));
        Assert.That(rig.Model.Inject.Counts.Garbage, Is.EqualTo(3));
    }

    [Test]
    public void SeededGarbageIsReproducibleAndAlwaysDetectablyWrong()
    {
        using var a = NewRig();
        using var b = NewRig();
        a.ConfigureQueue(1);
        b.ConfigureQueue(1);
        var rngA = new Random(42);
        var rngB = new Random(42);
        for (var i = 0; i < 20; i++)
        {
            Assert.That(a.Model.Inject.Garbage(rngA), Is.EqualTo(b.Model.Inject.Garbage(rngB)));
        }

        Assert.Multiple(() =>
        {
            foreach (var offset in new[] { Fa1Registers.FqTail, Fa1Registers.Queue(0, Fa1Registers.CqTail), Fa1Registers.Queue(1, Fa1Registers.CqTail) })
            {
                Assert.That(a.Read(offset), Is.EqualTo(b.Read(offset)), $"offset 0x{offset:X}: same seed, same records");
            }

            for (var q = 0; q < 2; q++)
            {
                for (var i = 0UL; i < Math.Min(64UL, a.Read(Fa1Registers.Queue(q, Fa1Registers.CqTail))); i++)
                {
                    Assert.That(a.PeekCompletion(q, i), Is.EqualTo(b.PeekCompletion(q, i)));
                    Assert.That((int)a.PeekCompletion(q, i).Status, Is.GreaterThan((int)CompletionStatus.ContextDisabled), "R8: never a status spec 5 defines");
                }
            }

            var tail = (uint)a.Read(Fa1Registers.FqTail);
            for (var seq = 0u; seq < Math.Min(tail, 64u); seq++)
            {
                var record = a.WaitFaultRecord(seq);
                Assert.That(record.Context >= 16 || record.Sequence != seq, Is.True, "R8: a fault record a driver can tell is garbage");
            }

            Assert.That(a.Model.Inject.Counts.Garbage, Is.GreaterThan(0));
        });
    }

    private static DmaRig NewRig()
    {
        var rig = new DmaRig(ClockMode.Virtual);
        rig.ConfigureQueue(0);
        rig.EnableContext(0);
        rig.ConfigureFaultRing();
        return rig;
    }

    // CTRL.RESET, then wait (bounded) for READY and enable the device again.
    private static void Reset(DmaRig rig)
    {
        rig.Model.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Reset);
        WaitReady(rig.Model);
        rig.Model.Write64(Fa1Registers.Ctrl, (ulong)ControlBits.Enable);
        rig.EnableContext(0);
    }

    private static void WaitReady(Fa1Model model)
    {
        var watch = Stopwatch.StartNew();
        while ((model.Read64(Fa1Registers.Status) & (ulong)StatusBits.Ready) == 0 && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(1);
        }
    }

    private static ulong WaitInvDone(Fa1Model model, ulong count)
    {
        var watch = Stopwatch.StartNew();
        ulong done;
        while ((done = model.Read64(Fa1Registers.InvDone)) < count && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(1);
        }

        return done;
    }

    /// <summary>Three MSI-X eventfds connected to the model, disconnected before they close.</summary>
    private sealed class Vectors : IDisposable
    {
        private readonly Fa1Model _model;

        public Vectors(Fa1Model model)
        {
            _model = model;
            Connect();
        }

        public EventFd Fault { get; } = EventFd.Create();

        public EventFd Completion { get; } = EventFd.Create();

        public EventFd Error { get; } = EventFd.Create();

        public void Connect() => _model.ConnectInterrupts([Fault, Completion, Error]);

        public bool AnySignalled() => Fault.TryRead(out _) | Completion.TryRead(out _) | Error.TryRead(out _);

        public void Dispose()
        {
            _model.DisconnectInterrupts();
            Fault.Dispose();
            Completion.Dispose();
            Error.Dispose();
        }
    }
}
