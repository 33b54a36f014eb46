namespace Horizon.Cuda;

/// <summary>
/// One CUDA device as the generated models use it: the primary context, the kernels (<see cref="CudaOps"/>), the
/// GEMMs (<see cref="CudaGemm"/>) and the stream every launch of a forward pass is queued on. Create one per device
/// and share it between models; <see cref="Create"/> explains in one line why CUDA cannot be used.
/// </summary>
public sealed class CudaBackend : IDisposable
{
    private CudaBackend(CudaContext context, CudaOps ops, CudaGemm gemm, CudaStream stream)
    {
        Context = context;
        Ops = ops;
        Gemm = gemm;
        Stream = stream;
    }

    public CudaContext Context { get; }

    public CudaOps Ops { get; }

    public CudaGemm Gemm { get; }

    /// <summary>The stream of every forward pass (host copies of results wait for it).</summary>
    public CudaStream Stream { get; }

    /// <summary>
    /// The backend on device <paramref name="deviceOrdinal"/>.
    /// </summary>
    /// <exception cref="HorizonException">No usable driver or device, or no PTX for the device: the reason as <c>horizon doctor</c> gives it. Without cuBLAS the GEMMs run on Horizon's own kernels (<see cref="CudaGemmBackend"/>).</exception>
    public static CudaBackend Create(int deviceOrdinal = 0)
    {
        var report = CudaDiagnostics.Describe();
        if (!report.Available)
            throw new HorizonException($"CUDA is off here: {report.Reason} (see horizon doctor)");
        if (deviceOrdinal < 0 || deviceOrdinal >= report.Devices.Count)
            throw new HorizonException($"CUDA device {deviceOrdinal} does not exist ({report.Devices.Count} found; see horizon doctor)");
        if (report.Devices[deviceOrdinal].Problem is string problem)
            throw new HorizonException($"CUDA device {deviceOrdinal} ({report.Devices[deviceOrdinal].Name}) cannot run Horizon's kernels: {problem}");
        CudaContext? context = null;
        CudaOps? ops = null;
        CudaGemm? gemm = null;
        try
        {
            context = CudaContext.CreatePrimary(deviceOrdinal);
            ops = new CudaOps(context);
            gemm = new CudaGemm(context, CudaGemmBackend.Auto, ops);
            return new CudaBackend(context, ops, gemm, context.CreateStream());
        }
        catch
        {
            gemm?.Dispose();
            ops?.Dispose();
            context?.Dispose();
            throw;
        }
    }

    public override string ToString() => $"CUDA device {Context.DeviceOrdinal}: {Context.DeviceName} (compute capability {Context.ComputeCapability})";

    public void Dispose()
    {
        Stream.Dispose();
        Gemm.Dispose();
        Ops.Dispose();
        Context.Dispose();
    }
}

/// <summary>A model whose spec can also run on CUDA (every generated single-level model).</summary>
public interface ICudaCapableModel
{
    /// <summary>Null when <see cref="ToCuda"/> works for this spec, else why not, in one line.</summary>
    string? CudaUnsupportedReason { get; }

    /// <summary>The same model on <paramref name="backend"/>'s device (weights uploaded as bf16); dispose it when done.</summary>
    ICausalLanguageModel ToCuda(CudaBackend backend);
}
