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
    }
}
