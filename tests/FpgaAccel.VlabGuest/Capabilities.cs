using System.Runtime.InteropServices;

namespace FpgaAccel.VlabGuest;

/// <summary>
/// Drops CAP_IPC_LOCK from this process. The guest runs as root, and VFIO type1 does not count
/// pinned pages against RLIMIT_MEMLOCK for a task that holds CAP_IPC_LOCK
/// (vfio_iommu_type1.c: <c>dma->lock_cap = capable(CAP_IPC_LOCK)</c>); without it the kernel
/// enforces the limit as it does for the unprivileged users the driver runs as on a lab machine.
/// This is the guest's own test machinery (capabilities are no part of the VFIO layer), hence the
/// two calls are declared here and not in interop/.
/// </summary>
internal static partial class Capabilities
{
    // linux/capability.h
    private const uint LinuxCapabilityVersion3 = 0x20080522;
    private const int CapIpcLock = 14;

    public static void DropIpcLock()
    {
        var header = new CapUserHeader { Version = LinuxCapabilityVersion3, Pid = 0 };
        Span<CapUserData> data = stackalloc CapUserData[2];
        if (CapGet(ref header, ref data[0]) != 0)
        {
            throw new InvalidOperationException($"capget: errno {Marshal.GetLastPInvokeError()}");
        }

        // Capabilities 0-31 are in data[0]; clearing the permitted bit makes the drop permanent.
        data[0].Effective &= ~(1u << CapIpcLock);
        data[0].Permitted &= ~(1u << CapIpcLock);
        data[0].Inheritable &= ~(1u << CapIpcLock);
        if (CapSet(ref header, ref data[0]) != 0)
        {
            throw new InvalidOperationException($"capset: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc", EntryPoint = "capget", SetLastError = true)]
    private static partial int CapGet(ref CapUserHeader header, ref CapUserData data);

    [LibraryImport("libc", EntryPoint = "capset", SetLastError = true)]
    private static partial int CapSet(ref CapUserHeader header, ref CapUserData data);

    [StructLayout(LayoutKind.Sequential)]
    private struct CapUserHeader
    {
        public uint Version;
        public int Pid;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct CapUserData
    {
        public uint Effective;
        public uint Permitted;
        public uint Inheritable;
    }
}
