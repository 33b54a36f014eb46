namespace Horizon.Cuda;

/// <summary>Which kernel of native/gemm.cu <see cref="CudaOps.Linear{TIn, TOut}"/> runs.</summary>
public enum CudaLinearPath
{
    /// <summary>Tensor cores for more than <see cref="CudaOps.LinearRowsThreshold"/> rows when in % 8 == 0 (and x, W 16-byte aligned); the CUDA-core rows kernel otherwise.</summary>
    Auto,

    /// <summary>linear_{in}_{out}: 128 × 128 tiles on mma.sync; needs in % 8 == 0 and 16-byte aligned x and W.</summary>
    TensorCores,

    /// <summary>linear_rows_{in}_{out}: one warp per output column and 8 rows of x; any in.</summary>
    Rows,
}

// The linear layer without cuBLAS (native/gemm.cu): CudaGemm's fallback, y = x·Wᵀ with W in the Hugging Face (out, in)
// layout, bf16 or fp16 in, float32 or the input type out, float32 accumulation.
public sealed partial class CudaOps
{
    /// <summary>Up to this many rows <see cref="CudaLinearPath.Auto"/> takes the rows kernel (decode: bound by reading W once).</summary>
    public const int LinearRowsThreshold = 8;

    /// <summary>Dynamic shared memory of the tensor-core linear kernels: 4 stages of a 128 × 32 x tile and a 128 × 32 W tile, rows padded to 40 elements.</summary>
    public const int LinearSharedBytes = 4 * (128 + 128) * (32 + 8) * 2;

    private const int LinearTile = 128, LinearThreads = 256, LinearRowsPerWarp = 8, LinearRowsThreads = 256;

    private CudaGemmKernels? _gemm;

    /// <summary>The launchers of native/gemm.cu, loaded on first use (the tensor-core kernels opted in to their shared memory).</summary>
    public CudaGemmKernels Gemm => _gemm ?? Load(ref _gemm, CudaGemmKernels.Load, kernels =>
    {
        AllowSharedMemory(kernels.LinearBf16F32Kernel, LinearSharedBytes);
        AllowSharedMemory(kernels.LinearBf16Bf16Kernel, LinearSharedBytes);
        AllowSharedMemory(kernels.LinearF16F32Kernel, LinearSharedBytes);
        AllowSharedMemory(kernels.LinearF16F16Kernel, LinearSharedBytes);
    });

    /// <summary>
    /// y = x·Wᵀ: x (rows, in) row-major, weight (out, in) row-major (the Hugging Face linear layout), y (rows, out)
    /// row-major. <typeparamref name="TIn"/> is <see cref="BFloat16"/> or <see cref="Half"/>; <typeparamref name="TOut"/>
    /// float or TIn. Float32 accumulation; the same function as <see cref="CudaGemm.Linear{TIn, TOut}"/> without cuBLAS.
    /// <paramref name="path"/> picks the kernel (<see cref="CudaLinearPath"/>); Auto: tensor cores above
    /// <see cref="LinearRowsThreshold"/> rows when in % 8 == 0, the CUDA-core rows kernel otherwise (any in, slow for
    /// many rows when in % 8 != 0: one element per lane and W re-read every 8 rows).
    /// </summary>
    public void Linear<TIn, TOut>(CudaDeviceVariable<TIn> x, int rows, CudaDeviceVariable<TIn> weight, int outFeatures, int inFeatures,
        CudaDeviceVariable<TOut> y, CudaStream? stream = null, CudaLinearPath path = CudaLinearPath.Auto) where TIn : unmanaged where TOut : unmanaged
    {
        const string op = "linear";
        bool bf16 = typeof(TIn) == typeof(BFloat16);
        if (!bf16 && typeof(TIn) != typeof(Half))
            throw new NotSupportedException($"{op}: element type {typeof(TIn).Name} is not supported (BFloat16, Half)");
        bool f32 = typeof(TOut) == typeof(float);
        if (!f32 && typeof(TOut) != typeof(TIn))
            throw new NotSupportedException($"{op}: output {typeof(TOut).Name} must be float or the input type {typeof(TIn).Name}");
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        Require(x, (long)rows * inFeatures, op, nameof(x));
        Require(weight, (long)outFeatures * inFeatures, op, nameof(weight));
        Require(y, (long)rows * outFeatures, op, nameof(y));
        if (rows == 0)
            return;

        bool vectors = inFeatures % 8 == 0 && x.DevicePointer % 16 == 0 && weight.DevicePointer % 16 == 0;
        bool tensorCores = path switch
        {
            CudaLinearPath.Auto => vectors && rows > LinearRowsThreshold,
            CudaLinearPath.TensorCores => vectors ? true
                : throw new ArgumentException($"{op}: the tensor-core kernel needs in % 8 == 0 and 16-byte aligned x and weight (in = {inFeatures})", nameof(path)),
            CudaLinearPath.Rows => false,
            _ => throw new ArgumentOutOfRangeException(nameof(path)),
        };

        var px = new DevicePointer<ushort>(x.DevicePointer);
        var pw = new DevicePointer<ushort>(weight.DevicePointer);
        var py = new DevicePointer<ushort>(y.DevicePointer);
        if (tensorCores)
        {
            // Grid (CeilDiv(out, 128), CeilDiv(rows, 128)) of 256 threads with the shared memory opted in at load.
            uint tilesY = CeilDiv(rows, LinearTile);
            if (tilesY > 65535)
                throw new ArgumentException($"{op}: rows {rows} exceeds {65535 * LinearTile} (grid y)", nameof(rows));
            var grid = new Dim3(CeilDiv(outFeatures, LinearTile), tilesY);
            const int shared = LinearSharedBytes;
            switch (bf16, f32)
            {
                case (true, true): Gemm.LinearBf16F32(grid, LinearThreads, shared, stream, px.As<BFloat16>(), pw.As<BFloat16>(), py.As<float>(), rows, outFeatures, inFeatures); break;
                case (true, false): Gemm.LinearBf16Bf16(grid, LinearThreads, shared, stream, px.As<BFloat16>(), pw.As<BFloat16>(), py.As<BFloat16>(), rows, outFeatures, inFeatures); break;
                case (false, true): Gemm.LinearF16F32(grid, LinearThreads, shared, stream, px.As<Half>(), pw.As<Half>(), py.As<float>(), rows, outFeatures, inFeatures); break;
                case (false, false): Gemm.LinearF16F16(grid, LinearThreads, shared, stream, px.As<Half>(), pw.As<Half>(), py.As<Half>(), rows, outFeatures, inFeatures); break;
            }
        }
        else
        {
            // Grid (CeilDiv(out, 8 warps), CeilDiv(rows, 8)) of 256 threads: one warp per output column and 8 rows.
            uint rowBlocks = CeilDiv(rows, LinearRowsPerWarp);
            if (rowBlocks > 65535)
                throw new ArgumentException($"{op}: rows {rows} exceeds {65535 * LinearRowsPerWarp} on the rows kernel (grid y)", nameof(rows));
            var grid = new Dim3(CeilDiv(outFeatures, LinearRowsThreads / 32), rowBlocks);
            int vec = vectors ? 1 : 0;
            switch (bf16, f32)
            {
                case (true, true): Gemm.LinearRowsBf16F32(grid, LinearRowsThreads, 0, stream, px.As<BFloat16>(), pw.As<BFloat16>(), py.As<float>(), rows, outFeatures, inFeatures, vec); break;
                case (true, false): Gemm.LinearRowsBf16Bf16(grid, LinearRowsThreads, 0, stream, px.As<BFloat16>(), pw.As<BFloat16>(), py.As<BFloat16>(), rows, outFeatures, inFeatures, vec); break;
                case (false, true): Gemm.LinearRowsF16F32(grid, LinearRowsThreads, 0, stream, px.As<Half>(), pw.As<Half>(), py.As<float>(), rows, outFeatures, inFeatures, vec); break;
                case (false, false): Gemm.LinearRowsF16F16(grid, LinearRowsThreads, 0, stream, px.As<Half>(), pw.As<Half>(), py.As<Half>(), rows, outFeatures, inFeatures, vec); break;
            }
        }
    }
}
