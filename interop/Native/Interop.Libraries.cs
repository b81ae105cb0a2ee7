namespace FpgaAccel.Interop;

/// <summary>
/// The C bindings, one nested class per native library and one function (or one small family, such as
/// epoll_* or mmap/munmap) per file, as in dotnet/runtime. C names stay inside this folder; the managed
/// wrappers above it use .NET names. Descriptors are passed as <see cref="SafeFileDescriptor"/> (the marshaller
/// holds a reference for the call) and returned as one (invalid on failure); a failed call's errno is read
/// once, by <see cref="Libc.LastErrno"/>, and thrown by <see cref="Libc.Error"/> or <c>Libc.Check</c>.
/// </summary>
internal static partial class Interop
{
    /// <summary>Library names, in one place.</summary>
    internal static class Libraries
    {
        internal const string Libc = "libc";

        /// <summary>
        /// libusb-1.0 by its soname, as Debian's libusb-1.0-0 installs it. The bare name would make the runtime
        /// probe libusb-1.0.so, which only the -dev package provides.
        /// </summary>
        internal const string LibUsb = "libusb-1.0.so.0";

        /// <summary>The Debian package that installs <see cref="LibUsb"/>, for the error when it is missing.</summary>
        internal const string LibUsbPackage = "libusb-1.0-0";
    }
}
