using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Interop;

/// <summary>
/// <see cref="MemoryMapping"/>'s registry (find the mapping covering an address, as find_vma does) and holds
/// (a pinned page outlives its owner's munmap).
/// </summary>
public class MemoryMappingTests
{
    [Test]
    public void FindNamesTheMappingThatCoversAnAddressAndNothingElse()
    {
        using var a = MemoryMapping.Anonymous(3 * 4096);
        using var b = MemoryMapping.Anonymous(4096, MemoryProtection.Read);
        Assert.Multiple(() =>
        {
            Assert.That(MemoryMapping.Find(a.Address), Is.SameAs(a));
            Assert.That(MemoryMapping.Find(a.Address + (3 * 4096) - 1), Is.SameAs(a), "the last byte");
            Assert.That(MemoryMapping.Find(b.Address + 100), Is.SameAs(b));
            Assert.That(b.Protection, Is.EqualTo(MemoryProtection.Read));
            Assert.That(MemoryMapping.Find(0x1000), Is.Null, "an address no MemoryMapping covers");
            Assert.That(MemoryMapping.FindNext(a.Address), Is.Not.SameAs(a), "FindNext looks above the start");
        });

        var address = a.Address;
        a.Dispose();
        Assert.That(MemoryMapping.Find(address), Is.Null, "a freed, unheld mapping leaves the registry");
    }

    [Test]
    public unsafe void AHeldMappingOutlivesItsOwnersDisposeUntilTheLastHoldIsReleased()
    {
        var mapping = MemoryMapping.Anonymous(2 * 4096);
        var address = mapping.Address;
        FreedMemory.Mark(address);
        Assert.That(mapping.TryHold(), Is.True);
        Assert.That(mapping.TryHold(), Is.True);
        Assert.That(mapping.Holds, Is.EqualTo(2));

        mapping.Dispose();
        Assert.Multiple(() =>
        {
            Assert.That(mapping.IsReleasedByOwner, Is.True, "the owner's free is recorded at once");
            Assert.That(ProcessLimits.IsMapped(address, 2 * 4096), Is.True, "but the munmap waits for the holders");
            Assert.That(FreedMemory.IsGone(address), Is.False, "the same page, canary and all");
            Assert.That(MemoryMapping.Find(address), Is.SameAs(mapping), "still listed, marked released");
            Assert.That(mapping.TryHold(), Is.False, "no new hold on memory its owner freed");
        });

        // The holder may still use the memory (a device writing a pinned page).
        *(byte*)address = 0x5A;
        Assert.That(*(byte*)address, Is.EqualTo(0x5A));

        mapping.ReleaseHold();
        Assert.That(ProcessLimits.IsMapped(address, 2 * 4096), Is.True, "one hold left");
        mapping.ReleaseHold();
        Assert.Multiple(() =>
        {
            Assert.That(FreedMemory.IsGone(address), Is.True, "the last release unmapped it");
            Assert.That(MemoryMapping.Find(address), Is.Null);
            Assert.That(mapping.Holds, Is.Zero);
        });
        Assert.Throws<InvalidOperationException>(mapping.ReleaseHold, "a release without its hold is refused");
    }

    [Test]
    public void ReleasingHoldsBeforeTheOwnerFreesLeavesTheOwnerInCharge()
    {
        using var mapping = MemoryMapping.Anonymous(4096);
        Assert.That(mapping.TryHold(), Is.True);
        mapping.ReleaseHold();
        Assert.That(ProcessLimits.IsMapped(mapping.Address, 4096), Is.True, "the owner has not freed it");
        Assert.That(mapping.IsReleasedByOwner, Is.False);
    }

    [Test]
    public void IsAccessibleChecksMappingAndProtectionThePinWay()
    {
        using var readWrite = MemoryMapping.Anonymous(2 * 4096);
        using var readOnly = MemoryMapping.Anonymous(4096, MemoryProtection.Read);
        using var none = MemoryMapping.Anonymous(4096, MemoryProtection.None);
        Assert.Multiple(() =>
        {
            Assert.That(ProcessLimits.IsAccessible(readWrite.Address, 2 * 4096, MemoryProtection.ReadWrite), Is.True);
            Assert.That(ProcessLimits.IsAccessible(readOnly.Address, 4096, MemoryProtection.Read), Is.True);
            Assert.That(ProcessLimits.IsAccessible(readOnly.Address, 4096, MemoryProtection.ReadWrite), Is.False, "a write pin of read-only memory");
            Assert.That(ProcessLimits.IsAccessible(none.Address, 4096, MemoryProtection.Read), Is.False, "PROT_NONE");
            Assert.That(ProcessLimits.IsAccessible(0x1000, 4096, MemoryProtection.Read), Is.False, "unmapped");
        });

        var freed = MemoryMapping.Anonymous(4096);
        var address = freed.Address;
        FreedMemory.Mark(address);
        freed.Dispose();
        Assert.That(FreedMemory.IsGone(address), Is.True, "freed");
    }
}
