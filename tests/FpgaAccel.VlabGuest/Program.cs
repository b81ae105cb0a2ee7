using FpgaAccel.Interop.Vfio;
using FpgaAccel.VlabGuest;

// The virtual lab's guest program: run by tests/vlab/init inside the QEMU guest as
//   vlab-guest --device <pci address of edu> [--bmc-serial <serial>]
// First binds edu to vfio-pci with 'fpgaaccel setup', then drives it through interop/Vfio; with
// --bmc-serial (QEMU has a usb-serial whose socket the host's BMC model serves, with that serial),
// also talks to the BMC through the kernel's USB stack and libusb. On the virtual board
// (tests/vboard/init) it runs as
//   vlab-guest --vboard --device <pci address of the FA-1> [--bmc]
// and drives the FA-1 served over vfio-user with the real fpgaaccel (VirtualBoard.cs); with --bmc (the host serves
// the board's BMC on QEMU's usb-serial) a BMC RESET then power-cycles it under the driver (VirtualBoardBmc.cs).
// Prints one PASS/FAIL line per check and the closing "N passed, N failed" line; exits 0 only
// when every check passed.
var runner = new CheckRunner(Console.Out);
string device;
string? bmcSerial = null;
switch (args)
{
    case ["--vboard", "--device", var board]:
        VirtualBoard.Run(runner, board);
        runner.Close();
        return runner.Failed == 0 ? 0 : 1;
    case ["--vboard", "--device", var board, "--bmc"]:
        // The host serves the board's BMC on QEMU's usb-serial too: its RESET power-cycles this FA-1 (issue 14).
        VirtualBoard.Run(runner, board);
        VirtualBoardBmc.Run(runner, board);
        runner.Close();
        return runner.Failed == 0 ? 0 : 1;
    case ["--device", var d]:
        device = d;
        break;
    case ["--device", var d, "--bmc-serial", var s]:
        (device, bmcSerial) = (d, s);
        break;
    default:
        Console.Error.WriteLine("usage: vlab-guest --device <pci address of edu> [--bmc-serial <serial>] | vlab-guest --vboard --device <pci address of the FA-1> [--bmc]");
        return 2;
}

var group = -1;
runner.Run(EduConformance.SetupCheck, () => group = Setup.Bind(runner, device));
var descriptorsBefore = OpenDescriptors();
using (var conformance = new EduConformance(runner, device, group))
{
    conformance.RunAll();
}

// The one-call open the driver uses, once the step-by-step users above are closed.
runner.Run("pci-device.open-close", () =>
{
    using var pci = VfioPciDevice.Open(device);
    Expect.Equal(group, pci.GroupNumber, "IOMMU group");
    using var bar0 = pci.Device.MapRegion(pci.Device.GetRegionInfo(VfioPciRegion.Bar0));
    Expect.Equal(Edu.ExpectedIdentification, bar0.Read32(Edu.Identification), "edu identification register");
}, EduConformance.SetupCheck);
// Every descriptor the checks opened (container, group, device, eventfd, epoll) is closed by
// now. The runtime opens descriptors of its own lazily (its single-file bundle, pipes), so only
// the kinds the checks open count.
runner.Run("cleanup.descriptors", () =>
{
    var left = OpenDescriptors().Except(descriptorsBefore).Select(fd => $"{fd} -> {Target(fd)}")
        .Where(d => d.Contains("/dev/vfio", StringComparison.Ordinal) || d.Contains("anon_inode:", StringComparison.Ordinal))
        .ToList();
    Expect.True(left.Count == 0, $"descriptors left open: {string.Join(", ", left)}");
});
runner.Run("doctor", () => Doctor.Check(runner, device, group), EduConformance.SetupCheck);
if (bmcSerial is not null)
{
    Bmc.Check(runner, bmcSerial);
}

runner.Close();
return runner.Failed == 0 ? 0 : 1;

static HashSet<string> OpenDescriptors() =>
    Directory.EnumerateFileSystemEntries("/proc/self/fd").Select(Path.GetFileName).OfType<string>().ToHashSet();

static string Target(string fd)
{
    try
    {
        return new FileInfo($"/proc/self/fd/{fd}").LinkTarget ?? "?";
    }
    catch (IOException)
    {
        return "?";
    }
}
