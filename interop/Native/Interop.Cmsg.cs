namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // The sys/socket.h (bits/socket.h) ancillary-data macros, as functions: an ancillary message is a cmsghdr
        // followed by its data, each padded to the alignment of size_t. VfioLayoutTests compiles CMSG_LEN and
        // CMSG_SPACE for several lengths and compares them with these.
#pragma warning disable IDE1006 // C names stay C names in interop.

        /// <summary>CMSG_ALIGN: <paramref name="length"/> rounded up to a multiple of sizeof(size_t).</summary>
        internal static nuint CMSG_ALIGN(nuint length) => (length + (nuint)nuint.Size - 1) & ~((nuint)nuint.Size - 1);

        /// <summary>CMSG_LEN: cmsg_len of an ancillary message carrying <paramref name="length"/> bytes of data.</summary>
        internal static unsafe nuint CMSG_LEN(nuint length) => CMSG_ALIGN((nuint)sizeof(cmsghdr)) + length;

        /// <summary>CMSG_SPACE: bytes an ancillary message carrying <paramref name="length"/> bytes of data takes in a control buffer.</summary>
        internal static unsafe nuint CMSG_SPACE(nuint length) => CMSG_ALIGN((nuint)sizeof(cmsghdr)) + CMSG_ALIGN(length);
#pragma warning restore IDE1006
    }
}
