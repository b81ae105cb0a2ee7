using FpgaAccel.Interop.Usb;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Interop.Usb;

/// <summary>
/// The libusb bindings against libusb-1.0/libusb.h (Debian's libusb-1.0-0-dev): every struct size, field offset and
/// size, and every constant the C# side declares is a <c>_Static_assert</c> compiled by gcc. The public enums take
/// their values from those constants, so they are checked with them.
/// </summary>
public class UsbLayoutTests
{
    private const string Header = "/usr/include/libusb-1.0/libusb.h";

    [Test]
    public void LibUsbBindingsMatchLibusbH()
    {
        var gcc = CHeaderCheck.RequireToolchain(Header, "libusb-1.0-0-dev");
        var check = new CHeaderCheck().Include("libusb-1.0/libusb.h").AddBindings(typeof(global::FpgaAccel.Interop.Interop.LibUsb));
        Assert.That(check.Structs, Is.EquivalentTo(new[]
        {
            "libusb_device_descriptor", "libusb_endpoint_descriptor", "libusb_interface_descriptor", "libusb_interface",
            "libusb_config_descriptor", "libusb_version",
        }));
        Assert.That(check.Constants, Is.SupersetOf(new[]
        {
            "LIBUSB_ERROR_ACCESS", "LIBUSB_ERROR_BUSY", "LIBUSB_ERROR_TIMEOUT", "LIBUSB_ERROR_PIPE", "LIBUSB_ERROR_OTHER",
            "LIBUSB_ENDPOINT_IN", "LIBUSB_REQUEST_TYPE_VENDOR", "LIBUSB_ENDPOINT_TRANSFER_TYPE_BULK", "LIBUSB_SPEED_HIGH",
        }));
        var problems = check.Compile(gcc);
        Assert.That(problems, Is.Empty, $"{problems.Count} of {check.Checks} checks against libusb.h failed:\n" + string.Join("\n", problems));
    }

    [Test]
    public void VendorRequestTypesAreTheHeadersBits()
    {
        var gcc = CHeaderCheck.RequireToolchain(Header, "libusb-1.0-0-dev");
        var check = new CHeaderCheck().Include("libusb-1.0/libusb.h");
        check.AddConstant("LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_DEVICE | LIBUSB_ENDPOINT_OUT", UsbControlSetup.VendorOut);
        check.AddConstant("LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_DEVICE | LIBUSB_ENDPOINT_IN", UsbControlSetup.VendorIn);
        var problems = check.Compile(gcc);
        Assert.That(problems, Is.Empty, string.Join("\n", problems));
    }

    [Test]
    public void EveryUsbErrorIsALibusbErrorCode()
    {
        var gcc = CHeaderCheck.RequireToolchain(Header, "libusb-1.0-0-dev");
        var check = new CHeaderCheck().Include("libusb-1.0/libusb.h");
        foreach (var error in Enum.GetValues<UsbError>())
        {
            // The C name each value stands for, as libusb itself spells it without the library: the fallback table.
            check.AddConstant(UsbLibraryFallbackName(error), (int)error);
        }

        var problems = check.Compile(gcc);
        Assert.That(problems, Is.Empty, string.Join("\n", problems));
        Assert.That(Enum.GetValues<UsbError>(), Has.Length.EqualTo(13), "libusb 1.0.26 has 13 error codes besides LIBUSB_SUCCESS (LIBUSB_ERROR_COUNT 14)");
    }

    private static string UsbLibraryFallbackName(UsbError error)
    {
        // Through the public name when libusb is loaded (libusb_error_name); the test then also checks that libusb agrees.
        var name = UsbLibrary.ErrorName(error);
        Assert.That(name, Does.StartWith("LIBUSB_ERROR_"), $"{error}");
        return name;
    }
}
