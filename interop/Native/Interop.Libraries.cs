namespace FpgaAccel.Interop;

/// <summary>
/// The C bindings, one nested class per native library and one function per file
/// (the dotnet/runtime layout). C names stay inside this folder; the managed
/// wrappers above it use .NET names.
/// </summary>
internal static partial class Interop
{
    /// <summary>Library names, in one place.</summary>
    internal static class Libraries
    {
        internal const string Libc = "libc";
    }
}
