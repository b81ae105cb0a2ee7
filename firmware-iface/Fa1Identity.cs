namespace FpgaAccel.FirmwareInterface;

/// <summary>Spec 1 and 3: how an FA-1 identifies itself.</summary>
public static class Fa1Identity
{
    /// <summary>Default PCI vendor ID (spec 1). A lab bitstream may differ: it is an option, not a constant.</summary>
    public const ushort DefaultVendorId = 0x10EE;

    /// <summary>Default PCI device ID (spec 1).</summary>
    public const ushort DefaultDeviceId = 0xFA01;

    /// <summary>PCI base class: processing accelerator.</summary>
    public const byte PciClass = 0x12;

    /// <summary>Value of the ID register (spec 3).</summary>
    public const ulong IdValue = 0x0000_0000_FA01_ACCE;

    /// <summary>What every read returns once the device has dropped off the bus (spec 2).</summary>
    public const ulong DeviceLost = ulong.MaxValue;

    /// <summary>Size of BAR0 in bytes (spec 1).</summary>
    public const ulong Bar0Size = 64 * 1024;

    /// <summary>Number of MSI-X vectors (spec 1).</summary>
    public const int MsixVectors = 3;

    /// <summary>The BAR that holds the MSI-X table and its pending-bit array (spec 1): BAR2, nothing of it in BAR0.</summary>
    public const int MsixBar = 2;

    /// <summary>Size of the MSI-X BAR in bytes (spec 1).</summary>
    public const ulong MsixBarSize = 4096;

    /// <summary>Offset of the MSI-X table in its BAR (spec 1).</summary>
    public const uint MsixTableOffset = 0x000;

    /// <summary>Offset of the MSI-X pending-bit array in its BAR (spec 1).</summary>
    public const uint MsixPbaOffset = 0x800;
}
