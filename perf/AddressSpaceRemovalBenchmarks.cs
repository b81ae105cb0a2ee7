using BenchmarkDotNet.Attributes;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;

namespace FpgaAccel.Perf;

/// <summary>
/// Issue 15, item 4: a removal (pin then unpin of 16 pages, translated by the devices' tables) with one device attached to
/// an address space against two. The two-device removal issues both TLB invalidations before it waits on either fence
/// (F20), so the target is at most 1.3x the one-device time. Wall clock: the fence is the model's real invalidation.
/// </summary>
public class AddressSpaceRemovalBenchmarks
{
    private readonly List<FpgaDevice> _devices = [];
    private AddressSpace _one = null!;
    private AddressSpace _two = null!;
    private HostBuffer _buffer = null!;

    [GlobalSetup]
    public void Setup()
    {
        for (var i = 0; i < 3; i++)
        {
            _devices.Add(FpgaDevice.Open(new ModelBackend(new ModelOptions()), new FpgaDeviceOptions()));
        }

        _one = new AddressSpace();
        _one.Attach(_devices[0]);
        _two = new AddressSpace();
        _two.Attach(_devices[1]);
        _two.Attach(_devices[2]);
        _buffer = HostBuffer.Allocate(16 * 4096);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _one.Dispose();
        _two.Dispose();
        _buffer.Dispose();
        foreach (var d in _devices)
        {
            d.Dispose();
        }
    }

    [Benchmark(Baseline = true)]
    public void PinAndRemoveOneDevice() => _one.Unpin(_one.Pin(_buffer.Address, _buffer.Length, DmaAccess.ReadWrite));

    [Benchmark]
    public void PinAndRemoveTwoDevices() => _two.Unpin(_two.Pin(_buffer.Address, _buffer.Length, DmaAccess.ReadWrite));
}
