namespace FpgaAccel.Interop;

/// <summary>Users, ownership and access checks: what setting up a device node for a user needs.</summary>
public static unsafe class UnixAccounts
{
    /// <summary>geteuid(): 0 means root.</summary>
    public static uint EffectiveUserId => Interop.Libc.geteuid();

    /// <summary>getpwnam(): the user's uid and primary gid, or false when there is no such user.</summary>
    public static bool TryGetUser(string name, out uint userId, out uint groupId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var entry = Interop.Libc.getpwnam(name);
        if (entry is null)
        {
            userId = groupId = 0;
            return false;
        }

        userId = entry->pw_uid;
        groupId = entry->pw_gid;
        return true;
    }

    /// <summary>chown(): gives <paramref name="path"/> to <paramref name="userId"/>:<paramref name="groupId"/>.</summary>
    public static void ChangeOwner(string path, uint userId, uint groupId) =>
        Interop.Libc.Check(Interop.Libc.chown(path, userId, groupId), $"chown({path})");

    /// <summary>access(R_OK | W_OK): whether this process may open <paramref name="path"/> read-write.</summary>
    public static bool CanReadWrite(string path) => Interop.Libc.access(path, Interop.Libc.R_OK | Interop.Libc.W_OK) == 0;
}
