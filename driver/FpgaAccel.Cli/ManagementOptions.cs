using System.CommandLine;
using System.Globalization;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.Interop.Usb;
using FpgaAccel.Management;
using FpgaAccel.Management.Ftdi;

namespace FpgaAccel.Cli;

/// <summary>Options that say where the board's management port is: <c>bmc</c> and <c>doctor</c> take them.</summary>
internal sealed class ManagementOptions
{
    public Option<string> Port { get; } = new("--port")
    {
        Description = "Where the BMC is: usb (the board's FTDI bridge, through libusb) or the path of a Unix socket or terminal.",
        DefaultValueFactory = _ => ManagementPort.Usb,
    };

    public Option<string> UsbId { get; } = new("--usb-id")
    {
        Description = "USB vendor:product of the bridge (spec 8: 0403:6010, an FT2232; QEMU's usb-serial is 0403:6001).",
        DefaultValueFactory = _ => $"{BoardManagement.UsbVendorId:x4}:{BoardManagement.UsbProductId:x4}",
    };

    public Option<string?> UsbInterface { get; } = new("--usb-interface")
    {
        Description = "The bridge's interface wired to the BMC: A, B, C, D or 0-3 (default: B on 0403:6010, A on a single-channel part).",
    };

    public Option<string?> UsbPath { get; } = new("--usb-path")
    {
        Description = "The bridge's USB path as sysfs names it (e.g. 1-4.2), when several boards are attached.",
    };

    public Option<bool> NoDetach { get; } = new("--no-detach")
    {
        Description = "Do not detach a kernel driver (ftdi_sio) that holds the BMC's interface; fail instead.",
    };

    public void AddTo(Command command, bool withPort = true)
    {
        if (withPort)
        {
            command.Options.Add(Port);
        }

        command.Options.Add(UsbId);
        command.Options.Add(UsbInterface);
        command.Options.Add(UsbPath);
        if (withPort)
        {
            command.Options.Add(NoDetach);
        }
    }

    /// <summary>The port options the command line names; <see cref="UsageException"/> for a malformed value.</summary>
    public ManagementPortOptions ToPortOptions(ParseResult result) => new()
    {
        Port = result.GetValue(Port) ?? ManagementPort.Usb,
        Usb = ToFtdiOptions(result) with { DetachKernelDriver = !result.GetValue(NoDetach) },
    };

    public FtdiOptions ToFtdiOptions(ParseResult result)
    {
        var idText = result.GetValue(UsbId)!;
        if (!UsbDeviceId.TryParse(idText, out var id))
        {
            throw new UsageException($"--usb-id '{idText}' is not a USB vendor:product pair: write it like 0403:6010 (as lsusb prints it).");
        }

        return new FtdiOptions { Id = id, Interface = ParseInterface(result.GetValue(UsbInterface)), UsbPath = result.GetValue(UsbPath) };
    }

    private static int? ParseInterface(string? text)
    {
        if (text is null)
        {
            return null;
        }

        var t = text.Trim();
        if (t.Length == 1 && char.ToUpperInvariant(t[0]) is >= 'A' and <= 'D')
        {
            return char.ToUpperInvariant(t[0]) - 'A';
        }

        if (int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 0 and <= 3)
        {
            return n;
        }

        throw new UsageException($"--usb-interface '{text}' is not an FTDI interface: write A, B, C or D (or 0 to 3).");
    }
}
