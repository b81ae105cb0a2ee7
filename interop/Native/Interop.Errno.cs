using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>
        /// Reads errno for the call that just failed and throws it as a typed exception.
        /// Call it immediately after the failing call, before anything else can touch errno.
        /// </summary>
        internal static SystemCallException Error(string call) =>
            SystemCallException.FromErrno(call, Marshal.GetLastPInvokeError());

        /// <summary>Returns <paramref name="result"/> or throws for a failed call (-1).</summary>
        internal static int Check(int result, string call)
        {
            if (result < 0)
            {
                throw Error(call);
            }

            return result;
        }

        /// <summary>Same as <see cref="Check(int, string)"/> for calls that return ssize_t.</summary>
        internal static long Check(long result, string call)
        {
            if (result < 0)
            {
                throw Error(call);
            }

            return result;
        }
    }
}
