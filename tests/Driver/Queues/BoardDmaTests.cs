using FpgaAccel.Driver.Backends;
using FpgaAccel.Tests.Driver;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver.Queues;

/// <summary>The DMA behaviour suite on a real FA-1 (FPGAACCEL_DEVICE); skipped with the reason otherwise.</summary>
[Category("Hardware")]
public class BoardDmaTests : DmaTestsBase
{
    [SetUp]
    public void RequireBoard() => HardwareBoard.RequireAddress();

    private protected override IDeviceBackend CreateBackend() => HardwareBoard.OpenBackend();
}
