using FpgaAccel.Interop.Usb;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Interop.Usb;

/// <summary>USB devices read from a sysfs tree laid out as the kernel lays it out: IDs, location, interfaces, drivers, ttys.</summary>
public class UsbSysfsTests
{
    [Test]
    public void DevicesAndTheirInterfacesAreRead()
    {
        using var sys = new SysfsFixture()
            .AddUsbDevice("1-4.2", 0x0403, 0x6010, bus: 1, address: 7, release: 0x0700, "ftdi_sio", "ftdi_sio")
            .AddUsbDevice("2-1", 0x046d, 0xc52b, bus: 2, address: 3, release: 0x1211, "usbhid", null);
        // Root hubs (usbN) and interfaces (with a colon) are not devices.
        Directory.CreateDirectory(Path.Combine(sys.Sys, "bus", "usb", "devices", "usb1"));

        var devices = UsbSysfs.Devices(sys.Sys);

        Assert.That(devices.Select(d => d.Location.SysfsName), Is.EqualTo(new[] { "1-4.2", "2-1" }));
        var bridge = devices[0];
        Assert.That(bridge.Id, Is.EqualTo(new UsbDeviceId(0x0403, 0x6010)));
        Assert.That(bridge.DeviceRelease, Is.EqualTo(0x0700));
        Assert.That(bridge.Location.DeviceNode, Is.EqualTo("/dev/bus/usb/001/007"));
        Assert.That(bridge.Location.Ports, Is.EqualTo(new[] { 4, 2 }));
        Assert.That(bridge.Interfaces.Select(i => (i.Number, i.Driver)), Is.EqualTo(new[] { (0, "ftdi_sio"), (1, "ftdi_sio") }));
        Assert.That(bridge.Interfaces[1].TtyNames, Is.EqualTo(new[] { "ttyUSB1" }));
        Assert.That(devices[1].Interfaces[1].Driver, Is.Null);
    }

    [Test]
    public void TheDriverOfOneInterfaceIsFoundByLocation()
    {
        using var sys = new SysfsFixture().AddUsbDevice("1-1", 0x0403, 0x6001, bus: 1, address: 2, release: 0x0600, "ftdi_sio");
        var location = new UsbLocation(1, [1], 2);
        Assert.That(UsbSysfs.InterfaceDriver(sys.Sys, location, 0), Is.EqualTo("ftdi_sio"));
        Assert.That(UsbSysfs.InterfaceDriver(sys.Sys, location, 1), Is.Null);
    }

    [Test]
    public void AHostWithoutUsbHasNoDevices()
    {
        using var sys = new SysfsFixture();
        Assert.That(UsbSysfs.Devices(sys.Sys), Is.Empty);
        Assert.That(UsbSysfs.InterfaceDriver(sys.Sys, new UsbLocation(1, [1], 2), 0), Is.Null);
    }
}
