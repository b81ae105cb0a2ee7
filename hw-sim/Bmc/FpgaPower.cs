namespace FpgaAccel.HwSim.Bmc;

/// <summary>
/// What the BMC's RESET acts on: the FPGA's PCIe device leaving the bus (every read all ones, writes lost, spec 2)
/// and coming back as after a cold reset. <see cref="FpgaPower.Of"/> wires it to an <see cref="Fa1Model"/>, including one a
/// front end (a vfio-user server) serves; a front end that must also tell its client can wrap that one.
/// </summary>
public interface IFpgaPower
{
    /// <summary>The device drops off the bus.</summary>
    void DropOffBus();

    /// <summary>The device comes back, in its reset state.</summary>
    void ReturnToBus();
}

/// <summary>The <see cref="IFpgaPower"/> of the FA-1 model.</summary>
public static class FpgaPower
{
    /// <summary>RESET of the BMC wired to <paramref name="model"/>: it reads all ones while off, then comes back reset (spec 8).</summary>
    public static IFpgaPower Of(Fa1Model model) => new ModelPower(model);

    private sealed class ModelPower(Fa1Model model) : IFpgaPower
    {
        public void DropOffBus() => model.Inject.RemoveFromBus();

        public void ReturnToBus() => model.Inject.ReturnToBus();
    }
}
