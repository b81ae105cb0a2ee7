namespace FpgaAccel.Interop;

/// <summary>
/// PCI configuration space offsets and bits (linux/pci_regs.h), for code that reads a function's config space or,
/// like a vfio-user server, presents one. The values are the header-checked <c>Interop.Pci</c> constants.
/// </summary>
public static class PciConfigRegisters
{
    /// <summary>Bytes of a conventional function's config space.</summary>
    public const int ConventionalSize = Interop.Pci.PCI_CFG_SPACE_SIZE;

    /// <summary>u16 vendor ID.</summary>
    public const int VendorId = Interop.Pci.PCI_VENDOR_ID;

    /// <summary>u16 device ID.</summary>
    public const int DeviceId = Interop.Pci.PCI_DEVICE_ID;

    /// <summary>u16 command register.</summary>
    public const int Command = Interop.Pci.PCI_COMMAND;

    /// <summary>u16 status register.</summary>
    public const int Status = Interop.Pci.PCI_STATUS;

    /// <summary>u8 revision ID.</summary>
    public const int RevisionId = Interop.Pci.PCI_REVISION_ID;

    /// <summary>u8 programming interface (the low byte of the class code).</summary>
    public const int ClassProgrammingInterface = Interop.Pci.PCI_CLASS_PROG;

    /// <summary>u16 class and subclass (the high two bytes of the class code).</summary>
    public const int ClassDevice = Interop.Pci.PCI_CLASS_DEVICE;

    /// <summary>u8 cache line size.</summary>
    public const int CacheLineSize = Interop.Pci.PCI_CACHE_LINE_SIZE;

    /// <summary>u8 header type (0: a device function).</summary>
    public const int HeaderType = Interop.Pci.PCI_HEADER_TYPE;

    /// <summary>u32 BAR0; BAR n is at this plus 4 n.</summary>
    public const int BaseAddress0 = Interop.Pci.PCI_BASE_ADDRESS_0;

    /// <summary>u16 subsystem vendor ID.</summary>
    public const int SubsystemVendorId = Interop.Pci.PCI_SUBSYSTEM_VENDOR_ID;

    /// <summary>u16 subsystem ID.</summary>
    public const int SubsystemId = Interop.Pci.PCI_SUBSYSTEM_ID;

    /// <summary>u32 expansion ROM BAR.</summary>
    public const int RomAddress = Interop.Pci.PCI_ROM_ADDRESS;

    /// <summary>u8 offset of the first capability.</summary>
    public const int CapabilityList = Interop.Pci.PCI_CAPABILITY_LIST;

    /// <summary>u8 interrupt line (written by the host).</summary>
    public const int InterruptLine = Interop.Pci.PCI_INTERRUPT_LINE;

    /// <summary>u8 interrupt pin (0: no INTx).</summary>
    public const int InterruptPin = Interop.Pci.PCI_INTERRUPT_PIN;

    /// <summary>Command: I/O space decoding.</summary>
    public const ushort CommandIo = Interop.Pci.PCI_COMMAND_IO;

    /// <summary>Command: memory space decoding (the BARs answer).</summary>
    public const ushort CommandMemory = Interop.Pci.PCI_COMMAND_MEMORY;

    /// <summary>Command: bus master (the function may issue DMA).</summary>
    public const ushort CommandBusMaster = Interop.Pci.PCI_COMMAND_MASTER;

    /// <summary>Command: parity error response.</summary>
    public const ushort CommandParity = Interop.Pci.PCI_COMMAND_PARITY;

    /// <summary>Command: SERR# enable.</summary>
    public const ushort CommandSerr = Interop.Pci.PCI_COMMAND_SERR;

    /// <summary>Command: INTx emulation disabled.</summary>
    public const ushort CommandIntxDisable = Interop.Pci.PCI_COMMAND_INTX_DISABLE;

    /// <summary>Status: the function has a capability list.</summary>
    public const ushort StatusCapabilityList = Interop.Pci.PCI_STATUS_CAP_LIST;

    /// <summary>Memory BAR type bits: a 64-bit BAR (it takes two BAR registers).</summary>
    public const uint BarMemoryType64 = Interop.Pci.PCI_BASE_ADDRESS_MEM_TYPE_64;

    /// <summary>Memory BAR bit: prefetchable.</summary>
    public const uint BarMemoryPrefetchable = Interop.Pci.PCI_BASE_ADDRESS_MEM_PREFETCH;

    /// <summary>Offset of a capability's ID byte, from the capability.</summary>
    public const int CapabilityId = Interop.Pci.PCI_CAP_LIST_ID;

    /// <summary>Offset of a capability's next pointer, from the capability.</summary>
    public const int CapabilityNext = Interop.Pci.PCI_CAP_LIST_NEXT;

    /// <summary>Capability ID of MSI-X.</summary>
    public const byte CapabilityIdMsix = Interop.Pci.PCI_CAP_ID_MSIX;

    /// <summary>Capability ID of PCI Advanced Features (function-level reset on a conventional function).</summary>
    public const byte CapabilityIdAdvancedFeatures = Interop.Pci.PCI_CAP_ID_AF;

    /// <summary>MSI-X: u16 message control, from the capability.</summary>
    public const int MsixControl = Interop.Pci.PCI_MSIX_FLAGS;

    /// <summary>MSI-X message control: table size minus one.</summary>
    public const ushort MsixControlTableSize = Interop.Pci.PCI_MSIX_FLAGS_QSIZE;

    /// <summary>MSI-X message control: function mask (every vector masked).</summary>
    public const ushort MsixControlFunctionMask = Interop.Pci.PCI_MSIX_FLAGS_MASKALL;

    /// <summary>MSI-X message control: MSI-X enabled.</summary>
    public const ushort MsixControlEnable = Interop.Pci.PCI_MSIX_FLAGS_ENABLE;

    /// <summary>MSI-X: u32 table offset and BAR indicator, from the capability.</summary>
    public const int MsixTable = Interop.Pci.PCI_MSIX_TABLE;

    /// <summary>MSI-X: u32 pending-bit-array offset and BAR indicator, from the capability.</summary>
    public const int MsixPendingBitArray = Interop.Pci.PCI_MSIX_PBA;

    /// <summary>MSI-X table and PBA registers: the BAR indicator bits; the rest is the offset.</summary>
    public const uint MsixBarIndicatorMask = Interop.Pci.PCI_MSIX_TABLE_BIR;

    /// <summary>Bytes of the MSI-X capability.</summary>
    public const int MsixCapabilityLength = Interop.Pci.PCI_CAP_MSIX_SIZEOF;

    /// <summary>Bytes of one MSI-X table entry.</summary>
    public const int MsixEntryLength = Interop.Pci.PCI_MSIX_ENTRY_SIZE;

    /// <summary>Offset of an MSI-X table entry's u32 vector control.</summary>
    public const int MsixEntryVectorControl = Interop.Pci.PCI_MSIX_ENTRY_VECTOR_CTRL;

    /// <summary>MSI-X vector control: the vector is masked.</summary>
    public const uint MsixEntryMasked = Interop.Pci.PCI_MSIX_ENTRY_CTRL_MASKBIT;

    /// <summary>Advanced Features: u8 capability length, from the capability.</summary>
    public const int AdvancedFeaturesLength = Interop.Pci.PCI_AF_LENGTH;

    /// <summary>Advanced Features: u8 capabilities, from the capability.</summary>
    public const int AdvancedFeaturesCapabilities = Interop.Pci.PCI_AF_CAP;

    /// <summary>Advanced Features capabilities: the transactions-pending bit is implemented.</summary>
    public const byte AdvancedFeaturesHasTransactionsPending = Interop.Pci.PCI_AF_CAP_TP;

    /// <summary>Advanced Features capabilities: function-level reset is implemented.</summary>
    public const byte AdvancedFeaturesHasFlr = Interop.Pci.PCI_AF_CAP_FLR;

    /// <summary>Advanced Features: u8 control, from the capability.</summary>
    public const int AdvancedFeaturesControl = Interop.Pci.PCI_AF_CTRL;

    /// <summary>Advanced Features control: write 1 to start a function-level reset.</summary>
    public const byte AdvancedFeaturesInitiateFlr = Interop.Pci.PCI_AF_CTRL_FLR;

    /// <summary>Advanced Features: u8 status, from the capability.</summary>
    public const int AdvancedFeaturesStatus = Interop.Pci.PCI_AF_STATUS;

    /// <summary>Advanced Features status: transactions are pending.</summary>
    public const byte AdvancedFeaturesTransactionsPending = Interop.Pci.PCI_AF_STATUS_TP;

    /// <summary>Bytes of the Advanced Features capability.</summary>
    public const int AdvancedFeaturesCapabilityLength = Interop.Pci.PCI_CAP_AF_SIZEOF;
}
