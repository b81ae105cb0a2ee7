using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>
        /// The errno of the call that just failed: the one place errno is read. Call it right after the failing
        /// call, on the same thread, before any other P/Invoke: the generated stub (SetLastError = true) saved errno
        /// when the call returned, and the next stub with SetLastError overwrites it.
        /// </summary>
        internal static Errno LastErrno() => (Errno)Marshal.GetLastPInvokeError();

        /// <summary>
        /// The typed exception for the call that just failed (errno read once, by <see cref="LastErrno"/>).
        /// <paramref name="call"/> is the C name, with what it acted on in parentheses where that helps: <c>read(eventfd)</c>.
        /// </summary>
        internal static SystemCallException Error(string call, string? detail = null) =>
            SystemCallException.FromErrno(call, LastErrno(), detail);

        /// <summary>Returns <paramref name="result"/>, or throws for a failed call (a negative int result, -1 in C).</summary>
        internal static int Check(int result, string call) => result < 0 ? throw Error(call) : result;

        /// <summary>Same as <see cref="Check(int, string)"/> for calls that return ssize_t.</summary>
        internal static nint Check(nint result, string call) => result < 0 ? throw Error(call) : result;

        /// <summary>
        /// Returns the descriptor a call opened, or throws for a failed call (the marshaller wraps the C -1 in an
        /// invalid handle, which is disposed here so nothing is left to finalize).
        /// </summary>
        internal static SafeFileDescriptor Check(SafeFileDescriptor fd, string call)
        {
            if (fd.IsInvalid)
            {
                var error = Error(call);
                fd.Dispose();
                throw error;
            }

            return fd;
        }
    }
}
