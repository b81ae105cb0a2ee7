using FpgaAccel.Driver.Backends;
using FpgaAccel.Interop;

namespace FpgaAccel.Tests.Support;

/// <summary>
/// A backend that forwards every call to another one. Tests derive from it to watch, delay, refuse or
/// forge what crosses the seam (a device that cannot be trusted, a kernel stricter than the model),
/// overriding only the calls they care about.
/// </summary>
internal class DelegatingBackend(IDeviceBackend inner) : IDeviceBackend
{
    /// <summary>The backend calls are forwarded to.</summary>
    public IDeviceBackend Inner { get; } = inner;

    public virtual BackendKind Kind => Inner.Kind;

    public virtual string Description => Inner.Description;

    public virtual IReadOnlyList<IovaRange> IovaRanges => Inner.IovaRanges;

    public IDeviceOracle? Oracle => Inner.Oracle;

    public IDeviceFaultInjection? FaultInjection => Inner.FaultInjection;

    public virtual bool PinsChargedOncePerAddressSpace => Inner.PinsChargedOncePerAddressSpace;

    public virtual ulong Read64(uint offset) => Inner.Read64(offset);

    public virtual void Write64(uint offset, ulong value) => Inner.Write64(offset, value);

    public virtual int ConnectInterrupts(IReadOnlyList<EventFd> vectors) => Inner.ConnectInterrupts(vectors);

    public virtual void DisconnectInterrupts() => Inner.DisconnectInterrupts();

    public virtual void RestoreFunction() => Inner.RestoreFunction();

    public virtual void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access) => Inner.MapDma(iova, hostAddress, length, access);

    public virtual ulong UnmapDma(ulong iova, ulong length) => Inner.UnmapDma(iova, length);

    public virtual void Dispose() => Inner.Dispose();
}
