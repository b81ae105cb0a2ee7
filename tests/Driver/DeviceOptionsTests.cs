using FpgaAccel.Driver;
using FpgaAccel.Driver.Backends;
using FpgaAccel.HwSim;
using NUnit.Framework;

namespace FpgaAccel.Tests.Driver;

/// <summary>
/// Every public option is validated with a typed error naming the value, the rule and the fix (issue 11, rules that hold
/// everywhere), before anything is opened: no null reaches the driver as a NullReferenceException later.
/// </summary>
public class DeviceOptionsTests
{
    private static IEnumerable<TestCaseData> BadOptions()
    {
        var model = new FpgaDeviceOptions { Backend = BackendKind.Model, Model = new ModelOptions { Clock = ClockMode.Virtual } };
        yield return new TestCaseData(model with { LoggerFactory = null! }, "LoggerFactory").SetArgDisplayNames("no logger factory");
        yield return new TestCaseData(model with { Model = null! }, "Model").SetArgDisplayNames("no model options");
        yield return new TestCaseData(model with { SysfsRoot = null! }, "SysfsRoot").SetArgDisplayNames("no sysfs root");
        yield return new TestCaseData(model with { DevRoot = "" }, "DevRoot").SetArgDisplayNames("empty dev root");
        yield return new TestCaseData(model with { PciAddress = "not-an-address" }, "PciAddress").SetArgDisplayNames("malformed PCI address");
        yield return new TestCaseData(model with { VendorId = 0xFFFF }, "VendorId").SetArgDisplayNames("vendor all ones");
        yield return new TestCaseData(model with { DeviceId = 0xFFFF }, "DeviceId").SetArgDisplayNames("device all ones");
        yield return new TestCaseData(model with { MemlockLimitBytes = 0 }, "MemlockLimitBytes").SetArgDisplayNames("zero memlock limit");
        yield return new TestCaseData(model with { Backend = (BackendKind)42 }, null).SetArgDisplayNames("unknown backend");
        yield return new TestCaseData(model with { ResetTimeout = TimeSpan.Zero }, "ResetTimeout").SetArgDisplayNames("zero reset timeout");
        yield return new TestCaseData(model with { DeviceTimeout = TimeSpan.FromDays(1) }, "DeviceTimeout").SetArgDisplayNames("day-long device timeout");
        yield return new TestCaseData(model with { OnDemandBudgetPages = -1 }, "OnDemandBudgetPages").SetArgDisplayNames("negative budget");
    }

    [TestCaseSource(nameof(BadOptions))]
    public void BadOptionsAreTypedErrorsAtOpen(FpgaDeviceOptions options, string? option)
    {
        var ex = Assert.Throws(Is.InstanceOf<FpgaAccelException>(), () => FpgaDevice.Open(options).Dispose())!;
        if (option is not null)
        {
            Assert.That(ex, Is.TypeOf<InvalidDeviceOptionException>());
            Assert.That(((InvalidDeviceOptionException)ex).Option, Is.EqualTo(option));
        }
    }
}
