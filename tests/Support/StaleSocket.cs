using System.Net.Sockets;

namespace FpgaAccel.Tests.Support;

/// <summary>A Unix socket file nothing listens on, as a killed server leaves it.</summary>
internal static class StaleSocket
{
    /// <summary>
    /// Binds a socket at a side name and renames the file to <paramref name="path"/> before closing the socket: .NET
    /// removes the file of a bound Unix socket when the socket is disposed, a killed process does not.
    /// </summary>
    public static void Create(string path)
    {
        var side = path + ".binding";
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(side));
        File.Move(side, path);
    }
}
