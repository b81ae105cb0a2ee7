using System.Runtime.InteropServices;

namespace FpgaAccel.Interop.Usb;

/// <summary>
/// The libusb-1.0 library itself: loading it (once; a missing library is a <see cref="UsbLibraryNotFoundException"/>
/// naming the Debian package, not a DllNotFoundException from the first call), its version, and error names.
/// </summary>
public static class UsbLibrary
{
    private static readonly Lazy<Exception?> s_load = new(() => Probe(Interop.Libraries.LibUsb), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>True when libusb-1.0 loads in this process.</summary>
    public static bool IsAvailable => s_load.Value is null;

    /// <summary>Loads libusb (once) or throws <see cref="UsbLibraryNotFoundException"/>.</summary>
    public static void EnsureLoaded()
    {
        if (s_load.Value is { } error)
        {
            throw error;
        }
    }

    /// <summary>libusb's version, e.g. <c>1.0.26.11724</c>.</summary>
    public static unsafe string Version
    {
        get
        {
            EnsureLoaded();
            var v = Interop.LibUsb.libusb_get_version();
            return $"{v->major}.{v->minor}.{v->micro}.{v->nano}";
        }
    }

    /// <summary>
    /// The C name of <paramref name="error"/> (<c>LIBUSB_ERROR_ACCESS</c>), from libusb_error_name when the library is
    /// loaded. The returned pointer is libusb's static string: read, never freed.
    /// </summary>
    public static unsafe string ErrorName(UsbError error)
    {
        if (IsAvailable)
        {
            var name = Interop.LibUsb.libusb_error_name((int)error);
            if (name is not null)
            {
                return Marshal.PtrToStringUTF8((nint)name) ?? FallbackName(error);
            }
        }

        return FallbackName(error);
    }

    /// <summary>libusb's short description of <paramref name="error"/> (libusb_strerror, a static string), or the C name without the library.</summary>
    public static unsafe string Describe(UsbError error)
    {
        if (IsAvailable)
        {
            var text = Interop.LibUsb.libusb_strerror((int)error);
            if (text is not null)
            {
                return Marshal.PtrToStringUTF8((nint)text) ?? FallbackName(error);
            }
        }

        return FallbackName(error);
    }

    /// <summary>
    /// Tries to load <paramref name="soname"/> the way the bindings will (same assembly, same search paths): null
    /// when it loads, else the exception to throw. Tests call it with a name that does not exist.
    /// </summary>
    internal static Exception? Probe(string soname)
    {
        try
        {
            if (NativeLibrary.TryLoad(soname, typeof(UsbLibrary).Assembly, null, out _))
            {
                return null;
            }

            return new UsbLibraryNotFoundException(soname, Interop.Libraries.LibUsbPackage, reason: null);
        }
        catch (Exception ex) when (ex is BadImageFormatException or DllNotFoundException or ArgumentException)
        {
            return new UsbLibraryNotFoundException(soname, Interop.Libraries.LibUsbPackage, ex.Message);
        }
    }

    private static string FallbackName(UsbError error) => error switch
    {
        UsbError.Io => "LIBUSB_ERROR_IO",
        UsbError.InvalidParam => "LIBUSB_ERROR_INVALID_PARAM",
        UsbError.Access => "LIBUSB_ERROR_ACCESS",
        UsbError.NoDevice => "LIBUSB_ERROR_NO_DEVICE",
        UsbError.NotFound => "LIBUSB_ERROR_NOT_FOUND",
        UsbError.Busy => "LIBUSB_ERROR_BUSY",
        UsbError.Timeout => "LIBUSB_ERROR_TIMEOUT",
        UsbError.Overflow => "LIBUSB_ERROR_OVERFLOW",
        UsbError.Pipe => "LIBUSB_ERROR_PIPE",
        UsbError.Interrupted => "LIBUSB_ERROR_INTERRUPTED",
        UsbError.NoMemory => "LIBUSB_ERROR_NO_MEM",
        UsbError.NotSupported => "LIBUSB_ERROR_NOT_SUPPORTED",
        UsbError.Other => "LIBUSB_ERROR_OTHER",
        _ => $"libusb error {(int)error}",
    };
}
