namespace Horizon.Cuda;

// The glue of a generated model's forward pass on the GPU (native/elementwise.cu, "the model path's glue", and the
// GLA layer kernels at the end of native/gla.cu): the residual stream is float32, the GEMMs read bf16 and write
// float32. Same checks as the other launchers: sizes before anything is queued.
public sealed partial class CudaOps
{
    /// <summary>Embedding lookup from a bf16 table into the float32 residual stream: y row t = table row tokens[t] (ids outside [0, vocab): NaN).</summary>
    public void Embedding(CudaDeviceVariable<BFloat16> table, int vocab, int dim, CudaDeviceVariable<int> tokens, int count,
        CudaDeviceVariable<float> y, CudaStream? stream = null)
    {
        const string op = "embedding";
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocab);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        Require(table, (long)vocab * dim, op, nameof(table));
        Require(tokens, count, op, nameof(tokens));
        Require(y, (long)count * dim, op, nameof(y));
        if (count == 0)
            return;
        Elementwise.EmbeddingBf16F32(new Dim3((uint)count), BlockThreads, 0, stream, table, tokens, y, count, dim, vocab);
    }

    /// <summary>RMSNorm of the float32 residual stream into a bf16 GEMM input: x (rows, dim) float32, γ (dim) float32, y (rows, dim) bf16.</summary>
    public void RmsNorm(CudaDeviceVariable<float> x, CudaDeviceVariable<float> gamma, CudaDeviceVariable<BFloat16> y, int rows, int dim, float eps,
        CudaStream? stream = null)
    {
        const string op = "rms_norm";
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        Require(x, (long)rows * dim, op, nameof(x));
        Require(gamma, dim, op, nameof(gamma));
        Require(y, (long)rows * dim, op, nameof(y));
        if (rows == 0)
            return;
        Elementwise.RmsNormF32Bf16(new Dim3((uint)rows), BlockThreads, 0, stream, x, gamma, y, rows, dim, eps);
    }

    /// <summary>h = silu(gate) ⊙ up from the float32 GEMM outputs into the bf16 input of the down projection (n elements).</summary>
    public void SwiGlu(CudaDeviceVariable<float> gate, CudaDeviceVariable<float> up, CudaDeviceVariable<BFloat16> h, long n, CudaStream? stream = null)
    {
        const string op = "swiglu";
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        Require(gate, n, op, nameof(gate));
        Require(up, n, op, nameof(up));
        Require(h, n, op, nameof(h));
        if (n == 0)
            return;
        Elementwise.SwigluF32Bf16(StrideGrid(n), BlockThreads, 0, stream, gate, up, h, n);
    }

    /// <summary>y = x rounded to bf16 (nearest even), n elements.</summary>
    public void ConvertToBf16(CudaDeviceVariable<float> x, CudaDeviceVariable<BFloat16> y, long n, CudaStream? stream = null)
    {
        const string op = "convert";
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        Require(x, n, op, nameof(x));
        Require(y, n, op, nameof(y));
        if (n == 0)
            return;
        Elementwise.ConvertF32Bf16(StrideGrid(n), BlockThreads, 0, stream, x, y, n);
    }

    /// <summary>y[r, c] += bias[c]: a linear layer's bias after its GEMM. y (rows, cols), bias (cols).</summary>
    public void BiasAdd(CudaDeviceVariable<float> y, CudaDeviceVariable<float> bias, int rows, int cols, CudaStream? stream = null)
    {
        const string op = "bias_add";
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        Require(y, (long)rows * cols, op, nameof(y));
        Require(bias, cols, op, nameof(bias));
        long n = (long)rows * cols;
        if (n == 0)
            return;
        Elementwise.BiasAddF32(StrideGrid(n), BlockThreads, 0, stream, y, bias, rows, cols);
    }

    /// <summary>
    /// x (rows, heads, headDim) float32 → y (rows, heads, paddedDim) bf16 with zeros past headDim: queries, keys and
    /// values in the flash kernels' layout (head dims 64 and 128; smaller heads run zero-padded). y may point into a
    /// KV cache (<paramref name="y"/> a view at its first free row).
    /// </summary>
    public void PackHeads(CudaDeviceVariable<float> x, CudaDeviceVariable<BFloat16> y, int rows, int heads, int headDim, int paddedDim,
        CudaStream? stream = null)
    {
        const string op = "pack_heads";
        CheckHeads(op, rows, heads, headDim, paddedDim);
        Require(x, (long)rows * heads * headDim, op, nameof(x));
        Require(y, (long)rows * heads * paddedDim, op, nameof(y));
        long n = (long)rows * heads * paddedDim;
        if (n == 0)
            return;
        Elementwise.PackHeadsF32Bf16(StrideGrid(n), BlockThreads, 0, stream, x, y, rows, heads, headDim, paddedDim);
    }

    /// <summary>x (rows, heads, paddedDim) bf16 → y (rows, heads·headDim) bf16, the padding dropped (attention's output into W_o).</summary>
    public void UnpackHeads(CudaDeviceVariable<BFloat16> x, CudaDeviceVariable<BFloat16> y, int rows, int heads, int paddedDim, int headDim,
        CudaStream? stream = null)
    {
        const string op = "unpack_heads";
        CheckHeads(op, rows, heads, headDim, paddedDim);
        Require(x, (long)rows * heads * paddedDim, op, nameof(x));
        Require(y, (long)rows * heads * headDim, op, nameof(y));
        long n = (long)rows * heads * headDim;
        if (n == 0)
            return;
        Elementwise.UnpackHeadsBf16(StrideGrid(n), BlockThreads, 0, stream, x, y, rows, heads, paddedDim, headDim);
    }

    private static void CheckHeads(string op, int rows, int heads, int headDim, int paddedDim)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        if (paddedDim < headDim)
            throw new ArgumentException($"{op}: padded head dim {paddedDim} is smaller than head_dim {headDim}", nameof(paddedDim));
    }

    // ---------------------------------------------------------------- the GLA layer around the recurrence

    /// <summary>
    /// In place on z (rows, cols) float32, the GEMM output of the low-rank gate: log α = max(logsigmoid(z + bias) / τ,
    /// clampMin) (GLA §4.4; bias (cols) or null, clampMin null for none).
    /// </summary>
    public void GlaLogGates(CudaDeviceVariable<float> z, CudaDeviceVariable<float>? bias, int rows, int cols, double normalizer, double? clampMin,
        CudaStream? stream = null)
    {
        const string op = "gla_log_gates";
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if (!(normalizer > 0))
            throw new ArgumentOutOfRangeException(nameof(normalizer), $"{op}: the gate logit normalizer must be positive, not {normalizer}");
        Require(z, (long)rows * cols, op, nameof(z));
        if (bias is not null)
            Require(bias, cols, op, nameof(bias));
        long n = (long)rows * cols;
        if (n == 0)
            return;
        Gla.GlaLogGatesF32(StrideGrid(n), BlockThreads, 0, stream, z, bias, rows, cols, (float)(1.0 / normalizer),
            (float)(clampMin ?? 0), clampMin is null ? 0 : 1);
    }

    /// <summary>
    /// GLA's output head: y = RMSNorm(o)·γ ⊙ swish(gate) per row of dim d_v. o, gate (count, dim) float32 (gate null:
    /// no output gate), γ (dim) float32 or null (γ = 1), y (count, dim) bf16; count = rows·heads.
    /// </summary>
    public void GlaNormGate(CudaDeviceVariable<float> o, CudaDeviceVariable<float>? gate, CudaDeviceVariable<float>? gamma, CudaDeviceVariable<BFloat16> y,
        int count, int dim, float eps, CudaStream? stream = null)
    {
        const string op = "gla_norm_gate";
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        Require(o, (long)count * dim, op, nameof(o));
        if (gate is not null)
            Require(gate, (long)count * dim, op, nameof(gate));
        if (gamma is not null)
            Require(gamma, dim, op, nameof(gamma));
        Require(y, (long)count * dim, op, nameof(y));
        if (count == 0)
            return;
        uint threads = dim <= 64 ? 64u : dim <= 128 ? 128u : BlockThreads;
        Gla.GlaNormGateF32Bf16(new Dim3((uint)count), threads, 0, stream, o, gate, gamma, y, count, dim, eps);
    }

    /// <summary>
    /// fla's short convolution + silu on x (rows, channels) float32 in place, continuing from tail (width − 1,
    /// channels), which is advanced. weight (channels, width), bias (channels) or null; width 1 … 8.
    /// </summary>
    public void GlaShortConvSilu(CudaDeviceVariable<float> x, CudaDeviceVariable<float> tail, CudaDeviceVariable<float> weight,
        CudaDeviceVariable<float>? bias, int rows, int channels, int width, CudaStream? stream = null)
    {
        const string op = "gla_short_conv_silu";
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(channels);
        if (width is < 1 or > 8)
            throw new NotSupportedException($"{op}: convolution width {width} has no CUDA kernel (1 … 8)");
        Require(x, (long)rows * channels, op, nameof(x));
        Require(tail, (long)(width - 1) * channels, op, nameof(tail));
        Require(weight, (long)channels * width, op, nameof(weight));
        if (bias is not null)
            Require(bias, channels, op, nameof(bias));
        if (rows == 0)
            return;
        Gla.GlaShortConvSiluF32(CeilDiv(channels, 128), 128, 0, stream, x, tail, weight, bias, rows, channels, width);
    }
}
