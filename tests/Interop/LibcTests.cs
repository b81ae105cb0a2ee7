using FpgaAccel.Interop;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Interop;

public class LibcTests
{
    [Test]
    public void EventFdCountsSignalsAndDrains()
    {
        using var fd = EventFd.Create();
        Assert.That(fd.TryRead(out _), Is.False, "a fresh eventfd reads nothing");
        fd.Signal();
        fd.Signal(2);
        Assert.That(fd.TryRead(out var value), Is.True);
        Assert.That(value, Is.EqualTo(3UL));
        Assert.That(fd.TryRead(out _), Is.False, "a read drains the counter");
    }

    [Test]
    public void EpollReportsReadyEventFdWithItsToken()
    {
        using var a = EventFd.Create();
        using var b = EventFd.Create();
        using var epoll = Epoll.Create();
        epoll.Add(a.Handle, EpollEvents.In, 10);
        epoll.Add(b.Handle, EpollEvents.In, 20);
        Span<EpollReady> ready = stackalloc EpollReady[4];
        Assert.That(epoll.Wait(ready, 0), Is.Zero, "nothing is ready yet");
        b.Signal();
        var n = epoll.Wait(ready, 1000);
        Assert.That(n, Is.EqualTo(1));
        Assert.That(ready[0].Token, Is.EqualTo(20UL));
        Assert.That(ready[0].Events.HasFlag(EpollEvents.In), Is.True);
    }

    [Test]
    public void EpollCtlOnClosedDescriptorNamesCallAndErrno()
    {
        using var epoll = Epoll.Create();
        var closed = EventFd.Create();
        var raw = new SafeFileDescriptor(closed.Handle.Fd, ownsHandle: false);
        closed.Dispose();
        var ex = Assert.Throws<SystemCallException>(() => epoll.Add(raw, EpollEvents.In, 1))!;
        Assert.That(ex.Call, Is.EqualTo("epoll_ctl"));
        Assert.That(ex.Errno, Is.EqualTo(Errno.EBADF));
        Assert.That(ex.Message, Does.StartWith("epoll_ctl: EBADF"));
    }

    [Test]
    public unsafe void AnonymousMappingIsZeroedWritableAndUnmapped()
    {
        nint address;
        using (var map = MemoryMapping.Anonymous(3 * 4096))
        {
            address = map.Address;
            var bytes = new Span<byte>((void*)map.Address, 3 * 4096);
            Assert.That(bytes.IndexOfAnyExcept((byte)0), Is.EqualTo(-1));
            bytes[8191] = 0x5A;
            Assert.That(bytes[8191], Is.EqualTo(0x5A));
            Assert.That((long)map.Address % 4096, Is.Zero);
            Assert.That(IsMapped(address), Is.True);
        }

        Assert.That(IsMapped(address), Is.False, "the range is unmapped after dispose");
    }

    [Test]
    public void HugePageMappingsComeFromTheReservedPoolOrFailWithEnomem()
    {
        var free = File.Exists("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
            ? int.Parse(File.ReadAllText("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").Trim(), System.Globalization.CultureInfo.InvariantCulture)
            : 0;
        if (free == 0)
        {
            var ex = Assert.Throws<SystemCallException>(() => MemoryMapping.AnonymousHugePages(2 << 20))!;
            Assert.That(ex.Errno, Is.EqualTo(Errno.ENOMEM), "no huge page reserved: mmap(MAP_HUGETLB) has none to give");
            return;
        }

        using var map = MemoryMapping.AnonymousHugePages(2 << 20);
        Assert.That((long)map.Address % (2 << 20), Is.Zero, "a huge page is 2 MiB aligned");
    }

    private static bool IsMapped(nint address)
    {
        foreach (var line in File.ReadAllLines("/proc/self/maps"))
        {
            var range = line.AsSpan(0, line.IndexOf(' '));
            var dash = range.IndexOf('-');
            var start = ulong.Parse(range[..dash], System.Globalization.NumberStyles.HexNumber);
            var end = ulong.Parse(range[(dash + 1)..], System.Globalization.NumberStyles.HexNumber);
            if ((ulong)address >= start && (ulong)address < end)
            {
                return true;
            }
        }

        return false;
    }

    [Test]
    public void MmapWithBadDescriptorIsTypedError()
    {
        using var bad = new SafeFileDescriptor(999_999, ownsHandle: false);
        var ex = Assert.Throws<SystemCallException>(() => MemoryMapping.Shared(bad, 4096, 0, MemoryProtection.Read))!;
        Assert.That(ex.Call, Is.EqualTo("mmap"));
        Assert.That(ex.ErrnoName, Is.EqualTo("EBADF"));
    }

    [Test]
    public void UnknownErrnoIsNamedByNumber() =>
        Assert.That(SystemCallException.NameOf(4095), Is.EqualTo("errno 4095"));

    [Test]
    public void DisposedDescriptorsAreClosed()
    {
        var before = FdCount.Now();
        for (var i = 0; i < 20; i++)
        {
            using var e = EventFd.Create();
            using var p = Epoll.Create();
            p.Add(e.Handle, EpollEvents.In, 0);
        }

        Assert.That(FdCount.SettledAtMost(before), Is.LessThanOrEqualTo(before));
    }

    [Test]
    public void HeldDescriptorStaysOpenUntilReleasedEvenWhenDisposed()
    {
        // A distinctive counter names this eventfd in /proc/self/fdinfo, so a reused number is not mistaken for it.
        const uint mark = 0x5EED_1234;
        var eventFd = EventFd.Create(mark);
        var number = eventFd.Handle.Fd;
        using (var held = new HeldDescriptors(1))
        {
            Assert.That(held.Hold(eventFd.Handle), Is.EqualTo(number));
            Assert.That(held.Hold(null), Is.EqualTo(-1), "no descriptor is -1, as the kernel reads it");
            eventFd.Dispose();
            Assert.That(EventFdCount(number), Is.EqualTo((ulong)mark), "disposed while held: still open");
            Assert.Throws<InvalidOperationException>(() => held.Hold(eventFd.Handle), "a second descriptor does not fit in room for one");
        }

        Assert.That(EventFdCount(number), Is.Not.EqualTo((ulong)mark), "closed once the hold is released");
        using var again = new HeldDescriptors(1);
        Assert.Throws<ObjectDisposedException>(() => again.Hold(eventFd.Handle), "a closed descriptor cannot be held");
    }

    [Test]
    public void FailedOpenIsTypedAndLeavesNothingOpen()
    {
        var before = FdCount.Now();
        var path = Path.Combine(Path.GetTempPath(), "no-such-" + Guid.NewGuid().ToString("N"));
        var fd = global::FpgaAccel.Interop.Interop.Libc.open(path, global::FpgaAccel.Interop.Interop.Libc.O_RDONLY);
        var ex = Assert.Throws<SystemCallException>(() => global::FpgaAccel.Interop.Interop.Libc.Check(fd, $"open({path})"))!;
        Assert.That(ex.Errno, Is.EqualTo(Errno.ENOENT));
        Assert.That(ex.Message, Does.StartWith($"open({path}): ENOENT"));
        Assert.That(fd.IsClosed, Is.True, "the invalid handle is disposed by the check");
        Assert.That(FdCount.SettledAtMost(before), Is.LessThanOrEqualTo(before));
    }

    /// <summary>The counter of eventfd <paramref name="fd"/> from /proc/self/fdinfo, or null when that number is not an open eventfd.</summary>
    private static ulong? EventFdCount(int fd)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/self/fdinfo/{fd}"))
            {
                if (line.StartsWith("eventfd-count:", StringComparison.Ordinal))
                {
                    return ulong.Parse(line.AsSpan(14).Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
        }

        return null;
    }
}
