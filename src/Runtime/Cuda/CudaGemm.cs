namespace Horizon.Cuda;

/// <summary>
/// Matrix products through cuBLAS (<see cref="CudaBlas"/>): <see cref="Linear{TIn, TOut}"/> is the CPU backend's
/// <see cref="Cpu.CpuKernels.Linear"/> on the GPU, y = x·Wᵀ with W in Hugging Face's (out, in) row-major layout,
/// bf16 or fp16 inputs, float32 accumulation, bf16, fp16 or float32 output. One cuBLAS handle per object (it is not
/// thread-safe: use one <see cref="CudaGemm"/> per thread); launches are queued on the given stream, nothing synchronises.
/// </summary>
/// <exception cref="HorizonException">From the constructor: cuBLAS was not found (the message lists where it looked).</exception>
public sealed unsafe class CudaGemm : IDisposable
{
    private readonly CudaContext _context;
    private readonly CudaBlasLibrary _library;
    private readonly CublasHandle _handle;
    private nint _stream = -1; // the stream last set on the handle; -1: none yet

    public CudaGemm(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        _context = context;
        _library = CudaBlas.Load();
        context.EnsureCurrent(); // cuBLAS works in the current context: the device's primary one, ours
        nint handle;
        _library.Check(_library.Create(&handle), "cublasCreate_v2");
        _handle = new CublasHandle(context.Handle, handle, _library);
    }

    /// <summary>The cuBLAS file in use.</summary>
    public string LibraryPath => _library.Path;

    /// <summary>
    /// y = x·Wᵀ (+ nothing: a bias is a separate add): x (rows, in) row-major, weight (out, in) row-major (the Hugging
    /// Face linear layout), y (rows, out) row-major. <typeparamref name="TIn"/> is <see cref="BFloat16"/> or
    /// <see cref="Half"/>; <typeparamref name="TOut"/> is the same type or float. Products accumulate in float32
    /// (CUBLAS_COMPUTE_32F, tensor cores).
    /// </summary>
    /// <remarks>
    /// cuBLAS is column-major: row-major y (rows × out) is column-major yᵀ (out × rows) = W·xᵀ, where W's row-major
    /// buffer read column-major is Wᵀ (in × out, leading dimension in), hence op(A) = T, and x's is xᵀ (in × rows), op(B)
    /// = N: m = out, n = rows, k = in, lda = ldb = in, ldc = out (the "TN" product, cuBLAS's fastest layout).
    /// </remarks>
    public void Linear<TIn, TOut>(CudaDeviceVariable<TIn> x, int rows, CudaDeviceVariable<TIn> weight, int outFeatures, int inFeatures,
        CudaDeviceVariable<TOut> y, CudaStream? stream = null) where TIn : unmanaged where TOut : unmanaged
    {
        const string op = "linear (cuBLAS)";
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

    public void Dispose() => _handle.Dispose();
}

/// <summary>A cuBLAS handle (<c>cublasCreate_v2</c>), destroyed with <c>cublasDestroy_v2</c> in its context.</summary>
internal sealed unsafe class CublasHandle : CudaContextChildHandle
{
    private readonly CudaBlasLibrary _library;

    public CublasHandle(CudaContextHandle context, nint handle, CudaBlasLibrary library) : base(context, handle) => _library = library;

    protected override bool Free(nint value) => _library.Destroy(value) == 0;
}
