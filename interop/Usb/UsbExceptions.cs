namespace FpgaAccel.Interop.Usb;

/// <summary>
/// A libusb call failed. The message names the call and what it acted on, the libusb error by its C name and
/// libusb's description, then the fix: <c>libusb_open(/dev/bus/usb/001/002, 0403:6010): LIBUSB_ERROR_ACCESS
/// (Access denied (insufficient permissions)). This user may not open ...</c>.
/// </summary>
public sealed class UsbException : IOException
{
    /// <summary>A failure of <paramref name="call"/> with <paramref name="error"/>; <paramref name="fix"/> says what to do.</summary>
    internal UsbException(string call, UsbError error, string fix)
        : base($"{call}: {UsbLibrary.ErrorName(error)} ({UsbLibrary.Describe(error)}). {fix}")
    {
        Call = call;
        Error = error;
        Fix = fix;
        HResult = (int)error;
    }

    /// <summary>The libusb call and what it acted on, e.g. <c>libusb_claim_interface(1-1, interface 1)</c>.</summary>
    public string Call { get; }

    /// <summary>The libusb error.</summary>
    public UsbError Error { get; }

    /// <summary>The C name of the error, e.g. <c>LIBUSB_ERROR_BUSY</c>.</summary>
    public string ErrorName => UsbLibrary.ErrorName(Error);

    /// <summary>What to do about it.</summary>
    public string Fix { get; }
}

/// <summary>The libusb-1.0 shared library could not be loaded; the message names the soname and the Debian package.</summary>
public sealed class UsbLibraryNotFoundException : IOException
{
    /// <summary>Loading <paramref name="soname"/> failed; <paramref name="reason"/> is the loader's own words.</summary>
    internal UsbLibraryNotFoundException(string soname, string package, string? reason)
        : base($"{soname} could not be loaded{(string.IsNullOrWhiteSpace(reason) ? "" : $" ({reason.Trim()})")}: USB access needs libusb-1.0. " +
               $"Install Debian package {package} ('apt-get install {package}'); in a minimal image (an initramfs, a container) copy " +
               $"{soname} and libudev.so.1, which it loads, into the library path (the program loads them at run time, so ldd does not list them).")
    {
        Soname = soname;
        Package = package;
    }

    /// <summary>The soname that was looked for.</summary>
    public string Soname { get; }

    /// <summary>The Debian package that installs it.</summary>
    public string Package { get; }
}
