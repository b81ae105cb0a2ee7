using System.Text;
using FpgaAccel.Interop.Usb;
using FpgaAccel.Management;
using FpgaAccel.Management.Ftdi;
using Microsoft.Extensions.Logging.Abstractions;
using NUnit.Framework;
using LibUsb = FpgaAccel.Interop.Interop.LibUsb;

namespace FpgaAccel.Tests.Management.Ftdi;

/// <summary>
/// The FTDI link over a scripted USB device: the set-up requests, the kernel driver detached and given back, the
/// claim released, bytes that come with a timeout kept, and status-only packets waited through.
/// </summary>
public class FtdiSerialLinkTests
{
    // Interface B of an FT2232 (port 2 in wIndex); interface A of QEMU's FT232 (port 0).
    private static readonly FtdiLinkLayout s_ft2232B = new(1, 2, 0x83, 0x04, 64, "usb 1-1 (0403:6010, interface B)");
    private static readonly FtdiLinkLayout s_ft232A = new(0, 0, 0x81, 0x02, 64, "usb 1-1 (0403:6001, interface A)");

    [Test]
    public void SetUpDetachesTheKernelDriverClaimsAndConfigures115200_8N1()
    {
        var usb = new FakeFtdiUsb { KernelDriver = "ftdi_sio" };
        using var link = Open(usb, s_ft2232B);

        Assert.That(usb.Calls.Take(3), Is.EqualTo(new[] { "active 1", "detach 1", "claim 1" }));
        Assert.That(usb.Controls, Is.EqualTo(new[]
        {
            (0x40, 0x00, 0x0000, 0x0002), // reset the port
            (0x40, 0x03, 0x001A, 0x0002), // 115200 baud: divisor 26, port B
            (0x40, 0x04, 0x0008, 0x0002), // 8N1
            (0x40, 0x02, 0x0000, 0x0002), // no flow control
            (0x40, 0x01, 0x0303, 0x0002), // DTR and RTS up
            (0x40, 0x09, 0x0002, 0x0002), // latency timer 2 ms
            (0x40, 0x00, 0x0001, 0x0002), // purge RX
            (0x40, 0x00, 0x0002, 0x0002), // purge TX
        }));
    }

    [Test]
    public void ASingleChannelPartTakesPortZero()
    {
        var usb = new FakeFtdiUsb();
        using var link = Open(usb, s_ft232A);
        Assert.That(usb.Controls.Select(c => c.Index), Has.All.Zero);
        Assert.That(usb.Calls, Does.Not.Contain("detach 0"), "no kernel driver was bound, none is detached");
    }

    [Test]
    public void DisposeReleasesTheInterfaceAndGivesTheKernelDriverBack()
    {
        var usb = new FakeFtdiUsb { KernelDriver = "ftdi_sio" };
        var link = Open(usb, s_ft2232B);
        usb.Calls.Clear();
        link.Dispose();
        link.Dispose();
        Assert.That(usb.Calls, Is.EqualTo(new[] { "release 1", "attach 1", "dispose" }), "once, in that order");
        Assert.That(usb.Claimed, Is.False);
        Assert.That(usb.DriverBound, Is.True, "/dev/ttyUSBn is back");
        Assert.That(() => link.Read(new byte[1], TimeSpan.FromMilliseconds(1)), Throws.TypeOf<ObjectDisposedException>());
    }

    [Test]
    public void AFailingReleaseStillGivesTheDriverBackAndDisposeDoesNotThrow()
    {
        var usb = new FakeFtdiUsb { KernelDriver = "ftdi_sio", ReleaseFails = true };
        var link = Open(usb, s_ft2232B);
        Assert.That(link.Dispose, Throws.Nothing);
        Assert.That(usb.DriverBound, Is.True);
        Assert.That(usb.Disposed, Is.True);
    }

    [Test]
    public void AClaimThatFailsUndoesTheDetachAndCloses()
    {
        var usb = new FakeFtdiUsb { KernelDriver = "ftdi_sio", ClaimError = LibUsb.LIBUSB_ERROR_BUSY };
        var error = Assert.Throws<UsbException>(() => Open(usb, s_ft2232B));
        Assert.That(error!.Error, Is.EqualTo(UsbError.Busy));
        Assert.That(usb.DriverBound, Is.True, "ftdi_sio is given back");
        Assert.That(usb.Disposed, Is.True);
    }

    [Test]
    public void AStalledOptionalRequestIsSkippedAndARequiredOneFails()
    {
        var usb = new FakeFtdiUsb { StalledRequests = { 0x09 } };
        using (Open(usb, s_ft232A))
        {
            Assert.That(usb.Controls.Select(c => c.Request), Does.Contain(0x00).And.Contain(0x04), "set-up went on past the latency timer");
        }

        usb = new FakeFtdiUsb { StalledRequests = { 0x03 } };
        Assert.That(() => Open(usb, s_ft232A), Throws.TypeOf<UsbException>().With.Property(nameof(UsbException.Error)).EqualTo(UsbError.Pipe));
        Assert.That(usb.Claimed, Is.False, "a failed set-up releases what it claimed");
    }

    [Test]
    public void ReadsStripStatusBytesAtEveryPacketAndKeepWhatCameWithATimeout()
    {
        var usb = new FakeFtdiUsb();
        using var link = Open(usb, s_ft232A);
        var first = new string('a', 62);
        usb.Transfers.Enqueue((Packets(first, "OK\n"), TimedOut: false));
        usb.Transfers.Enqueue((Packets("late"), TimedOut: true));
        var buffer = new byte[256];

        var n = link.Read(buffer, TimeSpan.FromSeconds(1));
        Assert.That(Encoding.ASCII.GetString(buffer, 0, n), Is.EqualTo(first + "OK\n"));
        n = link.Read(buffer, TimeSpan.FromSeconds(1));
        Assert.That(Encoding.ASCII.GetString(buffer, 0, n), Is.EqualTo("late"), "bytes that came with LIBUSB_ERROR_TIMEOUT count");
        Assert.That(link.Read(buffer, TimeSpan.FromMilliseconds(20)), Is.Zero, "nothing more: the timeout ends the read");
    }

    [Test]
    public void StatusOnlyAndZeroLengthPacketsAreWaitedThrough()
    {
        var usb = new FakeFtdiUsb();
        using var link = Open(usb, s_ft232A);
        // What a real chip sends when idle (status only, every latency period), then a zero-length packet, then data.
        usb.Transfers.Enqueue(([0x01, 0x60], false));
        usb.Transfers.Enqueue(([], false));
        usb.Transfers.Enqueue(([0x01, 0x60], false));
        usb.Transfers.Enqueue((Packets("OK 0\n"), false));
        var buffer = new byte[64];
        var n = link.Read(buffer, TimeSpan.FromSeconds(5));
        Assert.That(Encoding.ASCII.GetString(buffer, 0, n), Is.EqualTo("OK 0\n"));
        Assert.That(link.LineStatus.StatusOnlyPackets, Is.EqualTo(2));
        Assert.That(link.LineStatus.RuntPackets, Is.EqualTo(1));
    }

    [Test]
    public void APayloadLargerThanTheCallersBufferIsKeptForTheNextRead()
    {
        var usb = new FakeFtdiUsb();
        using var link = Open(usb, s_ft232A);
        usb.Transfers.Enqueue((Packets("OK 12345\n"), false));
        var small = new byte[4];
        var text = new StringBuilder();
        for (var i = 0; i < 3; i++)
        {
            text.Append(Encoding.ASCII.GetString(small, 0, link.Read(small, TimeSpan.FromMilliseconds(50))));
        }

        Assert.That(text.ToString(), Is.EqualTo("OK 12345\n"));
        Assert.That(usb.BulkReads, Is.EqualTo(1), "the rest came from what the first transfer brought");
    }

    [Test]
    public void AWriteTheBridgeDoesNotTakeInTimeFails()
    {
        var usb = new FakeFtdiUsb { WriteAccepts = 3 };
        using var link = Open(usb, s_ft232A);
        var error = Assert.Throws<SerialLinkException>(() => link.Write("VERSION\n"u8, TimeSpan.FromMilliseconds(30)));
        Assert.That(error!.Message, Does.Contain("took 3 of 8 bytes"));
        usb.WriteAccepts = int.MaxValue;
        link.Write("TEMP\n"u8, TimeSpan.FromSeconds(1));
        Assert.That(Encoding.ASCII.GetString([.. usb.Written]), Does.EndWith("TEMP\n"));
    }

    private static FtdiSerialLink Open(FakeFtdiUsb usb, FtdiLinkLayout layout)
    {
        var link = new FtdiSerialLink(usb, layout, new FtdiOptions(), NullLogger.Instance);
        link.Initialize();
        return link;
    }

    // Payload split into 64-byte packets, each with QEMU's status bytes in front.
    private static byte[] Packets(params string[] payloads) =>
        [.. payloads.SelectMany(p => new byte[] { 0xb1, 0x00 }.Concat(Encoding.ASCII.GetBytes(p)))];

    /// <summary>A USB device that records what it is asked and answers bulk reads from a queue (empty: a timeout).</summary>
    private sealed class FakeFtdiUsb : IFtdiUsb
    {
        public List<string> Calls { get; } = [];

        public List<(int RequestType, int Request, int Value, int Index)> Controls { get; } = [];

        public Queue<(byte[] Bytes, bool TimedOut)> Transfers { get; } = new();

        public List<byte> Written { get; } = [];

        public HashSet<int> StalledRequests { get; } = [];

        public string? KernelDriver { get; init; }

        public int? ClaimError { get; init; }

        public bool ReleaseFails { get; init; }

        public int WriteAccepts { get; set; } = int.MaxValue;

        public bool DriverBound { get; private set; }

        public bool Claimed { get; private set; }

        public bool Disposed { get; private set; }

        public int BulkReads { get; private set; }

        private bool _bound = true;

        public bool IsKernelDriverActive(int interfaceNumber)
        {
            Calls.Add($"active {interfaceNumber}");
            DriverBound = KernelDriver is not null && _bound;
            return DriverBound;
        }

        public string? KernelDriverOf(int interfaceNumber) => DriverBound ? KernelDriver : null;

        public void DetachKernelDriver(int interfaceNumber)
        {
            Calls.Add($"detach {interfaceNumber}");
            _bound = false;
            DriverBound = false;
        }

        public void AttachKernelDriver(int interfaceNumber)
        {
            Calls.Add($"attach {interfaceNumber}");
            _bound = true;
            DriverBound = true;
        }

        public void ClaimInterface(int interfaceNumber)
        {
            Calls.Add($"claim {interfaceNumber}");
            if (ClaimError is { } code)
            {
                throw UsbErrors.From("libusb_claim_interface", code, new UsbErrorSubject(null, null, interfaceNumber));
            }

            Claimed = true;
        }

        public void ReleaseInterface(int interfaceNumber)
        {
            Calls.Add($"release {interfaceNumber}");
            Claimed = false;
            if (ReleaseFails)
            {
                throw UsbErrors.From("libusb_release_interface", LibUsb.LIBUSB_ERROR_NO_DEVICE, new UsbErrorSubject(null, null, interfaceNumber));
            }
        }

        public int ControlTransfer(UsbControlSetup setup, Span<byte> data, TimeSpan timeout)
        {
            Controls.Add((setup.RequestType, setup.Request, setup.Value, setup.Index));
            if (StalledRequests.Contains(setup.Request))
            {
                throw UsbErrors.From("libusb_control_transfer", LibUsb.LIBUSB_ERROR_PIPE, new UsbErrorSubject());
            }

            return data.Length;
        }

        public UsbBulkResult BulkRead(byte endpoint, Span<byte> buffer, TimeSpan timeout)
        {
            BulkReads++;
            if (!Transfers.TryDequeue(out var transfer))
            {
                Thread.Sleep(Math.Min(10, (int)timeout.TotalMilliseconds));
                return new UsbBulkResult(0, TimedOut: true);
            }

            transfer.Bytes.CopyTo(buffer);
            return new UsbBulkResult(transfer.Bytes.Length, transfer.TimedOut);
        }

        public UsbBulkResult BulkWrite(byte endpoint, ReadOnlySpan<byte> data, TimeSpan timeout)
        {
            var n = Math.Min(data.Length, WriteAccepts);
            WriteAccepts -= n;
            Written.AddRange(data[..n].ToArray());
            if (n < data.Length)
            {
                Thread.Sleep(Math.Min(10, (int)timeout.TotalMilliseconds));
            }

            return new UsbBulkResult(n, TimedOut: n < data.Length);
        }

        public void Dispose()
        {
            Calls.Add("dispose");
            Disposed = true;
        }
    }
}
