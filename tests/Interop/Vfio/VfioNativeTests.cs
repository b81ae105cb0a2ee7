using FpgaAccel.Interop.Vfio;
using NUnit.Framework;
using static FpgaAccel.Interop.Interop.Vfio;

namespace FpgaAccel.Tests.Interop.Vfio;

/// <summary>The argsz protocol of linux/vfio.h, against a stand-in kernel: the one loop both info ioctls use.</summary>
public unsafe class VfioNativeTests
{
    [Test]
    public void TooSmallBufferIsAskedAgainWithTheSizeTheKernelWants()
    {
        var sizes = new List<uint>();
        var indexes = new List<uint>();
        var answer = VfioNative.AskWithGrowingArgsz(new vfio_region_info { index = 7 }, "VFIO_DEVICE_GET_REGION_INFO", buffer =>
        {
            var info = (vfio_region_info*)buffer;
            sizes.Add(info->argsz);
            indexes.Add(info->index);
            if (info->argsz < 96)
            {
                // As the kernel does: a too-small buffer gets argsz raised and its other fields filled, no chain.
                info->argsz = 96;
                info->size = 0xBAD;
                return;
            }

            info->size = 0x1000;
            buffer[95] = 0xCA;
        });

        Assert.That(sizes, Is.EqualTo(new[] { (uint)sizeof(vfio_region_info), 96u }));
        Assert.That(indexes, Is.EqualTo(new[] { 7u, 7u }), "every attempt starts from the caller's header");
        Assert.That(answer, Has.Length.EqualTo(96));
        var info = System.Runtime.InteropServices.MemoryMarshal.Read<vfio_region_info>(answer);
        Assert.That(info.size, Is.EqualTo(0x1000UL));
        Assert.That(answer[95], Is.EqualTo(0xCA));
    }

    [Test]
    public void AnAnswerThatFitsIsTakenAtOnce()
    {
        var calls = 0;
        var answer = VfioNative.AskWithGrowingArgsz(default(vfio_iommu_type1_info), "VFIO_IOMMU_GET_INFO", buffer =>
        {
            calls++;
            ((vfio_iommu_type1_info*)buffer)->argsz = 16; // the kernel may report less than it was given
        });
        Assert.That(calls, Is.EqualTo(1));
        Assert.That(answer, Has.Length.EqualTo(sizeof(vfio_iommu_type1_info)));
    }

    [Test]
    public void AKernelThatKeepsAskingForMoreIsAnError()
    {
        var calls = 0;
        var ex = Assert.Throws<VfioException>(() => VfioNative.AskWithGrowingArgsz(default(vfio_iommu_type1_info), "VFIO_IOMMU_GET_INFO", buffer =>
        {
            calls++;
            *(uint*)buffer += 8;
        }))!;
        Assert.That(calls, Is.EqualTo(VfioNative.ArgszAttempts));
        Assert.That(ex.Message, Does.StartWith("VFIO_IOMMU_GET_INFO kept asking for a larger buffer").And.Contain("kernel version"));
    }

    [Test]
    public void AnAbsurdSizeIsRefusedBeforeItIsAllocated()
    {
        var calls = 0;
        var ex = Assert.Throws<VfioException>(() => VfioNative.AskWithGrowingArgsz(default(vfio_iommu_type1_info), "VFIO_IOMMU_GET_INFO", buffer =>
        {
            calls++;
            *(uint*)buffer = uint.MaxValue;
        }))!;
        Assert.That(calls, Is.EqualTo(1), "no second attempt with a 4 GiB buffer");
        Assert.That(ex.Message, Does.Contain("4294967295-byte buffer").And.Contain("malformed"));
    }
}
