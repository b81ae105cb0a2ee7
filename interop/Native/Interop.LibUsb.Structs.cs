using System.Runtime.InteropServices;

namespace FpgaAccel.Interop;

internal static partial class Interop
{
    internal static partial class LibUsb
    {
        // libusb.h structs, field for field in C order with the C names (host structs, not the packed wire
        // descriptors). Pointers are nint. Sizes and offsets are checked against the header by UsbLayoutTests.
        [StructLayout(LayoutKind.Sequential)]
        internal struct libusb_device_descriptor
        {
            public byte bLength;
            public byte bDescriptorType;
            public ushort bcdUSB;
            public byte bDeviceClass;
            public byte bDeviceSubClass;
            public byte bDeviceProtocol;
            public byte bMaxPacketSize0;
            public ushort idVendor;
            public ushort idProduct;
            public ushort bcdDevice;
            public byte iManufacturer;
            public byte iProduct;
            public byte iSerialNumber;
            public byte bNumConfigurations;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct libusb_endpoint_descriptor
        {
            public byte bLength;
            public byte bDescriptorType;
            public byte bEndpointAddress;
            public byte bmAttributes;
            public ushort wMaxPacketSize;
            public byte bInterval;
            public byte bRefresh;
            public byte bSynchAddress;
            public nint extra;
            public int extra_length;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct libusb_interface_descriptor
        {
            public byte bLength;
            public byte bDescriptorType;
            public byte bInterfaceNumber;
            public byte bAlternateSetting;
            public byte bNumEndpoints;
            public byte bInterfaceClass;
            public byte bInterfaceSubClass;
            public byte bInterfaceProtocol;
            public byte iInterface;

            /// <summary>const struct libusb_endpoint_descriptor *: bNumEndpoints of them.</summary>
            public nint endpoint;
            public nint extra;
            public int extra_length;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct libusb_interface
        {
            /// <summary>const struct libusb_interface_descriptor *: num_altsetting of them.</summary>
            public nint altsetting;
            public int num_altsetting;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct libusb_config_descriptor
        {
            public byte bLength;
            public byte bDescriptorType;
            public ushort wTotalLength;
            public byte bNumInterfaces;
            public byte bConfigurationValue;
            public byte iConfiguration;
            public byte bmAttributes;
            public byte MaxPower;

            /// <summary>const struct libusb_interface *: bNumInterfaces of them (the C field is named interface).</summary>
            public nint @interface;
            public nint extra;
            public int extra_length;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct libusb_version
        {
            public ushort major;
            public ushort minor;
            public ushort micro;
            public ushort nano;
            public nint rc;
            public nint describe;
        }
    }
}
