using FpgaAccel.Interop;
using FpgaAccel.Interop.Vfio;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Interop.Vfio;

/// <summary>
/// The VFIO and libc bindings against the kernel's and glibc's own headers: every struct size, field offset
/// and size, flag, constant and ioctl request number the C# side declares is a <c>_Static_assert</c> compiled by gcc.
/// </summary>
public class VfioLayoutTests
{
    // typeof, not names: a renamed bindings class fails the build instead of failing at run time.
    private static Type Bindings => typeof(global::FpgaAccel.Interop.Interop);

    [Test]
    public void VfioBindingsMatchLinuxVfioH()
    {
        var gcc = RequireToolchain("/usr/include/linux/vfio.h");
        var check = new CHeaderCheck().Include("linux/vfio.h").AddBindings(typeof(global::FpgaAccel.Interop.Interop.Vfio));
        Assert.That(check.Structs, Is.SupersetOf(new[]
        {
            "vfio_info_cap_header", "vfio_group_status", "vfio_device_info", "vfio_region_info", "vfio_region_sparse_mmap_area",
            "vfio_region_info_cap_sparse_mmap", "vfio_irq_info", "vfio_irq_set", "vfio_iommu_type1_info", "vfio_iova_range",
            "vfio_iommu_type1_info_cap_iova_range", "vfio_iommu_type1_info_dma_avail", "vfio_iommu_type1_dma_map", "vfio_iommu_type1_dma_unmap",
        }));
        Assert.That(check.Constants, Is.SupersetOf(new[]
        {
            "VFIO_GET_API_VERSION", "VFIO_CHECK_EXTENSION", "VFIO_SET_IOMMU", "VFIO_GROUP_GET_STATUS", "VFIO_GROUP_SET_CONTAINER",
            "VFIO_GROUP_GET_DEVICE_FD", "VFIO_DEVICE_GET_INFO", "VFIO_DEVICE_GET_REGION_INFO", "VFIO_DEVICE_GET_IRQ_INFO",
            "VFIO_DEVICE_SET_IRQS", "VFIO_DEVICE_RESET", "VFIO_IOMMU_GET_INFO", "VFIO_IOMMU_MAP_DMA", "VFIO_IOMMU_UNMAP_DMA",
        }));
        var problems = check.Compile(gcc);
        Assert.That(problems, Is.Empty, $"{problems.Count} of {check.Checks} checks against linux/vfio.h failed:\n" + string.Join("\n", problems));
    }

    [Test]
    public void DmaAccessMapsToTheHeadersDmaMapFlags()
    {
        Assert.That(VfioNative.ToDmaMapFlags(DmaAccess.DeviceRead | (DmaAccess)0x10), Is.EqualTo(VfioNative.ToDmaMapFlags(DmaAccess.DeviceRead)),
            "bits that are no access are not passed to the kernel");
        AssertMapsToHeader("/usr/include/linux/vfio.h", "linux/vfio.h", access => VfioNative.ToDmaMapFlags(access), new Dictionary<DmaAccess, string>
        {
            [DmaAccess.None] = "0",
            [DmaAccess.DeviceRead] = "VFIO_DMA_MAP_FLAG_READ",
            [DmaAccess.DeviceWrite] = "VFIO_DMA_MAP_FLAG_WRITE",
            [DmaAccess.ReadWrite] = "VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE",
        });
    }

    [Test]
    public void MemoryProtectionMapsToTheHeadersProtFlags() =>
        // sys/mman.h sits under a multiarch directory; pwd.h, like it from libc6-dev, tells whether the headers are there.
        AssertMapsToHeader("/usr/include/pwd.h", "sys/mman.h", protection => MemoryMapping.ToProt(protection), new Dictionary<MemoryProtection, string>
        {
            [MemoryProtection.None] = "PROT_NONE",
            [MemoryProtection.Read] = "PROT_READ",
            [MemoryProtection.Write] = "PROT_WRITE",
            [MemoryProtection.ReadWrite] = "PROT_READ | PROT_WRITE",
        });

    [Test]
    public void LibcBindingsMatchGlibcHeaders()
    {
        var gcc = RequireToolchain("/usr/include/pwd.h");
        var check = new CHeaderCheck()
            .Include("sys/epoll.h", "sys/eventfd.h", "sys/mman.h", "sys/resource.h", "sys/ioctl.h", "fcntl.h", "unistd.h", "pwd.h", "errno.h",
                "poll.h", "termios.h", "stdlib.h", "sys/socket.h", "sys/un.h")
            .AddBindings(typeof(global::FpgaAccel.Interop.Interop.Libc))
            .AddEnum(typeof(global::FpgaAccel.Interop.Errno));
        Assert.That(check.Structs, Is.SupersetOf(new[] { "epoll_event", "rlimit", "passwd", "pollfd", "termios", "msghdr", "iovec", "cmsghdr", "sockaddr_un" }));
        Assert.That(check.Constants, Does.Contain("RLIMIT_MEMLOCK").And.Contain("EFD_CLOEXEC").And.Contain("EACCES").And.Contain("B115200").And.Contain("O_NOCTTY")
            .And.Contain("SCM_RIGHTS").And.Contain("MSG_CMSG_CLOEXEC").And.Contain("SOCK_CLOEXEC"));

        // The CMSG_* macros are arithmetic on sizeof(struct cmsghdr) and size_t alignment; the managed versions must
        // give what the header's give, for the descriptor counts a message carries.
        foreach (var bytes in new[] { 0, 1, 4, 8, 12, 64, 1012 })
        {
            check.AddConstant($"CMSG_LEN({bytes})", (ulong)global::FpgaAccel.Interop.Interop.Libc.CMSG_LEN((nuint)bytes));
            check.AddConstant($"CMSG_SPACE({bytes})", (ulong)global::FpgaAccel.Interop.Interop.Libc.CMSG_SPACE((nuint)bytes));
        }

        var problems = check.Compile(gcc);
        Assert.That(problems, Is.Empty, $"{problems.Count} of {check.Checks} checks against the libc headers failed:\n" + string.Join("\n", problems));
    }

    [Test]
    public void PciConfigRegistersMatchLinuxPciRegsH()
    {
        var gcc = RequireToolchain("/usr/include/linux/pci_regs.h");
        var check = new CHeaderCheck().Include("linux/pci_regs.h").AddBindings(typeof(global::FpgaAccel.Interop.Interop.Pci));
        Assert.That(check.Constants, Is.SupersetOf(new[] { "PCI_COMMAND_MASTER", "PCI_CAP_ID_MSIX", "PCI_MSIX_FLAGS_ENABLE", "PCI_CAP_ID_AF", "PCI_AF_CTRL_FLR" }));
        var problems = check.Compile(gcc);
        Assert.That(problems, Is.Empty, $"{problems.Count} of {check.Checks} checks against linux/pci_regs.h failed:\n" + string.Join("\n", problems));
    }

    [Test]
    public void VfioFlagEnumsAreTheHeadersFlags()
    {
        var gcc = RequireToolchain("/usr/include/linux/vfio.h");
        var check = new CHeaderCheck().Include("linux/vfio.h");
        check.AddConstant("VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI", (uint)(VfioDeviceFlags.Reset | VfioDeviceFlags.Pci));
        check.AddConstant("VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER", (uint)(VfioIrqSetFlags.DataEventFd | VfioIrqSetFlags.ActionTrigger));
        check.AddConstant("VFIO_IRQ_SET_DATA_TYPE_MASK", (uint)VfioIrqSetFlags.DataMask);
        check.AddConstant("VFIO_IRQ_SET_ACTION_TYPE_MASK", (uint)VfioIrqSetFlags.ActionMaskAll);
        check.AddConstant("VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE", (uint)(VfioDmaMapFlags.Read | VfioDmaMapFlags.Write));
        check.AddConstant("VFIO_DMA_UNMAP_FLAG_ALL", (uint)VfioDmaUnmapFlags.All);
        check.AddConstant("VFIO_PCI_NUM_REGIONS", VfioPciRegion.Count);
        check.AddConstant("VFIO_PCI_NUM_IRQS", VfioPciIrq.Count);
        var problems = check.Compile(gcc);
        Assert.That(problems, Is.Empty, string.Join("\n", problems));
    }

    [Test]
    public void EveryBindingClassIsCoveredByAHeaderCheck()
    {
        // A new nested binding class must get its own header test (here, or beside its managed layer's tests, as
        // LibUsb's in tests/Interop/Usb/UsbLayoutTests.cs) before it is added to this list.
        var classes = Bindings.GetNestedTypes(System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public)
            .Where(t => t.IsClass).Select(t => t.Name);
        Assert.That(classes, Is.EquivalentTo(new[] { "Libraries", "Libc", "Vfio", "LibUsb", "Pci" }));
    }

    [Test]
    public void AWrongValueIsReportedByName()
    {
        var gcc = RequireToolchain("/usr/include/linux/vfio.h");
        var check = new CHeaderCheck().Include("linux/vfio.h");
        check.AddConstant("VFIO_TYPE1v2_IOMMU", 4);
        check.AddConstant("VFIO_IOMMU_MAP_DMA", 0x3B71UL);
        var problems = check.Compile(gcc);
        Assert.That(problems, Has.Count.EqualTo(1));
        Assert.That(problems[0], Does.Contain("VFIO_TYPE1v2_IOMMU is not 4"));
    }

    /// <summary>
    /// Checks a managed enum's mapping to native flags: <paramref name="expected"/> lists every value of the enum with
    /// the C expression, as the header spells it, that <paramref name="map"/> must produce for it; gcc compares them.
    /// </summary>
    private static void AssertMapsToHeader<TEnum>(string path, string header, Func<TEnum, object> map, Dictionary<TEnum, string> expected)
        where TEnum : struct, Enum
    {
        Assert.That(Enum.GetValues<TEnum>(), Is.EquivalentTo(expected.Keys), $"every {typeof(TEnum).Name} value needs its {header} flags here and in the mapping");
        var gcc = RequireToolchain(path);
        var check = new CHeaderCheck().Include(header);
        foreach (var (value, flags) in expected)
        {
            check.AddConstant(flags, map(value));
        }

        var problems = check.Compile(gcc);
        Assert.That(problems, Is.Empty, $"{typeof(TEnum).Name} to {header} flags disagrees with the header:\n" + string.Join("\n", problems));
    }

    private static string RequireToolchain(string header) => CHeaderCheck.RequireToolchain(header, "linux-libc-dev and libc6-dev");
}
