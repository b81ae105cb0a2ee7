using FpgaAccel.FirmwareInterface;
using NUnit.Framework;

namespace FpgaAccel.Tests.FirmwareInterface;

/// <summary>Spec 3: a driver refuses a different major, or a minor below the one it needs.</summary>
public class VersionTests
{
    [Test]
    public void EncodesAsSpecSays()
    {
        Assert.That(new Fa1Version(1, 0, 0).Raw, Is.EqualTo(1UL << 32));
        Assert.That(new Fa1Version(2, 3, 4).Raw, Is.EqualTo((2UL << 32) | (3UL << 16) | 4));
        Assert.That(Fa1Version.FromRaw((2UL << 32) | (3UL << 16) | 4), Is.EqualTo(new Fa1Version(2, 3, 4)));
        Assert.That(Fa1Version.Current.ToString(), Is.EqualTo("1.0.0"));
    }

    [TestCase(1, 0, 0, 1, 0, true)]
    [TestCase(1, 0, 7, 1, 0, true)]
    [TestCase(1, 3, 0, 1, 2, true)]
    [TestCase(1, 2, 0, 1, 2, true)]
    [TestCase(1, 1, 9, 1, 2, false)]
    [TestCase(2, 0, 0, 1, 0, false)]
    [TestCase(0, 9, 0, 1, 0, false)]
    public void CompatibilityRule(int major, int minor, int patch, int needMajor, int needMinor, bool accepted)
    {
        var device = new Fa1Version((ushort)major, (ushort)minor, (ushort)patch);
        var required = new Fa1Version((ushort)needMajor, (ushort)needMinor, 0);
        Assert.That(device.SatisfiesRequirement(required), Is.EqualTo(accepted));
    }
}
