using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Tests.Driver;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Faults;

/// <summary>The fault suite on a real FA-1 (FPGAACCEL_DEVICE), both wait modes; skipped with the reason otherwise.</summary>
[Category("Hardware")]
[TestFixture(FaultWaitMode.Block)]
[TestFixture(FaultWaitMode.Adaptive)]
public class BoardFaultServiceTests : FaultServiceTestsBase
{
    public BoardFaultServiceTests(FaultWaitMode mode)
        : base(mode)
    {
    }

    [SetUp]
    public void RequireBoard() => HardwareBoard.RequireAddress();

    private protected override IDeviceBackend CreateBackend() => HardwareBoard.OpenBackend();
}
