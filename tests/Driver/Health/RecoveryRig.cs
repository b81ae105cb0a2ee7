using System.Globalization;
using FpgaAccel.Driver.Backends;
using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Tests.Support;

namespace FpgaAccel.Tests.Driver.Health;

/// <summary>
/// The model behind a backend that can hold work back, so that waiters are really outstanding when the device fails:
/// doorbells swallowed (commands never reach the device), INV_CMD swallowed (a fence never passes), FAULT_RESP
/// swallowed (a fault is never answered: its access stays held).
/// </summary>
internal sealed class HoldingBackend(ModelBackend inner) : DelegatingBackend(inner)
{
    public ModelBackend Model { get; } = inner;

    public Fa1Model Device => Model.Model;

    /// <summary>SQ_TAIL writes of queue 0 are dropped.</summary>
    public bool SwallowDoorbells { get; set; }

    /// <summary>INV_CMD writes are dropped: INV_DONE never reaches the fence.</summary>
    public bool SwallowInvalidations { get; set; }

    /// <summary>FAULT_RESP writes are dropped: the faulting access stays stalled.</summary>
    public bool SwallowFaultResponses { get; set; }

    public static HoldingBackend Create(ClockMode clock = ClockMode.Virtual) => new(new ModelBackend(new ModelOptions { Clock = clock }));

    public override void Write64(uint offset, ulong value)
    {
        if ((SwallowDoorbells && offset == Fa1Registers.Queue(0, Fa1Registers.SqTail))
            || (SwallowInvalidations && offset == Fa1Registers.InvCmd)
            || (SwallowFaultResponses && offset == Fa1Registers.FaultResp))
        {
            return;
        }

        base.Write64(offset, value);
    }
}

/// <summary>CPU time of this process's threads by name, from /proc (a thread that spins shows it; a blocked one does not).</summary>
internal static class ThreadCpu
{
    /// <summary>Clock ticks (utime + stime) used so far by every thread whose name starts with <paramref name="prefix"/>.</summary>
    public static long Ticks(string prefix)
    {
        long total = 0;
        foreach (var task in Directory.GetDirectories("/proc/self/task"))
        {
            try
            {
                var comm = File.ReadAllText(Path.Combine(task, "comm")).Trim();
                if (!comm.StartsWith(prefix, StringComparison.Ordinal))
                {
                    continue;
                }

                var stat = File.ReadAllText(Path.Combine(task, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                total += long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
            }
            catch (IOException)
            {
                // The thread ended while we looked.
            }
        }

        return total;
    }

    /// <summary>How many live threads have a name starting with <paramref name="prefix"/>.</summary>
    public static int Count(string prefix) => Directory.GetDirectories("/proc/self/task").Count(t =>
    {
        try
        {
            return File.ReadAllText(Path.Combine(t, "comm")).Trim().StartsWith(prefix, StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    });
}
