using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;
using FpgaAccel.Diagnostics;
using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.Driver.Faults;
using FpgaAccel.Driver.Mmu;
using FpgaAccel.HwSim;
using FpgaAccel.Tests.Support;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver;

/// <summary>
/// The meters README documents for <c>dotnet-counters monitor --counters FpgaAccel.Driver,FpgaAccel.Faults</c> (issue 15,
/// item 7): every instrument README names exists under the meter README puts it in, every instrument those meters
/// publish is named in README, and a faulting run moves the ones a fault must move. A <see cref="MeterListener"/> sees
/// what dotnet-counters sees (the EventSource bridge listens the same way).
/// </summary>
public class MeterNamesTests
{
    [Test]
    public void ReadmeNamesBothMetersAndTheirInstruments()
    {
        var documented = Documented();
        Assert.That(documented.Keys, Is.EquivalentTo(new[] { FaultMetrics.MeterName, PagingMetrics.MeterName }));
        Assert.That(documented[FaultMetrics.MeterName], Does.Contain("fpgaaccel.fault.dropins").And.Contain("fpgaaccel.ondemand.limit_evictions"), "a name written '.x' continues the one before it");
    }

    [Test]
    public async Task TheInstrumentsReadmeNamesExistAndPublishDuringAFaultingRun()
    {
        var documented = Documented();
        var published = new ConcurrentDictionary<(string Meter, string Instrument), byte>();
        var sums = new ConcurrentDictionary<string, double>();
        var measurements = new ConcurrentDictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (documented.ContainsKey(instrument.Meter.Name))
            {
                published[(instrument.Meter.Name, instrument.Name)] = 0;
                l.EnableMeasurementEvents(instrument);
            }
        };
        void Record(Instrument instrument, double value)
        {
            measurements.AddOrUpdate(instrument.Name, 1, (_, n) => n + 1);
            sums.AddOrUpdate(instrument.Name, value, (_, s) => s + value);
        }

        listener.SetMeasurementEventCallback<long>((i, v, _, _) => Record(i, v));
        listener.SetMeasurementEventCallback<int>((i, v, _, _) => Record(i, v));
        listener.SetMeasurementEventCallback<double>((i, v, _, _) => Record(i, v));
        listener.Start();

        using var device = FpgaDevice.Open(new ModelBackend(new ModelOptions { Clock = ClockMode.Virtual }), new FpgaDeviceOptions { OnDemandBudgetPages = 16 });
        var result = await Jitter.RunAsync(device, BufferMode.OnDemand, new JitterOptions { Count = 48, Warmup = 4, Size = 8192 });
        listener.RecordObservableInstruments();
        Assert.That(result.Faults, Is.GreaterThan(0));

        foreach (var (meter, names) in documented)
        {
            foreach (var name in names)
            {
                Assert.That(published.ContainsKey((meter, name)), Is.True, $"README names {name} in meter {meter}, which publishes no such instrument");
            }
        }

        var undocumented = published.Keys.Where(k => !documented[k.Meter].Contains(k.Instrument)).Select(k => $"{k.Meter}/{k.Instrument}").ToArray();
        Assert.That(undocumented, Is.Empty, "instruments README does not name");

        // What a faulting, evicting run must move (other devices open in parallel tests can only add).
        Assert.That(sums.GetValueOrDefault("fpgaaccel.faults"), Is.GreaterThanOrEqualTo(result.Faults));
        Assert.That(sums.GetValueOrDefault("fpgaaccel.fault.dropins"), Is.GreaterThan(0));
        Assert.That(measurements.GetValueOrDefault("fpgaaccel.fault.service_time"), Is.GreaterThanOrEqualTo(result.Faults), "one service time per fault");
        foreach (var observed in new[] { "fpgaaccel.ondemand.evicted_pages", "fpgaaccel.ondemand.eviction_batches", "fpgaaccel.ondemand.eviction_fences", "fpgaaccel.ondemand.fault_around_pages", "fpgaaccel.ondemand.budget_pages", "fpgaaccel.ondemand.evictions" })
        {
            Assert.That(sums.GetValueOrDefault(observed), Is.GreaterThan(0), $"{observed} after a run that evicted in batches with fault-around on");
        }

        foreach (var observable in documented.Values.SelectMany(n => n).Where(n => n.Contains(".ondemand.", StringComparison.Ordinal)))
        {
            Assert.That(measurements.GetValueOrDefault(observable), Is.GreaterThan(0), $"{observable} is observed");
        }
    }

    // README's Metrics bullet: "meter `Name` (... `full.name`, `.sibling` ...)"; a name that starts with a dot replaces the
    // last segment of the name before it.
    private static Dictionary<string, HashSet<string>> Documented()
    {
        var readme = File.ReadAllText(Path.Combine(Repository.Root, "README.md"));
        var start = readme.IndexOf("- **Metrics**", StringComparison.Ordinal);
        Assert.That(start, Is.GreaterThanOrEqualTo(0), "README has a Metrics bullet");
        var end = readme.IndexOf("\n- **", start + 1, StringComparison.Ordinal);
        var bullet = readme[start..(end < 0 ? readme.Length : end)];
        var result = new Dictionary<string, HashSet<string>>();
        foreach (Match meter in Regex.Matches(bullet, @"meter `([^`]+)` \("))
        {
            var depth = 0;
            var i = meter.Index + meter.Length - 1;
            var open = i;
            for (; i < bullet.Length; i++)
            {
                depth += bullet[i] == '(' ? 1 : bullet[i] == ')' ? -1 : 0;
                if (depth == 0)
                {
                    break;
                }
            }

            var names = new HashSet<string>();
            var previous = string.Empty;
            foreach (Match name in Regex.Matches(bullet[open..i], @"`([a-z0-9_.]+)`"))
            {
                var text = name.Groups[1].Value;
                previous = text.StartsWith('.') ? previous[..previous.LastIndexOf('.')] + text : text;
                names.Add(previous);
            }

            result[meter.Groups[1].Value] = names;
        }

        return result;
    }
}
