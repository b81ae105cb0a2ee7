using BenchmarkDotNet.Attributes;
using FpgaAccel.Driver.Faults;
using FpgaAccel.FirmwareInterface;

namespace FpgaAccel.Perf;

/// <summary>
/// The fault path's lookup: the lock-free mirror against the same radix table guarded by a
/// <see cref="ReaderWriterLockSlim"/> (the baseline), uncontended and while another thread maps and
/// unmaps pages in the same table.
/// </summary>
[MemoryDiagnoser]
public class LookupBenchmarks
{
    private const int Pages = 4096;
    private readonly AddressMirror _mirror = new();
    private readonly AddressMirror _lockedTable = new();
    private readonly ReaderWriterLockSlim _rwLock = new();
    private readonly ulong _base = 0x7F00_0000_0000;
    private Thread? _writer;
    private volatile bool _stop;
    private int _next;

    [Params(false, true)]
    public bool Contended { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var entry = MirrorEntry.Create(7, MirrorFlags.Valid | MirrorFlags.Read | MirrorFlags.Write | MirrorFlags.Present);
        for (var i = 0; i < Pages; i++)
        {
            var dva = _base + ((ulong)i * PageTableFormat.PageSize);
            _mirror.Set(dva, entry);
            _lockedTable.Set(dva, entry);
        }

        if (Contended)
        {
            _stop = false;
            _writer = new Thread(MapAndUnmap) { IsBackground = true };
            _writer.Start();
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop = true;
        _writer?.Join();
        _rwLock.Dispose();
    }

    [Benchmark(Baseline = true)]
    public ulong ReaderWriterLocked()
    {
        var dva = NextDva();
        _rwLock.EnterReadLock();
        try
        {
            return _lockedTable.Lookup(dva).Raw;
        }
        finally
        {
            _rwLock.ExitReadLock();
        }
    }

    [Benchmark]
    public ulong LockFree() => _mirror.Lookup(NextDva()).Raw;

    private ulong NextDva() => _base + ((ulong)(_next++ & (Pages - 1)) * PageTableFormat.PageSize) + 0x123;

    // The other thread: what registration, eviction and unpinning do to the table, as fast as it can.
    private void MapAndUnmap()
    {
        var i = 0;
        var present = MirrorEntry.Create(7, MirrorFlags.Valid | MirrorFlags.Read | MirrorFlags.Write | MirrorFlags.Present);
        var absent = MirrorEntry.Create(7, MirrorFlags.Valid | MirrorFlags.Read | MirrorFlags.Write | MirrorFlags.OnDemand);
        while (!_stop)
        {
            var dva = _base + ((ulong)(i++ & (Pages - 1)) * PageTableFormat.PageSize);
            var next = (i & 1) == 0 ? present : absent;
            lock (_mirror.Lock)
            {
                _mirror.Set(dva, next);
            }

            _rwLock.EnterWriteLock();
            try
            {
                _lockedTable.Set(dva, next);
            }
            finally
            {
                _rwLock.ExitWriteLock();
            }
        }
    }
}
