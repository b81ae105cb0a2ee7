using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Tests.Support;

/// <summary>Reports FQ_TAIL as 0 while <see cref="HideTail"/> is set: the fault service sees no record arrive, so the records wait in the ring.</summary>
internal sealed class TailHidingBackend(IDeviceBackend inner, bool hideTail = false) : DelegatingBackend(inner)
{
    public bool HideTail { get; set; } = hideTail;

    public override ulong Read64(uint offset) => HideTail && offset == Fa1Registers.FqTail ? 0 : base.Read64(offset);
}
