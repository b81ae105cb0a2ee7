namespace FpgaAccel.Interop.Usb;

/// <summary>
/// An open USB device (libusb_device_handle): kernel-driver detach and attach, interface claim and release,
/// control and bulk transfers, each with a timeout. Every wait is bounded: a timeout must be positive and finite
/// (libusb takes 0 to mean forever, which is never passed). Synchronous transfers on one handle may run on
/// several threads (libusb serialises its event handling), but a caller that needs request/reply order keeps
/// its own lock.
/// </summary>
public sealed class UsbDeviceHandle : IDisposable
{
    private readonly SafeUsbDeviceHandle _handle;

    internal UsbDeviceHandle(SafeUsbDeviceHandle handle, UsbDeviceDescriptor descriptor, UsbLocation location)
    {
        _handle = handle;
        Descriptor = descriptor;
        Location = location;
    }

    /// <summary>The device descriptor.</summary>
    public UsbDeviceDescriptor Descriptor { get; }

    /// <summary>Where the device sits.</summary>
    public UsbLocation Location { get; }

    /// <summary>Where sysfs is mounted, for naming the kernel driver in errors; tests and chroots change it.</summary>
    public string SysfsRoot { get; init; } = "/sys";

    /// <summary>True when a kernel driver is bound to interface <paramref name="interfaceNumber"/> (libusb_kernel_driver_active).</summary>
    public bool IsKernelDriverActive(int interfaceNumber) =>
        UsbErrors.Check(Interop.LibUsb.libusb_kernel_driver_active(_handle, interfaceNumber), "libusb_kernel_driver_active", Subject(interfaceNumber)) == 1;

    /// <summary>Unbinds the kernel driver from the interface (libusb_detach_kernel_driver), so it can be claimed.</summary>
    public void DetachKernelDriver(int interfaceNumber)
    {
        var subject = Subject(interfaceNumber, withDriver: true);
        UsbErrors.Check(Interop.LibUsb.libusb_detach_kernel_driver(_handle, interfaceNumber), "libusb_detach_kernel_driver", subject);
    }

    /// <summary>Binds the kernel driver to the interface again (libusb_attach_kernel_driver): /dev/ttyUSBn comes back for ftdi_sio.</summary>
    public void AttachKernelDriver(int interfaceNumber) =>
        UsbErrors.Check(Interop.LibUsb.libusb_attach_kernel_driver(_handle, interfaceNumber), "libusb_attach_kernel_driver", Subject(interfaceNumber));

    /// <summary>Claims the interface for this process (libusb_claim_interface); LIBUSB_ERROR_BUSY names the driver or process holding it.</summary>
    public void ClaimInterface(int interfaceNumber)
    {
        var result = Interop.LibUsb.libusb_claim_interface(_handle, interfaceNumber);
        if (result < 0)
        {
            throw UsbErrors.From("libusb_claim_interface", result, Subject(interfaceNumber, withDriver: result == Interop.LibUsb.LIBUSB_ERROR_BUSY));
        }
    }

    /// <summary>Releases a claimed interface (libusb_release_interface).</summary>
    public void ReleaseInterface(int interfaceNumber) =>
        UsbErrors.Check(Interop.LibUsb.libusb_release_interface(_handle, interfaceNumber), "libusb_release_interface", Subject(interfaceNumber));

    /// <summary>
    /// A control transfer: <paramref name="data"/> is sent (host to device) or filled (device to host, as the
    /// direction bit of <see cref="UsbControlSetup.RequestType"/> says). Returns the bytes transferred. A stall is
    /// <see cref="UsbError.Pipe"/>, a timeout <see cref="UsbError.Timeout"/>.
    /// </summary>
    public unsafe int ControlTransfer(UsbControlSetup setup, Span<byte> data, TimeSpan timeout)
    {
        if (data.Length > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(data), data.Length, "A control transfer carries at most 65535 bytes (wLength is 16 bits).");
        }

        var ms = Milliseconds(timeout);
        fixed (byte* p = data)
        {
            var result = Interop.LibUsb.libusb_control_transfer(_handle, setup.RequestType, setup.Request, setup.Value, setup.Index, p, (ushort)data.Length, ms);
            return UsbErrors.Check(result, $"libusb_control_transfer(request 0x{setup.Request:x2}, value 0x{setup.Value:x4}, index 0x{setup.Index:x4})", Subject(null));
        }
    }

    /// <summary>
    /// Reads from bulk IN <paramref name="endpoint"/> into <paramref name="buffer"/> for at most <paramref name="timeout"/>.
    /// A timeout is not an error: the result says it happened and how many bytes arrived before it (keep them).
    /// Size the buffer to whole packets, or a long packet overflows (<see cref="UsbError.Overflow"/>).
    /// </summary>
    public unsafe UsbBulkResult BulkRead(byte endpoint, Span<byte> buffer, TimeSpan timeout)
    {
        if ((endpoint & Interop.LibUsb.LIBUSB_ENDPOINT_DIR_MASK) != Interop.LibUsb.LIBUSB_ENDPOINT_IN)
        {
            throw new ArgumentOutOfRangeException(nameof(endpoint), $"0x{endpoint:x2}", "A bulk read needs an IN endpoint (bit 7 set).");
        }

        fixed (byte* p = buffer)
        {
            return Bulk(endpoint, p, buffer.Length, timeout);
        }
    }

    /// <summary>
    /// Writes <paramref name="data"/> to bulk OUT <paramref name="endpoint"/> for at most <paramref name="timeout"/>; on a
    /// timeout the result says how many bytes went out before it.
    /// </summary>
    public unsafe UsbBulkResult BulkWrite(byte endpoint, ReadOnlySpan<byte> data, TimeSpan timeout)
    {
        if ((endpoint & Interop.LibUsb.LIBUSB_ENDPOINT_DIR_MASK) != Interop.LibUsb.LIBUSB_ENDPOINT_OUT)
        {
            throw new ArgumentOutOfRangeException(nameof(endpoint), $"0x{endpoint:x2}", "A bulk write needs an OUT endpoint (bit 7 clear).");
        }

        // libusb does not write through the pointer of an OUT transfer.
        fixed (byte* p = data)
        {
            return Bulk(endpoint, p, data.Length, timeout);
        }
    }

    /// <summary>The kernel driver bound to interface <paramref name="interfaceNumber"/>, read from sysfs (null: none, or sysfs does not say).</summary>
    public string? KernelDriverOf(int interfaceNumber) => UsbSysfs.InterfaceDriver(SysfsRoot, Location, interfaceNumber);

    /// <summary>Closes the device (libusb_close); interfaces still claimed are released by the kernel.</summary>
    public void Dispose() => _handle.Dispose();

    /// <summary>libusb timeouts are unsigned milliseconds where 0 means forever: round up, and refuse an unbounded wait.</summary>
    internal static uint Milliseconds(TimeSpan timeout)
    {
        if (timeout <= TimeSpan.Zero || timeout == Timeout.InfiniteTimeSpan || timeout.TotalMilliseconds > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "A USB transfer timeout must be positive and finite (at most 24 days); libusb would wait forever on 0.");
        }

        return (uint)Math.Max(1, Math.Ceiling(timeout.TotalMilliseconds));
    }

    private unsafe UsbBulkResult Bulk(byte endpoint, byte* data, int length, TimeSpan timeout)
    {
        var ms = Milliseconds(timeout);
        var result = Interop.LibUsb.libusb_bulk_transfer(_handle, endpoint, data, length, out var transferred, ms);
        if (result == Interop.LibUsb.LIBUSB_ERROR_TIMEOUT)
        {
            return new UsbBulkResult(transferred, TimedOut: true);
        }

        UsbErrors.Check(result, $"libusb_bulk_transfer(endpoint 0x{endpoint:x2})", Subject(null));
        return new UsbBulkResult(transferred, TimedOut: false);
    }

    private UsbErrorSubject Subject(int? interfaceNumber, bool withDriver = false) =>
        new(Descriptor.Id, Location, interfaceNumber, withDriver && interfaceNumber is { } n ? KernelDriverOf(n) : null);
}
