namespace FpgaAccel.Interop.Usb;

/// <summary>
/// A libusb session (libusb_init). Everything made from it (device lists, open devices) keeps it alive, so
/// disposing it first is safe: libusb_exit runs when the last of them is gone.
/// </summary>
public sealed class UsbContext : IDisposable
{
    private readonly SafeUsbContext _handle;

    private UsbContext(SafeUsbContext handle) => _handle = handle;

    /// <summary>
    /// Loads libusb and starts a session. Throws <see cref="UsbLibraryNotFoundException"/> when the library is
    /// missing and <see cref="UsbException"/> when libusb_init fails (no usbfs, say). libusb reads LIBUSB_DEBUG from
    /// the environment for its own log level (libusb_set_option is variadic and not bound).
    /// </summary>
    public static UsbContext Create()
    {
        UsbLibrary.EnsureLoaded();
        var handle = SafeUsbContext.Init(out var result);
        if (result != Interop.LibUsb.LIBUSB_SUCCESS)
        {
            handle.Dispose();
            throw UsbErrors.From("libusb_init", result, new UsbErrorSubject());
        }

        return new UsbContext(handle);
    }

    /// <summary>Every device on every bus now (libusb_get_device_list), with their descriptors and locations read.</summary>
    public UsbDeviceList GetDevices()
    {
        var list = SafeUsbDeviceList.Get(_handle, out var count);
        if (count < 0)
        {
            list.Dispose();
            throw UsbErrors.From("libusb_get_device_list", (int)count, new UsbErrorSubject());
        }

        return new UsbDeviceList(_handle, list, count);
    }

    /// <summary>Ends this reference to the session; libusb_exit follows once no list or open device uses it.</summary>
    public void Dispose() => _handle.Dispose();
}
