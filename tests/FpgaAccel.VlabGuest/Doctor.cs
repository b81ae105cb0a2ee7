using System.Text.Json;

namespace FpgaAccel.VlabGuest;

/// <summary>
/// Runs the real <c>fpgaaccel doctor</c> (published next to this program, run as its own
/// process) against the guest's sysfs, prints its output under the check, and checks what its
/// JSON report says: the IOMMU on, no FA-1, and, asked for edu's IDs, edu bound to vfio-pci in
/// a viable group whose node is accessible.
/// </summary>
internal static class Doctor
{
    public static void Check(CheckRunner runner, string eduAddress, int eduGroup)
    {
        // As shipped: looks for the FA-1 (its IDs are the default). The guest has none.
        FpgaAccelTool.Run(runner, ["doctor"], show: true);
        var (code, json) = FpgaAccelTool.Run(runner, ["doctor", "--json"], show: false);
        var fa1 = Statuses(json);
        Expect.Equal(1, code, "exit code of 'fpgaaccel doctor' with no FA-1 present");
        ExpectStatus(fa1, "iommu", "pass");
        ExpectStatus(fa1, "vfio-container", "pass");
        ExpectStatus(fa1, "device", "fail");

        // Pointed at edu, with a pin budget inside the guest's RLIMIT_MEMLOCK (8 MiB) and the huge
        // pages /init reserved: every check passes, edu bound to vfio-pci in a viable group.
        string[] edu = ["doctor", "--vendor-id", $"0x{Edu.VendorId:x4}", "--device-id", $"0x{Edu.DeviceId:x4}", "--pin-bytes", "4M"];
        FpgaAccelTool.Run(runner, edu, show: true);
        (code, json) = FpgaAccelTool.Run(runner, [.. edu, "--json"], show: false);
        var found = Statuses(json);
        foreach (var name in new[] { "iommu", "vfio-container", "device", "driver", "group", "access", "memlock", "hugepages" })
        {
            ExpectStatus(found, name, "pass");
        }

        Expect.Equal(0, code, "exit code of 'fpgaaccel doctor' for edu");

        using var document = JsonDocument.Parse(json);
        var devices = document.RootElement.GetProperty("devices");
        Expect.Equal(1, devices.GetArrayLength(), "devices the doctor found with edu's IDs");
        var device = devices[0];
        Expect.Equal(eduAddress, device.GetProperty("address").GetString() ?? "", "the address the doctor found");
        Expect.Equal("vfio-pci", device.GetProperty("driver").GetString() ?? "", "the driver the doctor found");
        Expect.Equal(eduGroup, device.GetProperty("iommu_group").GetInt32(), "the IOMMU group the doctor found");
    }

    private static Dictionary<string, string> Statuses(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            var statuses = new Dictionary<string, string>();
            foreach (var check in document.RootElement.GetProperty("checks").EnumerateArray())
            {
                // A device check repeats per device found; the first one is enough here.
                statuses.TryAdd(check.GetProperty("name").GetString() ?? "", check.GetProperty("status").GetString() ?? "");
            }

            return statuses;
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new CheckFailedException($"'fpgaaccel doctor --json' printed no JSON report the check can read: {ex.Message}");
        }
    }

    private static void ExpectStatus(Dictionary<string, string> statuses, string name, string expected)
    {
        Expect.True(statuses.TryGetValue(name, out var status), $"the doctor reported no '{name}' check");
        Expect.True(status == expected, $"the doctor's '{name}' check is '{status}', expected '{expected}'");
    }
}
