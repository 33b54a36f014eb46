using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Horizon.Ops;

namespace Horizon.Cpu;

/// <summary>
/// CPU kernels of the HyenaDNA block: <c>layer_norm</c>, <c>gelu_mlp</c> and the <c>hyena</c> mixer (short
/// filter, implicit long filter, causal long convolution by FFT or direct form, gating).
/// </summary>
/// <remarks>
/// Threads: every parallel loop goes through <see cref="Parallelism"/> (so <see cref="CpuKernels.MaxDegreeOfParallelism"/>
/// applies) and each output element is computed by one thread only, so results do not depend on the thread count.
/// Spans are pinned around parallel loops and rebuilt from the pointers inside, as in <see cref="CpuKernels"/>.
/// </remarks>
public static unsafe class HyenaKernels
{
    /// <summary>Multiply-adds (or comparable units) below which a chunk of work stays on the calling thread.</summary>
    private const long MinWorkPerChunk = 1 << 16;

    /// <summary>Rows that in_proj, the short filter and the MLP take at once, so their scratch stays bounded for long prefills.</summary>
    private const int RowBlock = 256;

    // ---------------------------------------------------------------- layer_norm

    /// <summary>
    /// y (rows, dim) = (x − μ)/sqrt(σ² + eps) ⊙ γ + β per row, σ² the biased variance. x is (rows, dim); x and y
    /// may be the same span. μ, σ² and x − μ are taken in float64 with two passes: in float32 a row mean of a few
    /// hundred shifts the centred values by ~ulp(μ), a relative error of 10⁻⁵ and more once μ ≫ σ.
    /// </summary>
    public static void LayerNorm(ReadOnlySpan<float> x, int rows, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, float eps, Span<float> y)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        int dim = gamma.Length;
        if (dim == 0 || beta.Length != dim)
            throw new ArgumentException($"LayerNorm: γ has {dim} values and β {beta.Length}; they must be equal and non-zero", nameof(beta));
        if (x.Length != (long)rows * dim)
            throw new ArgumentException($"LayerNorm: x has {x.Length} floats, expected rows {rows} × dim {dim} = {(long)rows * dim}", nameof(x));
        if (y.Length != x.Length)
            throw new ArgumentException($"LayerNorm: y has {y.Length} floats, expected {x.Length} (same shape as x)", nameof(y));

        int chunks = Parallelism.ChunkCount(rows, 4L * rows * dim, MinWorkPerChunk * 4);
        if (chunks == 1)
        {
            LayerNormRows(x, gamma, beta, eps, y, 0, rows);
            return;
        }
        fixed (float* xPinned = x, gammaPinned = gamma, betaPinned = beta, yPinned = y)
        {
            float* xPointer = xPinned, gammaPointer = gammaPinned, betaPointer = betaPinned, yPointer = yPinned;
            int length = x.Length;
            Parallelism.For(chunks, 0, (chunk, _) =>
            {
                var (start, end) = Parallelism.ChunkRange(rows, chunks, chunk);
                LayerNormRows(new ReadOnlySpan<float>(xPointer, length), new ReadOnlySpan<float>(gammaPointer, dim),
                    new ReadOnlySpan<float>(betaPointer, dim), eps, new Span<float>(yPointer, length), start, end);
            });
        }
    }

    private static void LayerNormRows(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, float eps, Span<float> y, int start, int end)
    {
        int dim = gamma.Length;
        for (int r = start; r < end; r++)
        {
            var xr = x.Slice(r * dim, dim);
            var yr = y.Slice(r * dim, dim);
            double mean = 0, variance = 0;
            for (int i = 0; i < dim; i++)
                mean += xr[i];
            mean /= dim;
            for (int i = 0; i < dim; i++)
                variance += (xr[i] - mean) * (xr[i] - mean);
            double scale = 1.0 / Math.Sqrt(variance / dim + eps);
            // Elementwise, so y may be x: each element is read before it is written.
            for (int i = 0; i < dim; i++)
                yr[i] = (float)((xr[i] - mean) * scale * gamma[i] + beta[i]);
        }
    }

    // ---------------------------------------------------------------- gelu_mlp

    /// <summary>y (rows, hidden) = fc2(GELU(fc1(x))), 256 rows at a time; x is (rows, hidden). y must not overlap x.</summary>
    public static void GeluMlp(ReadOnlySpan<float> x, int rows, GeluMlpWeights weights, GeluApproximation approximation, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        int hidden = weights.Hidden, inner = weights.Intermediate;
        if (weights.Fc2.Rows != hidden || weights.Fc2.Cols != inner)
            throw new ArgumentException($"GeluMlp: fc1 '{weights.Fc1.Name}' is [{inner}, {hidden}] so fc2 must be [{hidden}, {inner}], found [{weights.Fc2.Rows}, {weights.Fc2.Cols}]", nameof(weights));
        CheckRows("GeluMlp", x, y, rows, hidden);
        if (rows == 0)
            return;
        int blockRows = Math.Min(rows, RowBlock);
        var buffer = ArrayPool<float>.Shared.Rent(blockRows * inner);
        try
        {
            for (int blockStart = 0; blockStart < rows; blockStart += blockRows)
            {
                int count = Math.Min(blockRows, rows - blockStart);
                var h = buffer.AsSpan(0, count * inner); // (count, inner)
                CpuKernels.Linear(x.Slice(blockStart * hidden, count * hidden), count, weights.Fc1, weights.Fc1Bias, h);
                Gelu(h, approximation);
                CpuKernels.Linear(h, count, weights.Fc2, weights.Fc2Bias, y.Slice(blockStart * hidden, count * hidden));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    /// <summary>GELU in place. Tanh form written as x·σ(2a), a = √(2/π)(x + 0.044715x³), which equals
    /// ½x(1 + tanh a) without the cancellation of 1 + tanh a for negative x.</summary>
    public static void Gelu(Span<float> values, GeluApproximation approximation)
    {
        if (approximation == GeluApproximation.None)
        {
            for (int i = 0; i < values.Length; i++)
            {
                double v = values[i];
                values[i] = (float)(0.5 * v * Erfc(-v * 0.70710678118654752440));
            }
            return;
        }
        const float TwoSqrtTwoOverPi = 1.5957691216057308f; // 2·√(2/π)
        Span<float> t = stackalloc float[256];
        for (int start = 0; start < values.Length; start += t.Length)
        {
            var v = values.Slice(start, Math.Min(t.Length, values.Length - start));
            var s = t[..v.Length];
            TensorPrimitives.Multiply(v, v, s);
            TensorPrimitives.Multiply(s, 0.044715f, s);
            TensorPrimitives.Add(s, 1f, s);
            TensorPrimitives.Multiply(s, v, s);
            TensorPrimitives.Multiply(s, TwoSqrtTwoOverPi, s);
            TensorPrimitives.Sigmoid(s, s);
            TensorPrimitives.Multiply(v, s, v);
        }
    }

    /// <summary>
    /// erfc(x) = 1 − erf(x) with relative error below 1.2·10⁻⁷ for every x (the Chebyshev-fitted form of Press et
    /// al., Numerical Recipes §6.2): t = 1/(1 + |x|/2), erfc|x| = t·exp(−x² + P(t)), erfc(−x) = 2 − erfc(x).
    /// Relative accuracy in the tail keeps ½x·erfc(−x/√2) accurate for negative x, where GELU is tiny.
    /// </summary>
    public static double Erfc(double x)
    {
        double z = Math.Abs(x);
        double t = 1.0 / (1.0 + 0.5 * z);
        double p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
                   + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
        double r = t * Math.Exp(-z * z + p);
        return x >= 0 ? r : 2.0 - r;
    }

    // ---------------------------------------------------------------- hyena: implicit filter

    /// <summary>
    /// Computes lags [oldLength, newLength) of the implicit filter and returns h for [0, newLength) in the
    /// reversed per-channel layout of <see cref="HyenaImplicitFilter.Materialized"/>, copying the old lags.
    /// </summary>
    internal static HyenaImplicitFilter.Materialized ExtendImplicitFilter(ImplicitFilterNetwork network, int oldLength, float[] oldReversed, int newLength)
    {
        int channels = network.Channels;
        int added = newLength - oldLength;
        var rows = new float[(long)added * channels]; // (added, D): h for the new lags, lag-major
        int chunks = Parallelism.ChunkCount(added, added * network.WorkPerLag, MinWorkPerChunk);
        Parallelism.For(chunks, 0, (chunk, _) =>
        {
            var (start, end) = Parallelism.ChunkRange(added, chunks, chunk);
            var scratch = network.CreateScratch();
            for (int s = oldLength + start; s < oldLength + end; s++)
                network.Evaluate(s, scratch, rows.AsSpan((s - oldLength) * channels, channels));
        });

        var reversed = new float[(long)channels * newLength];
        for (int c = 0; c < channels; c++)
        {
            var block = reversed.AsSpan(c * newLength, newLength);
            if (oldLength > 0)
                oldReversed.AsSpan(c * oldLength, oldLength).CopyTo(block[added..]); // lags oldLength−1 … 0
            for (int s = oldLength; s < newLength; s++)
                block[newLength - 1 - s] = rows[(s - oldLength) * channels + c];
        }
        return new HyenaImplicitFilter.Materialized(newLength, reversed);
    }

    // ---------------------------------------------------------------- hyena: layer

    /// <summary>
    /// The <c>hyena</c> mixer. x is (rows, D), the tokens at positions P … P + rows − 1 with P = state.Length;
    /// y is (rows, D) and must not overlap x. Steps (Poli et al. 2023, Algorithm 3 with order N = 2, in the split and
    /// gating order of the HyenaDNA HF remote code):
    /// 1. p = x·W_inᵀ + b_in, (rows, 3D).
    /// 2. q_t = b_sf + Σ_{j=0}^{K−1} w_sf[:, j] ⊙ p_(t−K+1+j): causal depthwise short filter over the 3D channels
    ///    (PyTorch Conv1d padded by K − 1 and cut to the first T outputs); p before position 0 is zero.
    /// 3. (x0, x1, v) = q split into three blocks of D channels, in that order.
    /// 4. u = v ⊙ x1, appended to the state's history.
    /// 5. z_t = Σ_{s=0}^{t} h[:, s] ⊙ u_(t−s) + bias ⊙ u_t (the long convolution, per channel).
    /// 6. y = (x0 ⊙ z)·W_outᵀ + b_out.
    /// Steps 1–4 run 256 rows at a time, so the scratch is 2 × 256 × 3D floats plus x0, (rows, D).
    /// Everything is checked, and the filter grown, before the state changes; the state advances only at the end.
    /// </summary>
    public static void HyenaLayer(ReadOnlySpan<float> x, int rows, HyenaWeights weights, HyenaOptions options, HyenaState state, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(state);
        int d = options.Hidden, w = options.InnerWidth, k = options.ShortFilterWidth;
        CheckHyenaShapes(weights, options, state);
        CheckRows("Hyena", x, y, rows, d);
        if (rows == 0)
            return;
        int past = state.Length;
        long total = (long)past + rows;
        if (total > state.Capacity)
            throw new HorizonException($"hyena: the state holds {past} tokens; {rows} more exceed its capacity of {state.Capacity}");
        var filter = weights.Filter;
        filter.EnsureLength((int)total); // throws past max_seq_len
        var h = filter.Current;

        int blockRows = Math.Min(rows, RowBlock);
        int tailLength = (k - 1) * w;
        var gateBuffer = ArrayPool<float>.Shared.Rent(rows * d);        // x0, then x0 ⊙ z in place: (rows, D)
        var projBuffer = ArrayPool<float>.Shared.Rent(blockRows * w);   // (block, 3D)
        var convBuffer = ArrayPool<float>.Shared.Rent(blockRows * w);   // (block, 3D)
        var tail = ArrayPool<float>.Shared.Rent(Math.Max(1, tailLength)); // the short filter's running tail (K − 1, 3D)
        try
        {
            state.ShortTail.AsSpan().CopyTo(tail);
            state.EnsureHistory((int)total);
            var history = state.History;
            int stride = state.HistoryStride;
            for (int blockStart = 0; blockStart < rows; blockStart += blockRows)
            {
                int count = Math.Min(blockRows, rows - blockStart);
                var proj = projBuffer.AsSpan(0, count * w);
                var conv = convBuffer.AsSpan(0, count * w);
                CpuKernels.Linear(x.Slice(blockStart * d, count * d), count, weights.InProj, weights.InProjBias, proj);
                ShortConvolution(proj, count, tail.AsSpan(0, tailLength), weights.ShortFilter, weights.ShortFilterBias, k, w, conv);
                UpdateShortTail(tail, proj, count, k, w);
                for (int r = 0; r < count; r++)
                {
                    var row = conv.Slice(r * w, w);
                    row[..d].CopyTo(gateBuffer.AsSpan((blockStart + r) * d, d)); // x0
                    var x1 = row.Slice(d, d);
                    var v = row.Slice(2 * d, d);
                    int position = past + blockStart + r;
                    for (int c = 0; c < d; c++)
                        history[c * stride + position] = v[c] * x1[c];       // u = v ⊙ x1
                }
            }

            LongConvolutionGate(state, past, rows, h, filter.Bias, gateBuffer, d, options.Path);
            CpuKernels.Linear(gateBuffer.AsSpan(0, rows * d), rows, weights.OutProj, weights.OutProjBias, y);

            tail.AsSpan(0, tailLength).CopyTo(state.ShortTail);
            state.Length = (int)total;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(gateBuffer);
            ArrayPool<float>.Shared.Return(projBuffer);
            ArrayPool<float>.Shared.Return(convBuffer);
            ArrayPool<float>.Shared.Return(tail);
        }
    }

    /// <summary>
    /// Causal depthwise convolution of width K over W channels. proj is (rows, W), the new rows; tail is
    /// (K − 1, W), the rows just before them (zeros before position 0); weight is (W, K) (Conv1d's [W, 1, K]);
    /// bias is (W) or empty; conv is (rows, W): conv_r = bias + Σ_j weight[:, j] ⊙ ext_(r+j), ext = tail then proj.
    /// </summary>
    public static void ShortConvolution(ReadOnlySpan<float> proj, int rows, ReadOnlySpan<float> tail, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int k, int w, Span<float> conv)
    {
        if (proj.Length < rows * w || conv.Length < rows * w || tail.Length < (k - 1) * w || weight.Length != k * w || !bias.IsEmpty && bias.Length != w)
            throw new ArgumentException($"ShortConvolution: sizes do not match rows {rows}, width {k}, channels {w}");
        var taps = ArrayPool<float>.Shared.Rent(k * w); // (K, W): the filter transposed so each tap is contiguous
        try
        {
            for (int c = 0; c < w; c++)
                for (int j = 0; j < k; j++)
                    taps[j * w + c] = weight[c * k + j];
            for (int r = 0; r < rows; r++)
            {
                var row = conv.Slice(r * w, w);
                if (bias.IsEmpty)
                    row.Clear();
                else
                    bias.CopyTo(row);
                for (int j = 0; j < k; j++)
                {
                    int q = r + j;
                    var source = q < k - 1 ? tail.Slice(q * w, w) : proj.Slice((q - (k - 1)) * w, w);
                    TensorPrimitives.FusedMultiplyAdd(source, taps.AsSpan(j * w, w), row, row);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(taps);
        }
    }

    /// <summary>tail (K − 1, W) ← the last K − 1 rows of [tail; proj (rows, W)].</summary>
    private static void UpdateShortTail(float[] tail, ReadOnlySpan<float> proj, int rows, int k, int w)
    {
        // Ascending order is safe in place: row i reads row rows + i > i of [tail; proj], not yet overwritten.
        for (int i = 0; i < k - 1; i++)
        {
            int q = rows + i;
            var source = q < k - 1 ? tail.AsSpan(q * w, w) : proj.Slice((q - (k - 1)) * w, w);
            source.CopyTo(tail.AsSpan(i * w, w));
        }
    }

    /// <summary>
    /// Step 5 and the gate of step 6, per channel c, channels split over threads:
    /// gate[r, c] ← gate[r, c] · (Σ_{s=0}^{t} h[c, s]·u[c, t − s] + bias[c]·u[c, t]), t = past + r, where gate holds
    /// x0 (rows, D) on entry.
    /// Direct form: one dot product of u[c, 0 … t] with the reversed filter per output, O(rows·T), float32 SIMD
    /// in blocks summed in float64.
    /// FFT form: u[c, 0 … T) and h[c, 0 … T) zero-padded to n = 2^⌈log₂(T + rows − 1)⌉ and convolved circularly in
    /// float64 (three real FFTs of length n); the wrap-around only reaches outputs before position past, which are
    /// not kept, so n ≥ T + rows − 1 suffices (2T − 1 for a prefill from empty).
    /// Auto takes the direct form while rows·past + rows²/2 ≤ 8·n·log₂n (decode and short chunks), else FFT.
    /// </summary>
    private static void LongConvolutionGate(HyenaState state, int past, int rows, HyenaImplicitFilter.Materialized h, float[] bias,
        float[] gate, int d, HyenaConvolutionPath path)
    {
        int total = past + rows;
        int n = Fft.PaddedLength((long)total + rows - 1);
        long directWork = (long)rows * past + (long)rows * (rows + 1) / 2;
        long fftWork = 8L * n * BitOperations.Log2((uint)n);
        bool useFft = path switch
        {
            HyenaConvolutionPath.Direct => false,
            HyenaConvolutionPath.Fft => true,
            _ => directWork > fftWork,
        };
        int stride = state.HistoryStride;
        int zFloats = (rows + 1) & ~1; // keeps the float64 scratch after it 8-byte aligned
        int fftDoubles = useFft ? 2 * n + 4 * (n / 2 + 1) : 0;
        int chunks = Parallelism.ChunkCount(d, d * (useFft ? fftWork : directWork), MinWorkPerChunk);
        Parallelism.For(chunks, zFloats + 2 * fftDoubles, (chunk, scratch) =>
        {
            var (start, end) = Parallelism.ChunkRange(d, chunks, chunk);
            var z = scratch.AsSpan(0, rows);
            for (int c = start; c < end; c++)
            {
                var u = state.History.Slice(c * stride, total);
                var hr = h.Reversed.AsSpan(c * h.Length, h.Length); // hr[h.Length − 1 − s] = h[c, s]
                if (useFft)
                {
                    var plan = Fft.RealPlan(n);
                    var doubles = MemoryMarshal.Cast<float, double>(scratch.AsSpan(zFloats, 2 * fftDoubles));
                    var a = doubles[..n];
                    var b = doubles.Slice(n, n);
                    for (int j = 0; j < total; j++)
                        a[j] = u[j];
                    a[total..].Clear();
                    for (int s = 0; s < total; s++)
                        b[s] = hr[h.Length - 1 - s];
                    b[total..].Clear();
                    Fft.CircularConvolveInPlace(plan, a, b, doubles.Slice(2 * n, 4 * plan.SpectrumLength));
                    for (int r = 0; r < rows; r++)
                        z[r] = (float)a[past + r];
                }
                else
                {
                    for (int r = 0; r < rows; r++)
                    {
                        int t = past + r;
                        z[r] = (float)LongDot(u[..(t + 1)], hr.Slice(h.Length - 1 - t, t + 1));
                    }
                }
                float skip = bias[c];
                for (int r = 0; r < rows; r++)
                    gate[r * d + c] *= z[r] + skip * u[past + r];
            }
        });
    }

    /// <summary>
    /// Σ a_i·b_i over a long history: SIMD float32 dot products of 4096-element blocks, summed in float64, so the
    /// rounding error grows with the block length rather than with the context (10⁶ tokens in one float32
    /// accumulator could lose about three digits).
    /// </summary>
    private static double LongDot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        const int Block = 4096;
        double sum = 0;
        int i = 0;
        for (; i + Block <= a.Length; i += Block)
            sum += TensorPrimitives.Dot(a.Slice(i, Block), b.Slice(i, Block));
        return sum + TensorPrimitives.Dot(a[i..], b[i..]);
    }

    private static void CheckHyenaShapes(HyenaWeights weights, HyenaOptions options, HyenaState state)
    {
        int d = options.Hidden, w = options.InnerWidth, k = options.ShortFilterWidth;
        if (weights.InProj.Rows != w || weights.InProj.Cols != d)
            throw new ArgumentException($"Hyena: in_proj '{weights.InProj.Name}' is [{weights.InProj.Rows}, {weights.InProj.Cols}], expected [{w}, {d}]", nameof(weights));
        if (weights.OutProj.Rows != d || weights.OutProj.Cols != d)
            throw new ArgumentException($"Hyena: out_proj '{weights.OutProj.Name}' is [{weights.OutProj.Rows}, {weights.OutProj.Cols}], expected [{d}, {d}]", nameof(weights));
        if (weights.ShortFilter.Length != w * k)
            throw new ArgumentException($"Hyena: short_filter has {weights.ShortFilter.Length} values, expected 3D × K = {w} × {k}", nameof(weights));
        if (weights.InProjBias is { } ib && ib.Length != w || weights.ShortFilterBias is { } sb && sb.Length != w || weights.OutProjBias is { } ob && ob.Length != d)
            throw new ArgumentException($"Hyena: a bias has the wrong length (in_proj and short_filter: {w}, out_proj: {d})", nameof(weights));
        if (weights.Filter.Channels != d)
            throw new ArgumentException($"Hyena: the filter has {weights.Filter.Channels} channels, expected D = {d}", nameof(weights));
        if (state.Hidden != d || state.ShortFilterWidth != k)
            throw new ArgumentException($"Hyena: the state is for D = {state.Hidden}, K = {state.ShortFilterWidth}; the layer has D = {d}, K = {k}", nameof(state));
    }

    private static void CheckRows(string op, ReadOnlySpan<float> x, Span<float> y, int rows, int dim)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        if (x.Length != (long)rows * dim)
            throw new ArgumentException($"{op}: x has {x.Length} floats, expected rows {rows} × {dim} = {(long)rows * dim}", nameof(x));
        if (y.Length != x.Length)
            throw new ArgumentException($"{op}: y has {y.Length} floats, expected rows {rows} × {dim} = {(long)rows * dim}", nameof(y));
        if (x.Overlaps(y))
            throw new ArgumentException($"{op}: y must not overlap x", nameof(y));
    }
}

/// <summary>
/// The implicit filter network of one layer with its weights widened to float64 (Poli et al. 2023 §3.2):
/// a = sin(freq ⊙ (W₀z_s + b₀)), a = sin(freq ⊙ (W_i a + b_i)) for i = 1 … num_inner_mlps,
/// h[:, s] = (W_out a) ⊙ (exp(−t_s·|δ|) + shift).
/// </summary>
internal sealed class ImplicitFilterNetwork
{
    private readonly Matrix? _z;
    private readonly double[] _time;          // t_s, null-stored: s/(L − 1)
    private readonly double[][] _weights;     // row-major [out, in]
    private readonly int[] _inputs;
    private readonly int[] _outputs;
    private readonly double[][] _biases;
    private readonly double[] _frequency;
    private readonly double[] _absDeltas;
    private readonly double _shift;
    private readonly int _embeddingDim;
    private readonly int _maxLength;

    public ImplicitFilterNetwork(HyenaFilterWeights weights, HyenaOptions options)
    {
        int d = options.Hidden, order = options.FilterOrder, e = options.EmbeddingDim, layers = options.InnerMlps + 2;
        Channels = d;
        _embeddingDim = e;
        _maxLength = options.MaxLength;
        _shift = options.ModulationShift;
        if (weights.Linears.Length != layers || weights.LinearBiases.Length != layers - 1)
            throw new ModelLoadException($"hyena filter: {weights.Linears.Length} linears and {weights.LinearBiases.Length} biases, expected {layers} and {layers - 1} (num_inner_mlps = {options.InnerMlps})");
        _weights = new double[layers][];
        _inputs = new int[layers];
        _outputs = new int[layers];
        _biases = new double[layers - 1][];
        var row = new float[Math.Max(order, e)];
        for (int i = 0; i < layers; i++)
        {
            var m = weights.Linears[i];
            int rows = i == layers - 1 ? d : order, cols = i == 0 ? e : order;
            if (m.Rows != rows || m.Cols != cols)
                throw new ModelLoadException($"hyena filter: '{m.Name}' is [{m.Rows}, {m.Cols}], expected [{rows}, {cols}]");
            _inputs[i] = cols;
            _outputs[i] = rows;
            _weights[i] = new double[rows * cols];
            for (int o = 0; o < rows; o++)
            {
                m.ReadRow(o, row);
                for (int j = 0; j < cols; j++)
                    _weights[i][o * cols + j] = row[j];
            }
            if (i < layers - 1)
            {
                if (weights.LinearBiases[i].Length != order)
                    throw new ModelLoadException($"hyena filter: bias {i} has {weights.LinearBiases[i].Length} values, expected {order}");
                _biases[i] = Array.ConvertAll(weights.LinearBiases[i], v => (double)v);
            }
        }
        if (weights.Frequency.Length != order)
            throw new ModelLoadException($"hyena filter: freq has {weights.Frequency.Length} values, expected filter_order = {order}");
        _frequency = Array.ConvertAll(weights.Frequency, v => (double)v);

        var deltas = weights.Deltas ?? InitialDeltas(d);
        if (deltas.Length != d)
            throw new ModelLoadException($"hyena filter: deltas has {deltas.Length} values, expected {d}");
        _absDeltas = Array.ConvertAll(deltas, v => Math.Abs((double)v));

        if (weights.Time is { } t)
        {
            if (t.Length != _maxLength)
                throw new ModelLoadException($"hyena filter: t has {t.Length} values, expected max_seq_len = {_maxLength}");
            _time = Array.ConvertAll(t, v => (double)v);
        }
        else
        {
            _time = [];
        }
        if (weights.PositionalEmbedding is { } z && (z.Rows != _maxLength || z.Cols != e))
            throw new ModelLoadException($"hyena filter: '{z.Name}' is ({z.Rows}, {z.Cols}), expected ({_maxLength}, {e})");
        _z = weights.PositionalEmbedding;
        WorkPerLag = (long)e * order + (long)options.InnerMlps * order * order + (long)order * d;
    }

    public int Channels { get; }

    /// <summary>Multiply-adds per lag.</summary>
    public long WorkPerLag { get; }

    public Scratch CreateScratch() => new(new float[_embeddingDim], new double[_embeddingDim], new double[_outputs.Max()], new double[_outputs.Max()]);

    public sealed record Scratch(float[] ZRow, double[] Z, double[] A, double[] B);

    /// <summary>h[:, s] (D values) into <paramref name="destination"/>.</summary>
    public void Evaluate(int s, Scratch scratch, Span<float> destination)
    {
        if (_z is { } z)
        {
            z.ReadRow(s, scratch.ZRow);
            for (int j = 0; j < _embeddingDim; j++)
                scratch.Z[j] = scratch.ZRow[j];
        }
        else
        {
            InitialPositionalEmbeddingRow(s, _maxLength, scratch.Z);
        }
        ReadOnlySpan<double> input = scratch.Z;
        double[] a = scratch.A, b = scratch.B;
        int layers = _weights.Length;
        for (int i = 0; i < layers; i++)
        {
            int rows = _outputs[i], cols = _inputs[i];
            var output = i % 2 == 0 ? a : b;
            for (int o = 0; o < rows; o++)
                output[o] = TensorPrimitives.Dot(_weights[i].AsSpan(o * cols, cols), input[..cols]);
            if (i < layers - 1)
            {
                var bias = _biases[i];
                for (int o = 0; o < rows; o++)
                    output[o] = Math.Sin(_frequency[o] * (output[o] + bias[o]));
                input = output;
            }
            else
            {
                double time = _time.Length > 0 ? _time[s] : (_maxLength == 1 ? 0.0 : (double)s / (_maxLength - 1));
                for (int c = 0; c < rows; c++)
                    destination[c] = (float)(output[c] * (Math.Exp(-time * _absDeltas[c]) + _shift));
            }
        }
    }

    /// <summary>HyenaDNA's initial deltas: linspace(ln(0.01)/1.5, ln(0.01)/0.3, D) (slow to fast decay).</summary>
    public static float[] InitialDeltas(int channels)
    {
        double min = Math.Log(1e-2) / 1.5, max = Math.Log(1e-2) / 0.3;
        var result = new float[channels];
        for (int c = 0; c < channels; c++)
            result[c] = (float)(channels == 1 ? min : min + (max - min) * c / (channels - 1));
        return result;
    }

    /// <summary>
    /// Row s of HyenaDNA's initial z (max_seq_len = L, emb_dim = E, B = (E − 1)/2 bands):
    /// z_s = [s/(L − 1), cos(−f_b·ω_s) for b &lt; B, sin(−f_b·ω_s) for b &lt; B], ω_s = 2πs/L,
    /// f = linspace(10⁻⁴, B − 1, B).
    /// </summary>
    public static void InitialPositionalEmbeddingRow(int s, int maxLength, Span<double> row)
    {
        int bands = (row.Length - 1) / 2;
        row[0] = maxLength == 1 ? 0.0 : (double)s / (maxLength - 1);
        double omega = 2.0 * Math.PI * s / maxLength;
        for (int b = 0; b < bands; b++)
        {
            double f = bands == 1 ? 1e-4 : 1e-4 + (bands - 1 - 1e-4) * b / (bands - 1);
            row[1 + b] = Math.Cos(-f * omega);
            row[1 + bands + b] = Math.Sin(-f * omega);
        }
    }
}
