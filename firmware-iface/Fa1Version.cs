namespace FpgaAccel.FirmwareInterface;

/// <summary>
/// The VERSION register (spec 3): major &lt;&lt; 32 | minor &lt;&lt; 16 | patch.
/// </summary>
public readonly record struct Fa1Version(ushort Major, ushort Minor, ushort Patch)
{
    /// <summary>The register interface this code implements: 1.0.0.</summary>
    public static readonly Fa1Version Current = new(1, 0, 0);

    /// <summary>The oldest device version the driver accepts: same major, minor at least this.</summary>
    public static readonly Fa1Version MinimumSupported = new(1, 0, 0);

    /// <summary>Encodes the version as the register holds it.</summary>
    public ulong Raw => ((ulong)Major << 32) | ((ulong)Minor << 16) | Patch;

    /// <summary>Decodes the register. Bits above 47 are ignored.</summary>
    public static Fa1Version FromRaw(ulong raw) =>
        new((ushort)(raw >> 32), (ushort)(raw >> 16), (ushort)raw);

    /// <summary>
    /// Spec 3: a driver that needs <paramref name="required"/> refuses a different major,
    /// or a minor below the one it needs. The patch level never matters.
    /// </summary>
    public bool SatisfiesRequirement(Fa1Version required) =>
        Major == required.Major && Minor >= required.Minor;

    /// <summary>major.minor.patch, as the spec writes versions.</summary>
    public override string ToString() => $"{Major}.{Minor}.{Patch}";
}
