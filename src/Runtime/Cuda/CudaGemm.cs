namespace Horizon.Cuda;

/// <summary>What <see cref="CudaGemm"/> multiplies with.</summary>
public enum CudaGemmBackend
{
    /// <summary>cuBLAS when it is found (<see cref="CudaBlas"/>), Horizon's own kernels (native/gemm.cu) otherwise.</summary>
    Auto,

    /// <summary>cuBLAS only: the constructor throws when it is not found.</summary>
    Cublas,

    /// <summary>Horizon's kernels only (<see cref="CudaOps.Linear{TIn, TOut}"/>): cuBLAS is never loaded.</summary>
    Kernels,
}

/// <summary>
/// Matrix products: <see cref="Linear{TIn, TOut}"/> is the CPU backend's <see cref="Cpu.CpuKernels.Linear"/> on the GPU,
/// y = x·Wᵀ with W in Hugging Face's (out, in) row-major layout, bf16 or fp16 inputs, float32 accumulation, bf16, fp16 or
/// float32 output. Through cuBLAS (<see cref="CudaBlas"/>) when it is found, else through Horizon's tensor-core kernels
/// (native/gemm.cu, <see cref="CudaOps.Linear{TIn, TOut}"/>): <see cref="Backend"/> says which, <see cref="FallbackReason"/>
/// why. One cuBLAS handle per object (it is not thread-safe: use one <see cref="CudaGemm"/> per thread); launches are
/// queued on the given stream, nothing synchronises.
/// </summary>
/// <exception cref="HorizonException">From the constructor with <see cref="CudaGemmBackend.Cublas"/>: cuBLAS was not found (the message lists where it looked).</exception>
public sealed unsafe class CudaGemm : IDisposable
{
    private readonly CudaContext _context;
    private readonly CudaBlasLibrary? _library;
    private readonly CublasHandle? _handle;
    private readonly CudaOps? _ops;
    private readonly bool _ownsOps;
    private nint _stream = -1; // the stream last set on the handle; -1: none yet

    /// <summary>cuBLAS when found, Horizon's kernels otherwise (<see cref="CudaGemmBackend.Auto"/>).</summary>
    public CudaGemm(CudaContext context) : this(context, CudaGemmBackend.Auto)
    {
    }

    /// <summary>
    /// A GEMM on <paramref name="backend"/>; <paramref name="ops"/> (optional) is the <see cref="CudaOps"/> whose gemm
    /// module the kernel path uses (otherwise this object makes and owns one; the module loads on first use).
    /// </summary>
    public CudaGemm(CudaContext context, CudaGemmBackend backend, CudaOps? ops = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (ops is not null && !ReferenceEquals(ops.Context, context))
            throw new ArgumentException("the CudaOps belongs to another context", nameof(ops));
        _context = context;
        if (backend != CudaGemmBackend.Kernels)
        {
            try
            {
                _library = CudaBlas.Load();
            }
            catch (HorizonException missing) when (backend == CudaGemmBackend.Auto)
            {
                FallbackReason = missing.Message;
            }
        }
        else
        {
            FallbackReason = "CudaGemmBackend.Kernels was asked for";
        }
        if (_library is not null)
        {
            context.EnsureCurrent(); // cuBLAS works in the current context: the device's primary one, ours
            nint handle;
            _library.Check(_library.Create(&handle), "cublasCreate_v2");
            _handle = new CublasHandle(context.Handle, handle, _library);
            Backend = CudaGemmBackend.Cublas;
        }
        else
        {
            _ops = ops ?? new CudaOps(context);
            _ownsOps = ops is null;
            Backend = CudaGemmBackend.Kernels;
        }
    }

    /// <summary>What the products run on: <see cref="CudaGemmBackend.Cublas"/> or <see cref="CudaGemmBackend.Kernels"/>.</summary>
    public CudaGemmBackend Backend { get; }

    /// <summary>Why cuBLAS is not used (the loader's message), or null when it is.</summary>
    public string? FallbackReason { get; }

    /// <summary>The cuBLAS file in use, or null on Horizon's kernels.</summary>
    public string? LibraryPath => _library?.Path;

    /// <summary>
    /// y = x·Wᵀ (+ nothing: a bias is a separate add): x (rows, in) row-major, weight (out, in) row-major (the Hugging
    /// Face linear layout), y (rows, out) row-major. <typeparamref name="TIn"/> is <see cref="BFloat16"/> or
    /// <see cref="Half"/>; <typeparamref name="TOut"/> is the same type or float. Products accumulate in float32
    /// (CUBLAS_COMPUTE_32F, tensor cores; on the kernel backend, <see cref="CudaOps.Linear{TIn, TOut}"/> with its automatic path).
    /// </summary>
    /// <remarks>
    /// cuBLAS is column-major: row-major y (rows × out) is column-major yᵀ (out × rows) = W·xᵀ, where W's row-major
    /// buffer read column-major is Wᵀ (in × out, leading dimension in), hence op(A) = T, and x's is xᵀ (in × rows), op(B)
    /// = N: m = out, n = rows, k = in, lda = ldb = in, ldc = out (the "TN" product, cuBLAS's fastest layout).
    /// </remarks>
    public void Linear<TIn, TOut>(CudaDeviceVariable<TIn> x, int rows, CudaDeviceVariable<TIn> weight, int outFeatures, int inFeatures,
        CudaDeviceVariable<TOut> y, CudaStream? stream = null) where TIn : unmanaged where TOut : unmanaged
    {
        string op = _library is null ? "linear (native/gemm.cu)" : "linear (cuBLAS)";
        int inType = TypeOf<TIn>(op, allowFloat: false);
        int outType = TypeOf<TOut>(op, allowFloat: true);
        if (outType != CudaBlasLibrary.CUDA_R_32F && outType != inType)
            throw new NotSupportedException($"{op}: output {typeof(TOut).Name} must be float or the input type {typeof(TIn).Name}");
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        Require(x, (long)rows * inFeatures, op, nameof(x));
        Require(weight, (long)outFeatures * inFeatures, op, nameof(weight));
        Require(y, (long)rows * outFeatures, op, nameof(y));
        if (rows == 0)
            return;
        if (_library is null || _handle is null)
        {
            _ops!.Linear(x, rows, weight, outFeatures, inFeatures, y, stream);
            return;
        }
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        _context.EnsureCurrent();
        nint streamHandle = stream?.Value ?? 0;
        if (streamHandle != _stream)
        {
            _library.Check(_library.SetStream(_handle.DangerousGetHandle(), streamHandle), "cublasSetStream_v2");
            _stream = streamHandle;
        }
        float alpha = 1f, beta = 0f;
        int status = _library.GemmEx(_handle.DangerousGetHandle(), CudaBlasLibrary.CUBLAS_OP_T, CudaBlasLibrary.CUBLAS_OP_N,
            outFeatures, rows, inFeatures, &alpha,
            (void*)weight.DevicePointer, inType, inFeatures,
            (void*)x.DevicePointer, inType, inFeatures, &beta,
            (void*)y.DevicePointer, outType, outFeatures,
            CudaBlasLibrary.CUBLAS_COMPUTE_32F, CudaBlasLibrary.CUBLAS_GEMM_DEFAULT);
        if (status != 0)
            _library.Check(status, $"cublasGemmEx (linear: rows {rows}, out {outFeatures}, in {inFeatures}, {typeof(TIn).Name} → {typeof(TOut).Name})");
    }

    private static int TypeOf<T>(string op, bool allowFloat) where T : unmanaged
    {
        if (typeof(T) == typeof(BFloat16))
            return CudaBlasLibrary.CUDA_R_16BF;
        if (typeof(T) == typeof(Half))
            return CudaBlasLibrary.CUDA_R_16F;
        if (allowFloat && typeof(T) == typeof(float))
            return CudaBlasLibrary.CUDA_R_32F;
        throw new NotSupportedException($"{op}: element type {typeof(T).Name} is not supported (BFloat16, Half{(allowFloat ? ", float output" : "")})");
    }

    private static void Require<T>(CudaDeviceVariable<T> variable, long elements, string op, string role) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(variable, role);
        if (variable.Size < elements)
            throw new ArgumentException($"{op}: {role} holds {variable.Size} elements, needs {elements}", role);
    }

    public void Dispose()
    {
        _handle?.Dispose();
        if (_ownsOps)
            _ops?.Dispose();
    }
}

/// <summary>A cuBLAS handle (<c>cublasCreate_v2</c>), destroyed with <c>cublasDestroy_v2</c> in its context.</summary>
internal sealed unsafe class CublasHandle : CudaContextChildHandle
{
    private readonly CudaBlasLibrary _library;

    public CublasHandle(CudaContextHandle context, nint handle, CudaBlasLibrary library) : base(context, handle) => _library = library;

    protected override bool Free(nint value) => _library.Destroy(value) == 0;
}
