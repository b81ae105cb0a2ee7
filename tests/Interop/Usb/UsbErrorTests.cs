using FpgaAccel.Interop.Usb;
using NUnit.Framework;
using LibUsb = FpgaAccel.Interop.Interop.LibUsb;

namespace FpgaAccel.Tests.Interop.Usb;

/// <summary>libusb errors become one typed exception naming the call, the libusb error and a fix that fits both.</summary>
public class UsbErrorTests
{
    private static readonly UsbDeviceId s_bridge = new(0x0403, 0x6010);
    private static readonly UsbLocation s_location = new(1, [4, 2], 7);

    [Test]
    public void AccessDeniedNamesTheNodeAndTheUdevRule()
    {
        var error = UsbErrors.From("libusb_open", LibUsb.LIBUSB_ERROR_ACCESS, new UsbErrorSubject(s_bridge, s_location));
        Assert.That(error.Error, Is.EqualTo(UsbError.Access));
        Assert.That(error.ErrorName, Is.EqualTo("LIBUSB_ERROR_ACCESS"));
        Assert.That(error.Message, Does.StartWith("libusb_open(/dev/bus/usb/001/007 at 1-4.2, 0403:6010): LIBUSB_ERROR_ACCESS"));
        Assert.That(error.Message, Does.Contain("ATTRS{idVendor}==\"0403\", ATTRS{idProduct}==\"6010\", MODE=\"0660\", GROUP=\"plugdev\""));
        Assert.That(error.Fix, Does.Contain("udevadm control --reload-rules"));
    }

    [Test]
    public void BusyNamesTheKernelDriverThatHoldsTheInterface()
    {
        var error = UsbErrors.From("libusb_claim_interface", LibUsb.LIBUSB_ERROR_BUSY, new UsbErrorSubject(s_bridge, s_location, 1, "ftdi_sio"));
        Assert.That(error.Error, Is.EqualTo(UsbError.Busy));
        Assert.That(error.Message, Does.Contain("interface 1 of 0403:6010 is held by the kernel driver ftdi_sio"));
        Assert.That(error.Message, Does.Contain("/sys/bus/usb/drivers/ftdi_sio/unbind"));
    }

    [Test]
    public void BusyWithoutADriverPointsAtAnotherProcess()
    {
        var error = UsbErrors.From("libusb_claim_interface", LibUsb.LIBUSB_ERROR_BUSY, new UsbErrorSubject(s_bridge, s_location, 1));
        Assert.That(error.Message, Does.Contain("claimed by another process"));
        Assert.That(error.Message, Does.Contain("fuser /dev/bus/usb/001/007"));
    }

    [Test]
    public void AnUnknownCodeIsOther()
    {
        var error = UsbErrors.From("libusb_bulk_transfer", -1234, new UsbErrorSubject());
        Assert.That(error.Error, Is.EqualTo(UsbError.Other));
        Assert.That(error.Message, Does.StartWith("libusb_bulk_transfer: LIBUSB_ERROR_OTHER"));
    }

    [Test]
    public void LibusbNamesItsErrorsThroughStaticStrings()
    {
        if (!UsbLibrary.IsAvailable)
        {
            Assert.Ignore("libusb-1.0.so.0 is not installed (Debian package libusb-1.0-0)");
        }

        // libusb_error_name and libusb_strerror return static strings; read many times, they must stay intact
        // (a string-marshalled binding would free them and corrupt the heap).
        for (var i = 0; i < 1000; i++)
        {
            Assert.That(UsbLibrary.ErrorName(UsbError.Busy), Is.EqualTo("LIBUSB_ERROR_BUSY"));
        }

        Assert.That(UsbLibrary.Describe(UsbError.Access), Is.Not.Empty.And.Not.StartWith("LIBUSB_"));
        Assert.That(UsbLibrary.Version, Does.Match(@"^1\.\d+\.\d+\.\d+$"));
    }

    [Test]
    public void AMissingLibraryNamesTheDebianPackage()
    {
        var error = UsbLibrary.Probe("libusb-fpgaaccel-absent.so.0");
        Assert.That(error, Is.TypeOf<UsbLibraryNotFoundException>());
        var missing = (UsbLibraryNotFoundException)error!;
        Assert.That(missing.Soname, Is.EqualTo("libusb-fpgaaccel-absent.so.0"));
        Assert.That(missing.Message, Does.Contain("apt-get install libusb-1.0-0"));
        Assert.That(missing.Message, Does.Contain("libudev.so.1"));
    }

    [TestCase(0)]
    [TestCase(-5)]
    public void ATimeoutThatWouldWaitForeverIsRefused(int milliseconds) =>
        Assert.That(() => UsbDeviceHandle.Milliseconds(TimeSpan.FromMilliseconds(milliseconds)), Throws.TypeOf<ArgumentOutOfRangeException>());

    [Test]
    public void ATimeoutIsRoundedUpToAWholeMillisecond()
    {
        Assert.That(UsbDeviceHandle.Milliseconds(TimeSpan.FromMicroseconds(200)), Is.EqualTo(1u));
        Assert.That(UsbDeviceHandle.Milliseconds(TimeSpan.FromMilliseconds(2.5)), Is.EqualTo(3u));
        Assert.That(() => UsbDeviceHandle.Milliseconds(Timeout.InfiniteTimeSpan), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void LocationsAreNamedAsSysfsAndDevNameThem()
    {
        Assert.That(s_location.SysfsName, Is.EqualTo("1-4.2"));
        Assert.That(s_location.DeviceNode, Is.EqualTo("/dev/bus/usb/001/007"));
        Assert.That(s_location.InterfaceSysfsName(1, 1), Is.EqualTo("1-4.2:1.1"));
        Assert.That(new UsbLocation(2, [], 1).SysfsName, Is.EqualTo("usb2"));
    }

    [TestCase("0403:6010", 0x0403, 0x6010)]
    [TestCase("0x0403:0x6001", 0x0403, 0x6001)]
    [TestCase(" 403:6001 ", 0x0403, 0x6001)]
    public void DeviceIdsParseAsLsusbWritesThem(string text, int vendor, int product)
    {
        Assert.That(UsbDeviceId.TryParse(text, out var id), Is.True);
        Assert.That(id, Is.EqualTo(new UsbDeviceId((ushort)vendor, (ushort)product)));
    }

    [TestCase("0403")]
    [TestCase("0403:60100")]
    [TestCase("zz:6010")]
    [TestCase("")]
    public void MalformedDeviceIdsAreRefused(string text) => Assert.That(UsbDeviceId.TryParse(text, out _), Is.False);
}
