using FpgaAccel.FirmwareInterface;
using FpgaAccel.HwSim;
using FpgaAccel.Interop;

namespace FpgaAccel.Driver.Backends;

/// <summary>The software model behind the backend seam. Owns the model it wraps.</summary>
internal sealed class ModelBackend : IDeviceBackend
{
    public ModelBackend(Fa1Model model)
    {
        Model = model;
        Oracle = new ModelOracleReader(model);
        FaultInjection = new ModelFaultInjector(model.Inject);
    }

    /// <summary>Creates a model with <paramref name="options"/> and wraps it.</summary>
    public ModelBackend(ModelOptions? options = null)
        : this(new Fa1Model(options))
    {
    }

    /// <summary>The model, for tests and tools that inject faults or read its counters.</summary>
    public Fa1Model Model { get; }

    public BackendKind Kind => BackendKind.Model;

    public string Description =>
        $"FA-1 software model ({Model.Options.Clock.ToString().ToLowerInvariant()} clock, {Model.Options.MsixVectors} MSI-X vector(s))";

    public ulong Read64(uint offset) => Model.Read64(offset);

    public void Write64(uint offset, ulong value) => Model.Write64(offset, value);

    public int ConnectInterrupts(IReadOnlyList<EventFd> vectors) => Model.ConnectInterrupts(vectors);

    public void DisconnectInterrupts() => Model.DisconnectInterrupts();

    // F21: the model stands for devices whose groups share one container (or one iommufd IOAS): one pin, one charge.
    public bool PinsChargedOncePerAddressSpace => true;

    public IReadOnlyList<IovaRange> IovaRanges => Model.Iommu.Windows.Select(w => new IovaRange(w.Start, w.End)).ToArray();

    public void MapDma(ulong iova, nint hostAddress, ulong length, DmaAccess access)
    {
        try
        {
            Model.Iommu.Map(iova, hostAddress, length, access);
        }
        catch (IommuMappingException ex)
        {
            throw new DmaMappingException(iova, length, ex.ErrnoName, ex.Message, ex);
        }
    }

    public ulong UnmapDma(ulong iova, ulong length)
    {
        try
        {
            return Model.Iommu.Unmap(iova, length);
        }
        catch (IommuMappingException ex)
        {
            throw new DmaMappingException(iova, length, ex.ErrnoName, ex.Message, ex);
        }
    }

    /// <summary>
    /// The model's oracle through the seam: device accesses through a translation the driver had removed
    /// (fenced), through a removed IOMMU mapping or into freed memory, faults raised but never answered,
    /// DROPINs the table did not back, and the audit of cached translations against the page tables.
    /// </summary>
    public IDeviceOracle Oracle { get; }

    /// <summary>The model's fault injection (<see cref="Fa1Model.Inject"/>) through the seam.</summary>
    public IDeviceFaultInjection FaultInjection { get; }

    public void Dispose() => Model.Dispose();

    /// <summary>Forwards every call to <see cref="ModelFaultInjection"/>; the counts become the seam's record.</summary>
    private sealed class ModelFaultInjector(ModelFaultInjection inject) : IDeviceFaultInjection
    {
        public DeviceFaultInjectionCounts Counts
        {
            get
            {
                var c = inject.Counts;
                return new DeviceFaultInjectionCounts(c.Removals, c.Returns, c.EngineStops, c.LostInterrupts, c.StuckInvalidations, c.Fatals, c.SpuriousErrors, c.Garbage);
            }
        }

        public void RemoveFromBus(TimeSpan? returnAfter = null) => inject.RemoveFromBus(returnAfter);

        public void ReturnToBus() => inject.ReturnToBus();

        public void StopEngine(int queue) => inject.StopEngine(queue);

        public void LoseInterrupts(int count) => inject.LoseInterrupts(count);

        public void StickInvalidations() => inject.StickInvalidations();

        public void RaiseFatal(FatalCause cause, uint detail) => inject.RaiseFatal(cause, detail);

        public void RaiseSpuriousError() => inject.RaiseSpuriousError();

        public bool GarbageFaultRecord(FaultRecord record) => inject.GarbageFaultRecord(record);

        public bool FaultTailJump(uint count) => inject.FaultTailJump(count);

        public bool GarbageCompletion(int queue, CompletionRecord record, bool advanceTail = true, bool interrupt = true) =>
            inject.GarbageCompletion(queue, record, advanceTail, interrupt);

        public bool Garbage(Random rng) => inject.Garbage(rng);
    }

    /// <summary>Reads <see cref="Fa1Model.Oracle"/> and turns it into the seam's report.</summary>
    private sealed class ModelOracleReader(Fa1Model model) : IDeviceOracle
    {
        public DeviceOracleReport Read()
        {
            var oracle = model.Oracle;
            return new DeviceOracleReport
            {
                DataAccesses = oracle.DataAccesses,
                StaleAccesses = oracle.StaleAccesses,
                FaultsRaised = oracle.FaultsRaised,
                LostFaults = oracle.LostFaults,
                FreedMemoryAccesses = oracle.FreedMemoryAccesses,
                DropinMismatches = oracle.DropinMismatches,
                AuditViolations = oracle.AuditViolations,
                BadRingHeadWrites = oracle.BadRingHeadWrites,
            };
        }

        public IReadOnlyList<DeviceAuditViolation> Audit(int? context = null, ulong dva = 0, ulong length = ulong.MaxValue)
        {
            var found = model.AuditTranslations(context, dva, length);
            var violations = new DeviceAuditViolation[found.Count];
            for (var i = 0; i < found.Count; i++)
            {
                var v = found[i];
                violations[i] = new DeviceAuditViolation(ToSeam(v.Kind), v.Context, v.Dva, v.Level, v.CachedEntry, v.TableEntry, v.InstalledByDropin, v.Description);
            }

            return violations;
        }

        private static DeviceAuditViolationKind ToSeam(TranslationAuditKind kind) => kind switch
        {
            TranslationAuditKind.TlbEntryNotInTable => DeviceAuditViolationKind.TlbEntryNotInTable,
            TranslationAuditKind.TlbEntryAddressDiffers => DeviceAuditViolationKind.TlbEntryAddressDiffers,
            TranslationAuditKind.TlbEntryPermissionExceedsTable => DeviceAuditViolationKind.TlbEntryPermissionExceedsTable,
            _ => DeviceAuditViolationKind.WalkCacheEntryStale,
        };
    }
}
