using System.Runtime.InteropServices;

namespace FpgaAccel.Interop.Usb;

/// <summary>
/// Owns a libusb_context. Invalid is NULL. libusb_exit runs once, when the last reference is released: every
/// <see cref="SafeUsbDeviceHandle"/> and <see cref="SafeUsbDeviceList"/> made from it holds one, so the context
/// outlives the handles and lists that use it whatever order they are disposed in.
/// </summary>
internal sealed class SafeUsbContext : SafeHandle
{
    public SafeUsbContext()
        : base(0, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == 0;

    /// <summary>libusb_init; the result is the libusb_error (0 on success) and the handle is valid only then.</summary>
    internal static SafeUsbContext Init(out int result)
    {
        var context = new SafeUsbContext();
        result = Interop.LibUsb.libusb_init(out var raw);
        if (result == Interop.LibUsb.LIBUSB_SUCCESS)
        {
            context.SetHandle(raw);
        }

        return context;
    }

    protected override bool ReleaseHandle()
    {
        Interop.LibUsb.libusb_exit(handle);
        return true;
    }
}

/// <summary>
/// Owns a libusb_device_handle (an open /dev/bus/usb node) and a reference to its context. Invalid is NULL.
/// libusb_close releases the interfaces still claimed through it (the kernel does, when usbfs closes) and drops
/// the reference libusb_open took on the device.
/// </summary>
internal sealed class SafeUsbDeviceHandle : SafeHandle
{
    private SafeUsbContext? _context;

    public SafeUsbDeviceHandle()
        : base(0, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == 0;

    /// <summary>libusb_open on <paramref name="device"/> (valid while its list is held by the caller); the result is the libusb_error.</summary>
    internal static SafeUsbDeviceHandle Open(SafeUsbContext context, nint device, out int result)
    {
        var opened = new SafeUsbDeviceHandle();
        var added = false;
        context.DangerousAddRef(ref added);
        result = Interop.LibUsb.libusb_open(device, out var raw);
        if (result == Interop.LibUsb.LIBUSB_SUCCESS)
        {
            // From here the handle owns the context reference; nothing between the call and SetHandle can throw.
            opened._context = context;
            opened.SetHandle(raw);
        }
        else
        {
            context.DangerousRelease();
        }

        return opened;
    }

    protected override bool ReleaseHandle()
    {
        Interop.LibUsb.libusb_close(handle);
        _context?.DangerousRelease();
        return true;
    }
}

/// <summary>
/// Owns a device list from libusb_get_device_list and a reference to its context. The libusb_device pointers in it
/// stay valid while this is held: callers hold it (DangerousAddRef) around every call that takes one.
/// </summary>
internal sealed class SafeUsbDeviceList : SafeHandle
{
    private SafeUsbContext? _context;

    public SafeUsbDeviceList()
        : base(0, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == 0;

    /// <summary>libusb_get_device_list; <paramref name="count"/> is the number of devices, or a negative libusb_error.</summary>
    internal static SafeUsbDeviceList Get(SafeUsbContext context, out long count)
    {
        var list = new SafeUsbDeviceList();
        var added = false;
        context.DangerousAddRef(ref added);
        count = Interop.LibUsb.libusb_get_device_list(context, out var raw);
        if (count >= 0 && raw != 0)
        {
            list._context = context;
            list.SetHandle(raw);
        }
        else
        {
            context.DangerousRelease();
        }

        return list;
    }

    protected override bool ReleaseHandle()
    {
        Interop.LibUsb.libusb_free_device_list(handle, unref_devices: 1);
        _context?.DangerousRelease();
        return true;
    }
}
