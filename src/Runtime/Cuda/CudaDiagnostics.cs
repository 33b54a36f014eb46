using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Horizon.Cuda;

/// <summary>One device as <see cref="CudaDiagnostics.Describe"/> found it.</summary>
public sealed record CudaDeviceReport(
    int Ordinal, string Name, ComputeCapability ComputeCapability, int Multiprocessors, long TotalMemoryBytes,
    long FreeMemoryBytes, IReadOnlyList<string> SelectedPtx, string? Problem);

/// <summary>What <see cref="CudaDiagnostics.Describe"/> found: the driver, the devices, the PTX and cuBLAS, and why not.</summary>
public sealed record CudaReport(
    bool Available, string? Reason, string? DriverPath, int? DriverVersion, IReadOnlyList<CudaDeviceReport> Devices,
    IReadOnlyList<string> PtxBuilds, string Cublas)
{
    /// <summary>Driver version as major.minor (13000 → "13.0").</summary>
    public string? DriverVersionText => DriverVersion is int v ? $"{v / 1000}.{v % 1000 / 10}" : null;

    /// <summary>The report as the lines <c>horizon doctor</c> prints.</summary>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        if (!Available)
            text.AppendLine($"CUDA: off: {Reason}");
        else
            text.AppendLine(c, $"CUDA: on: driver {DriverVersionText} ({DriverVersion}) from {DriverPath ?? CudaDriver.LibraryName}");
        foreach (var d in Devices)
        {
            text.AppendLine(c, $"device {d.Ordinal}: {d.Name}, compute capability {d.ComputeCapability}, {d.Multiprocessors} multiprocessors, " +
                $"{d.TotalMemoryBytes / Gib:F1} GiB ({d.FreeMemoryBytes / Gib:F1} GiB free)");
            if (d.SelectedPtx.Count > 0)
                text.AppendLine($"  PTX for it: {string.Join(", ", d.SelectedPtx)}");
            if (d.Problem is not null)
                text.AppendLine($"  problem: {d.Problem}");
        }
        text.AppendLine(PtxBuilds.Count == 0
            ? "PTX: none embedded (native/ptx/ was empty when the runtime was built)"
            : $"PTX: {string.Join(", ", PtxBuilds)}");
        text.Append($"cuBLAS: {Cublas}");
        return text.ToString();
    }

    private const double Gib = 1024.0 * 1024 * 1024;
}

/// <summary>
/// Reports whether CUDA can be used here and why not (<c>horizon doctor</c>). Never throws for a missing or broken
/// driver: that is what it reports.
/// </summary>
public static unsafe class CudaDiagnostics
{
    public static CudaReport Describe()
    {
        var ptx = CudaPtx.Available();
        var builds = ptx.Select(p => p.Origin == "embedded" ? $"{p.Module}.{p.Target}" : $"{p.Module}.{p.Target} ({p.Origin})").ToList();
        string cublas = DescribeCublas();

        string? failure = CudaDriver.TryInitialize();
        if (failure is not null)
            return new CudaReport(false, failure, null, null, [], builds, cublas);

        int version;
        int versionResult = CudaDriver.cuDriverGetVersion(&version);
        var devices = new List<CudaDeviceReport>();
        int count = 0;
        try
        {
            count = CudaContext.DeviceCount();
        }
        catch (CudaException e)
        {
            return new CudaReport(false, e.Message, CudaDriver.LoadedPath, versionResult == 0 ? version : null, [], builds, cublas);
        }
        for (int ordinal = 0; ordinal < count; ordinal++)
        {
            try
            {
                using var context = CudaContext.CreatePrimary(ordinal);
                var (free, _) = context.GetMemoryInfo();
                var selected = new List<string>();
                string? problem = null;
                foreach (string module in ptx.Select(p => p.Module).Distinct(StringComparer.Ordinal))
                {
                    try
                    {
                        selected.Add(CudaPtx.Select(module, context.ComputeCapability, ptx).ToString());
                    }
                    catch (HorizonException e)
                    {
                        problem = e.Message;
                    }
                }
                devices.Add(new CudaDeviceReport(ordinal, context.DeviceName, context.ComputeCapability, context.MultiprocessorCount,
                    context.TotalMemoryBytes, free, selected, problem));
            }
            catch (HorizonException e)
            {
                devices.Add(new CudaDeviceReport(ordinal, "?", default, 0, 0, 0, [], e.Message));
            }
        }
        string? reason = count == 0 ? "the driver sees no CUDA device" : null;
        return new CudaReport(count > 0, reason, CudaDriver.LoadedPath, versionResult == 0 ? version : null, devices, builds, cublas);
    }

    /// <summary>Where cuBLAS is, as <see cref="CudaGemm"/> would load it (<see cref="CudaBlas.Probe"/>), or why it is not.</summary>
    private static string DescribeCublas()
    {
        var probe = CudaBlas.Probe();
        return probe.Found ? $"{probe.Description}, used by CudaGemm" : $"off: {probe.Description}; GEMMs run on Horizon's tensor-core kernels (native/gemm.cu) instead";
    }
}
