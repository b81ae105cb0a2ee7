namespace FpgaAccel.Interop;

internal static partial class Interop
{
    /// <summary>
    /// PCI configuration space from linux/pci_regs.h, under the C names: header registers, command and status bits,
    /// BAR bits, and the two capabilities a vfio-user server of this project builds (MSI-X and Advanced Features,
    /// which offers a function-level reset on a conventional function). Checked against the header by
    /// tests/Interop/Vfio/VfioLayoutTests.cs; <see cref="PciConfigRegisters"/> gives them .NET names.
    /// </summary>
    internal static class Pci
    {
        internal const int PCI_CFG_SPACE_SIZE = 256;
        internal const int PCI_VENDOR_ID = 0x00;
        internal const int PCI_DEVICE_ID = 0x02;
        internal const int PCI_COMMAND = 0x04;
        internal const int PCI_STATUS = 0x06;
        internal const int PCI_REVISION_ID = 0x08;
        internal const int PCI_CLASS_PROG = 0x09;
        internal const int PCI_CLASS_DEVICE = 0x0a;
        internal const int PCI_CACHE_LINE_SIZE = 0x0c;
        internal const int PCI_LATENCY_TIMER = 0x0d;
        internal const int PCI_HEADER_TYPE = 0x0e;
        internal const int PCI_BASE_ADDRESS_0 = 0x10;
        internal const int PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
        internal const int PCI_SUBSYSTEM_ID = 0x2e;
        internal const int PCI_ROM_ADDRESS = 0x30;
        internal const int PCI_CAPABILITY_LIST = 0x34;
        internal const int PCI_INTERRUPT_LINE = 0x3c;
        internal const int PCI_INTERRUPT_PIN = 0x3d;

        internal const int PCI_COMMAND_IO = 0x1;
        internal const int PCI_COMMAND_MEMORY = 0x2;
        internal const int PCI_COMMAND_MASTER = 0x4;
        internal const int PCI_COMMAND_PARITY = 0x40;
        internal const int PCI_COMMAND_SERR = 0x100;
        internal const int PCI_COMMAND_INTX_DISABLE = 0x400;
        internal const int PCI_STATUS_CAP_LIST = 0x10;

        internal const int PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
        internal const int PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;

        internal const int PCI_CAP_LIST_ID = 0;
        internal const int PCI_CAP_LIST_NEXT = 1;
        internal const int PCI_CAP_ID_MSIX = 0x11;
        internal const int PCI_CAP_ID_AF = 0x13;

        internal const int PCI_MSIX_FLAGS = 2;
        internal const int PCI_MSIX_FLAGS_QSIZE = 0x07FF;
        internal const int PCI_MSIX_FLAGS_MASKALL = 0x4000;
        internal const int PCI_MSIX_FLAGS_ENABLE = 0x8000;
        internal const int PCI_MSIX_TABLE = 4;
        internal const int PCI_MSIX_PBA = 8;
        internal const int PCI_MSIX_TABLE_BIR = 0x7;
        internal const int PCI_CAP_MSIX_SIZEOF = 12;
        internal const int PCI_MSIX_ENTRY_SIZE = 16;
        internal const int PCI_MSIX_ENTRY_VECTOR_CTRL = 12;
        internal const int PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x1;

        internal const int PCI_AF_LENGTH = 2;
        internal const int PCI_AF_CAP = 3;
        internal const int PCI_AF_CAP_TP = 0x01;
        internal const int PCI_AF_CAP_FLR = 0x02;
        internal const int PCI_AF_CTRL = 4;
        internal const int PCI_AF_CTRL_FLR = 0x01;
        internal const int PCI_AF_STATUS = 5;
        internal const int PCI_AF_STATUS_TP = 0x01;
        internal const int PCI_CAP_AF_SIZEOF = 6;
    }
}
