using FpgaAccel.Interop.Usb;

namespace FpgaAccel.Management.Ftdi;

/// <summary>
/// The USB operations the FTDI link needs from an open device: the seam between <see cref="FtdiSerialLink"/> and
/// libusb, so the framing, timeouts and the claim/release lifecycle are tested on a host without USB.
/// </summary>
internal interface IFtdiUsb : IDisposable
{
    bool IsKernelDriverActive(int interfaceNumber);

    string? KernelDriverOf(int interfaceNumber);

    void DetachKernelDriver(int interfaceNumber);

    void AttachKernelDriver(int interfaceNumber);

    void ClaimInterface(int interfaceNumber);

    void ReleaseInterface(int interfaceNumber);

    int ControlTransfer(UsbControlSetup setup, Span<byte> data, TimeSpan timeout);

    UsbBulkResult BulkRead(byte endpoint, Span<byte> buffer, TimeSpan timeout);

    UsbBulkResult BulkWrite(byte endpoint, ReadOnlySpan<byte> data, TimeSpan timeout);
}

/// <summary>The real one: an open libusb device and the session it belongs to, both closed on dispose.</summary>
internal sealed class LibUsbFtdiUsb(UsbContext context, UsbDeviceHandle handle) : IFtdiUsb
{
    public bool IsKernelDriverActive(int interfaceNumber) => handle.IsKernelDriverActive(interfaceNumber);

    public string? KernelDriverOf(int interfaceNumber) => handle.KernelDriverOf(interfaceNumber);

    public void DetachKernelDriver(int interfaceNumber) => handle.DetachKernelDriver(interfaceNumber);

    public void AttachKernelDriver(int interfaceNumber) => handle.AttachKernelDriver(interfaceNumber);

    public void ClaimInterface(int interfaceNumber) => handle.ClaimInterface(interfaceNumber);

    public void ReleaseInterface(int interfaceNumber) => handle.ReleaseInterface(interfaceNumber);

    public int ControlTransfer(UsbControlSetup setup, Span<byte> data, TimeSpan timeout) => handle.ControlTransfer(setup, data, timeout);

    public UsbBulkResult BulkRead(byte endpoint, Span<byte> buffer, TimeSpan timeout) => handle.BulkRead(endpoint, buffer, timeout);

    public UsbBulkResult BulkWrite(byte endpoint, ReadOnlySpan<byte> data, TimeSpan timeout) => handle.BulkWrite(endpoint, data, timeout);

    public void Dispose()
    {
        handle.Dispose();
        context.Dispose();
    }
}
