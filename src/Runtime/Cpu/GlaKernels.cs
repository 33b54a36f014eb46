using System.Buffers;
using System.Numerics.Tensors;
using Horizon.Ops;

namespace Horizon.Cpu;

/// <summary>
/// CPU kernels of the <c>gla</c> and <c>linear_attention</c> token mixers (Yang et al. 2024, "Gated Linear Attention
/// Transformers with Hardware-Efficient Training"): the whole layers, and their core, the gated linear recurrence
/// S_t = Diag(α_t) S_{t−1} + k_tᵀ v_t, o_t = (s·q_t) S_t, in its recurrent form (§4.1) and its chunkwise parallel
/// form (§4.2). Parallel over key/value heads.
/// </summary>
public static class GlaKernels
{
    /// <summary>Below this many multiply-adds a call runs on the calling thread (Parallel.For costs more).</summary>
    private const long ParallelThreshold = 1 << 16;

    /// <summary>Tokens per sub-chunk of the chunked form's intra-chunk weights (fla's BC, 16).</summary>
    public const int SubChunk = 16;

    /// <summary>
    /// The <c>gla</c> layer: x (rows, hidden) → y (rows, hidden), advancing <paramref name="state"/> by rows tokens.
    /// q = W_q x, k = W_k x, v = W_v x (each through silu(short conv) when ConvSize &gt; 0);
    /// log α = max(logsigmoid(W₂W₁x + b)/τ, clamp_min); o = gated recurrence; y = W_o[RMSNorm_head(o) ⊙ swish(W_g x)].
    /// </summary>
    public static void GlaLayer(ReadOnlySpan<float> x, int rows, GlaWeights weights, GlaOptions options, GlaState state, Span<float> y)
    {
        ValidateGla(x, rows, weights, options, state, y);
        if (rows == 0)
            return;
        int hidden = options.Hidden;
        x = x[..(rows * hidden)];
        int rank = weights.GateDown.Rows;
        var pool = ArrayPool<float>.Shared;
        float[] q = pool.Rent(rows * options.KeyDim);
        float[] k = pool.Rent(rows * options.KvKeyDim);
        float[] v = pool.Rent(rows * options.KvValueDim);
        float[] g = pool.Rent(rows * options.KvKeyDim);
        float[] low = pool.Rent(rows * rank);
        float[] o = pool.Rent(rows * options.ValueDim);
        float[]? gate = options.UseOutputGate ? pool.Rent(rows * options.ValueDim) : null;
        try
        {
            CpuKernels.Linear(x, rows, weights.Query, default, q.AsSpan(0, rows * options.KeyDim));
            CpuKernels.Linear(x, rows, weights.Key, default, k.AsSpan(0, rows * options.KvKeyDim));
            CpuKernels.Linear(x, rows, weights.Value, default, v.AsSpan(0, rows * options.KvValueDim));
            if (options.ConvSize > 0)
            {
                ShortConvSilu(q.AsSpan(0, rows * options.KeyDim), rows, weights.QueryConv!, state.QueryConvTail);
                ShortConvSilu(k.AsSpan(0, rows * options.KvKeyDim), rows, weights.KeyConv!, state.KeyConvTail);
                ShortConvSilu(v.AsSpan(0, rows * options.KvValueDim), rows, weights.ValueConv!, state.ValueConvTail);
            }

            CpuKernels.Linear(x, rows, weights.GateDown, default, low.AsSpan(0, rows * rank));
            var logGates = g.AsSpan(0, rows * options.KvKeyDim);
            CpuKernels.Linear(low.AsSpan(0, rows * rank), rows, weights.GateUp, weights.GateBias, logGates);
            LogSigmoidGates(logGates, options.GateLogitNormalizer, options.ClampMin);

            if (gate is not null)
                CpuKernels.Linear(x, rows, weights.OutputGate!, default, gate.AsSpan(0, rows * options.ValueDim));

            bool chunked = options.Mode == GlaMode.Chunked || (options.Mode == GlaMode.Auto && rows > 1);
            float scale = (float)(1.0 / Math.Sqrt(options.HeadKDim));
            Mix(q, k, v, g, rows, options.Heads, options.KvHeads, options.HeadKDim, options.HeadVDim, scale,
                chunked ? options.ChunkSize : 0, state.S, o);
            state.Tokens += rows;

            var outSpan = o.AsSpan(0, rows * options.ValueDim);
            NormAndGate(outSpan, rows * options.Heads, options.HeadVDim, weights.NormWeight, options.NormEps,
                gate is null ? default : gate.AsSpan(0, rows * options.ValueDim));
            CpuKernels.Linear(outSpan, rows, weights.Output, default, y[..(rows * hidden)]);
        }
        finally
        {
            pool.Return(q);
            pool.Return(k);
            pool.Return(v);
            pool.Return(g);
            pool.Return(low);
            pool.Return(o);
            if (gate is not null)
                pool.Return(gate);
        }
    }

    /// <summary>
    /// The <c>linear_attention</c> layer: x (rows, hidden) → y (rows, hidden); the ungated recurrence (α ≡ 1), then
    /// the optional per-head RMSNorm, the optional swish output gate and W_o.
    /// </summary>
    public static void LinearAttentionLayer(ReadOnlySpan<float> x, int rows, LinearAttentionWeights weights, LinearAttentionOptions options, GlaState state, Span<float> y)
    {
        ValidateLinearAttention(x, rows, weights, options, state, y);
        if (rows == 0)
            return;
        x = x[..(rows * options.Hidden)];
        int keyDim = options.Heads * options.HeadKDim;
        int valueDim = options.Heads * options.HeadVDim;
        int kvKeyDim = options.KvHeads * options.HeadKDim;
        int kvValueDim = options.KvHeads * options.HeadVDim;
        var pool = ArrayPool<float>.Shared;
        float[] q = pool.Rent(rows * keyDim);
        float[] k = pool.Rent(rows * kvKeyDim);
        float[] v = pool.Rent(rows * kvValueDim);
        float[] o = pool.Rent(rows * valueDim);
        float[]? gate = weights.OutputGate is null ? null : pool.Rent(rows * valueDim);
        try
        {
            CpuKernels.Linear(x, rows, weights.Query, default, q.AsSpan(0, rows * keyDim));
            CpuKernels.Linear(x, rows, weights.Key, default, k.AsSpan(0, rows * kvKeyDim));
            CpuKernels.Linear(x, rows, weights.Value, default, v.AsSpan(0, rows * kvValueDim));
            if (gate is not null)
                CpuKernels.Linear(x, rows, weights.OutputGate!, default, gate.AsSpan(0, rows * valueDim));

            bool chunked = options.Mode == GlaMode.Chunked || (options.Mode == GlaMode.Auto && rows > 1);
            float scale = (float)(options.Scale ?? 1.0 / Math.Sqrt(options.HeadKDim));
            Mix(q, k, v, null, rows, options.Heads, options.KvHeads, options.HeadKDim, options.HeadVDim, scale,
                chunked ? options.ChunkSize : 0, state.S, o);
            state.Tokens += rows;

            var outSpan = o.AsSpan(0, rows * valueDim);
            if (options.OutputNorm)
                NormAndGate(outSpan, rows * options.Heads, options.HeadVDim, weights.NormWeight, options.NormEps,
                    gate is null ? default : gate.AsSpan(0, rows * valueDim));
            else if (gate is not null)
                MultiplySwish(outSpan, gate.AsSpan(0, rows * valueDim));
            CpuKernels.Linear(outSpan, rows, weights.Output, default, y[..(rows * options.Hidden)]);
        }
        finally
        {
            pool.Return(q);
            pool.Return(k);
            pool.Return(v);
            pool.Return(o);
            if (gate is not null)
                pool.Return(gate);
        }
    }

    /// <summary>
    /// The core recurrence over rows tokens. q is (rows, heads, d_k), k (rows, kv_heads, d_k), v (rows, kv_heads, d_v),
    /// logGates (rows, kv_heads, d_k) holds log α ≤ 0 (null: α ≡ 1, plain linear attention), s is the state
    /// (kv_heads, d_k, d_v), updated in place, and o (rows, heads, d_v) receives o_t = (scale·q_t) S_t.
    /// chunkSize &gt; 0 uses the chunkwise parallel form with that chunk, 0 steps the recurrence token by token.
    /// Arrays may be longer than needed (pooled).
    /// </summary>
    public static void Mix(float[] q, float[] k, float[] v, float[]? logGates, int rows, int heads, int kvHeads, int headKDim, int headVDim,
        float scale, int chunkSize, float[] s, float[] o)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(chunkSize);
        if (heads % kvHeads != 0)
            throw new ArgumentException($"gla: heads = {heads} is not a multiple of kv_heads = {kvHeads}");
        var p = new MixProblem(q, k, v, logGates, rows, heads, kvHeads, headKDim, headVDim, scale, s, o);
        long work = (long)rows * heads * headKDim * headVDim * 2;
        if (kvHeads == 1 || work < ParallelThreshold)
        {
            for (int h = 0; h < kvHeads; h++)
                RunHead(p, h, chunkSize);
        }
        else
        {
            Parallel.For(0, kvHeads, h => RunHead(p, h, chunkSize));
        }
    }

    private sealed record MixProblem(float[] Q, float[] K, float[] V, float[]? G, int Rows, int Heads, int KvHeads, int Dk, int Dv,
        float Scale, float[] S, float[] O)
    {
        public int Group => Heads / KvHeads;
    }

    private static void RunHead(MixProblem p, int kvHead, int chunkSize)
    {
        if (chunkSize > 0)
            ChunkedHead(p, kvHead, chunkSize);
        else
            RecurrentHead(p, kvHead);
    }

    /// <summary>
    /// Recurrent form (Yang et al. 2024 §4.1) for one key/value head and its query heads, token by token:
    /// S ← Diag(α_t) S + k_tᵀ v_t, then o_t = (scale·q_t) S for each query head of the group.
    /// </summary>
    private static void RecurrentHead(MixProblem p, int kh)
    {
        int dk = p.Dk, dv = p.Dv, group = p.Group;
        var state = p.S.AsSpan(kh * dk * dv, dk * dv);
        Span<float> alpha = dk <= 512 ? stackalloc float[dk] : new float[dk];
        for (int t = 0; t < p.Rows; t++)
        {
            var kt = p.K.AsSpan((t * p.KvHeads + kh) * dk, dk);
            var vt = p.V.AsSpan((t * p.KvHeads + kh) * dv, dv);
            if (p.G is not null)
            {
                TensorPrimitives.Exp(p.G.AsSpan((t * p.KvHeads + kh) * dk, dk), alpha);
                for (int i = 0; i < dk; i++)
                {
                    var row = state.Slice(i * dv, dv);
                    TensorPrimitives.Multiply(row, alpha[i], row);
                    TensorPrimitives.MultiplyAdd(vt, kt[i], row, row);
                }
            }
            else
            {
                for (int i = 0; i < dk; i++)
                {
                    var row = state.Slice(i * dv, dv);
                    TensorPrimitives.MultiplyAdd(vt, kt[i], row, row);
                }
            }

            for (int r = 0; r < group; r++)
            {
                int h = kh * group + r;
                var qt = p.Q.AsSpan((t * p.Heads + h) * dk, dk);
                var ot = p.O.AsSpan((t * p.Heads + h) * dv, dv);
                ot.Clear();
                for (int i = 0; i < dk; i++)
                    TensorPrimitives.MultiplyAdd(state.Slice(i * dv, dv), qt[i] * p.Scale, ot, ot);
            }
        }
    }

    /// <summary>
    /// Chunkwise parallel form (Yang et al. 2024 §4.2) for one key/value head. Within a chunk of L tokens starting
    /// at c, with b_t = Σ_{c ≤ j ≤ t} log α_j (cumulative, ≤ 0) and S the state before the chunk:
    /// <code>
    /// o_t  = (scale·q_t ⊙ exp(b_t)) S  +  Σ_{s ≤ t} A_ts v_s,   A_ts = scale · Σ_i q_t[i] k_s[i] exp(b_t[i] − b_s[i])
    /// S'   = Diag(exp(b_last)) S  +  Σ_s (k_s ⊙ exp(b_last − b_s))ᵀ v_s
    /// </code>
    /// A is built by sub-chunks of <see cref="SubChunk"/> tokens (the secondary-level chunking of §4.3). For t in a
    /// sub-chunk starting at u and s &lt; u, the decay is split at the boundary u − 1:
    /// A_ts = scale · (q_t ⊙ exp(b_t − b_{u−1})) · (k_s ⊙ exp(b_{u−1} − b_s)), both factors ≤ 1, one exponential per
    /// element of q_t and of k_s instead of one per (t, s) pair. Inside a sub-chunk (u ≤ s ≤ t) the relative decay
    /// exp(b_t − b_s) is formed per element in log space. Every exponent is ≤ 0, so nothing overflows; a factor that
    /// underflows to 0 multiplies another ≤ 1, so the true product was below float32's range as well.
    /// </summary>
    private static void ChunkedHead(MixProblem p, int kh, int chunkSize)
    {
        int dk = p.Dk, dv = p.Dv, group = p.Group;
        int chunk = Math.Min(chunkSize, p.Rows);
        bool gated = p.G is not null;
        var state = p.S.AsSpan(kh * dk * dv, dk * dv);
        // Cumulative log-gates in float64: b_t − b_s is then exact to float32 rounding of the difference itself even
        // when b_t reaches −10³ inside a chunk (in float32 the cancellation would cost |b_t|·2⁻²⁴ absolute).
        double[] b = gated ? new double[chunk * dk] : [];
        var diff = new double[dk];
        var work = new float[dk];
        var qe = new float[dk];
        var decay = new float[dk];
        var kd = new float[chunk * dk]; // k_s ⊙ exp(b_{u−1} − b_s) for the earlier sub-chunks of the current one
        var a = new float[group * chunk];

        for (int c0 = 0; c0 < p.Rows; c0 += chunkSize)
        {
            int len = Math.Min(chunkSize, p.Rows - c0);
            if (gated)
            {
                var g = p.G!;
                for (int t = 0; t < len; t++)
                {
                    int src = ((c0 + t) * p.KvHeads + kh) * dk;
                    for (int i = 0; i < dk; i++)
                        b[t * dk + i] = (t == 0 ? 0.0 : b[(t - 1) * dk + i]) + g[src + i];
                }
            }

            for (int t = 0; t < len; t++)
            {
                // Intra-chunk weights A_ts for s ≤ t, for every query head of the group.
                int u = t - t % SubChunk; // first token of t's sub-chunk
                if (u > 0)
                {
                    // Earlier sub-chunks, s < u: factored at the boundary u − 1 (both factors ≤ 1).
                    if (t == u)
                    {
                        for (int s = 0; s < u; s++)
                        {
                            var ks = p.K.AsSpan(((c0 + s) * p.KvHeads + kh) * dk, dk);
                            if (gated)
                                Decay(b.AsSpan((u - 1) * dk, dk), b.AsSpan(s * dk, dk), ks, diff, kd.AsSpan(s * dk, dk));
                            else
                                ks.CopyTo(kd.AsSpan(s * dk, dk));
                        }
                    }
                    if (gated)
                    {
                        TensorPrimitives.Subtract(b.AsSpan(t * dk, dk), b.AsSpan((u - 1) * dk, dk), diff);
                        TensorPrimitives.ConvertTruncating<double, float>(diff, decay);
                        TensorPrimitives.Exp(decay, decay);
                    }
                    for (int r = 0; r < group; r++)
                    {
                        var qt = p.Q.AsSpan(((c0 + t) * p.Heads + kh * group + r) * dk, dk);
                        if (gated)
                            TensorPrimitives.Multiply(qt, decay, qe);
                        else
                            qt.CopyTo(qe);
                        for (int s = 0; s < u; s++)
                            a[r * chunk + s] = TensorPrimitives.Dot(kd.AsSpan(s * dk, dk), qe) * p.Scale;
                    }
                }
                // Same sub-chunk, u ≤ s ≤ t: relative decay per element in log space.
                for (int s = u; s <= t; s++)
                {
                    ReadOnlySpan<float> ks = p.K.AsSpan(((c0 + s) * p.KvHeads + kh) * dk, dk);
                    if (gated)
                    {
                        Decay(b.AsSpan(t * dk, dk), b.AsSpan(s * dk, dk), ks, diff, work);
                        ks = work;
                    }
                    for (int r = 0; r < group; r++)
                    {
                        var qt = p.Q.AsSpan(((c0 + t) * p.Heads + kh * group + r) * dk, dk);
                        a[r * chunk + s] = TensorPrimitives.Dot(ks, qt) * p.Scale;
                    }
                }

                for (int r = 0; r < group; r++)
                {
                    int h = kh * group + r;
                    var qt = p.Q.AsSpan(((c0 + t) * p.Heads + h) * dk, dk);
                    var ot = p.O.AsSpan(((c0 + t) * p.Heads + h) * dv, dv);
                    // Inter-chunk: (scale·q_t ⊙ exp(b_t)) S.
                    if (gated)
                        Decay(b.AsSpan(t * dk, dk), default, qt, diff, qe);
                    else
                        qt.CopyTo(qe);
                    TensorPrimitives.Multiply(qe, p.Scale, qe);
                    ot.Clear();
                    for (int i = 0; i < dk; i++)
                        TensorPrimitives.MultiplyAdd(state.Slice(i * dv, dv), qe[i], ot, ot);
                    // Intra-chunk: Σ_{s ≤ t} A_ts v_s.
                    for (int s = 0; s <= t; s++)
                        TensorPrimitives.MultiplyAdd(p.V.AsSpan(((c0 + s) * p.KvHeads + kh) * dv, dv), a[r * chunk + s], ot, ot);
                }
            }

            // Carry the state to the end of the chunk: S ← Diag(exp(b_last)) S + Σ_s (k_s ⊙ exp(b_last − b_s))ᵀ v_s.
            if (gated)
            {
                var bLast = b.AsSpan((len - 1) * dk, dk);
                TensorPrimitives.ConvertTruncating<double, float>(bLast, work);
                TensorPrimitives.Exp(work, work);
                for (int i = 0; i < dk; i++)
                {
                    var row = state.Slice(i * dv, dv);
                    TensorPrimitives.Multiply(row, work[i], row);
                }
            }
            for (int s = 0; s < len; s++)
            {
                ReadOnlySpan<float> ks = p.K.AsSpan(((c0 + s) * p.KvHeads + kh) * dk, dk);
                if (gated)
                {
                    Decay(b.AsSpan((len - 1) * dk, dk), b.AsSpan(s * dk, dk), ks, diff, work);
                    ks = work;
                }
                var vs = p.V.AsSpan(((c0 + s) * p.KvHeads + kh) * dv, dv);
                for (int i = 0; i < dk; i++)
                {
                    var row = state.Slice(i * dv, dv);
                    TensorPrimitives.MultiplyAdd(vs, ks[i], row, row);
                }
            }
        }
    }

    /// <summary>
    /// destination = x ⊙ exp(to − from) (from empty: x ⊙ exp(to)); the log-space difference is taken in float64 and
    /// is ≤ 0 for every caller (from is an earlier cumulative sum of non-positive log-gates), so exp never overflows.
    /// </summary>
    private static void Decay(ReadOnlySpan<double> to, ReadOnlySpan<double> from, ReadOnlySpan<float> x, Span<double> diff, Span<float> destination)
    {
        if (from.IsEmpty)
            TensorPrimitives.ConvertTruncating<double, float>(to, destination);
        else
        {
            TensorPrimitives.Subtract(to, from, diff);
            TensorPrimitives.ConvertTruncating<double, float>(diff, destination);
        }
        TensorPrimitives.Exp(destination, destination);
        TensorPrimitives.Multiply(destination, x, destination);
    }

    /// <summary>
    /// Depthwise causal convolution then silu, in place: x (rows, channels) → silu(conv(x)). tail (width − 1, channels)
    /// holds the inputs before the first row (oldest first) and is replaced by the last width − 1 inputs.
    /// </summary>
    public static void ShortConvSilu(Span<float> x, int rows, ShortConvWeights conv, float[] tail)
    {
        int channels = conv.Channels, width = conv.Width, pad = width - 1;
        var pool = ArrayPool<float>.Shared;
        float[] ext = pool.Rent((pad + rows) * channels);
        float[] taps = pool.Rent(width * channels);
        float[] sig = pool.Rent(channels);
        try
        {
            var extended = ext.AsSpan(0, (pad + rows) * channels);
            tail.AsSpan(0, pad * channels).CopyTo(extended);
            x[..(rows * channels)].CopyTo(extended[(pad * channels)..]);
            for (int c = 0; c < channels; c++)
                for (int j = 0; j < width; j++)
                    taps[j * channels + c] = conv.Weight[c * width + j];
            var sg = sig.AsSpan(0, channels);
            for (int t = 0; t < rows; t++)
            {
                var yt = x.Slice(t * channels, channels);
                if (conv.Bias is null)
                    yt.Clear();
                else
                    conv.Bias.AsSpan(0, channels).CopyTo(yt);
                for (int j = 0; j < width; j++)
                    TensorPrimitives.MultiplyAdd(extended.Slice((t + j) * channels, channels), taps.AsSpan(j * channels, channels), yt, yt);
                TensorPrimitives.Sigmoid(yt, sg);
                TensorPrimitives.Multiply(yt, sg, yt);
            }
            extended.Slice(rows * channels, pad * channels).CopyTo(tail);
        }
        finally
        {
            pool.Return(ext);
            pool.Return(taps);
            pool.Return(sig);
        }
    }

    /// <summary>
    /// In place: z → max(logsigmoid(z) / normalizer, clampMin), logsigmoid(z) = min(z, 0) − log(1 + e^{−|z|}),
    /// evaluated in float64 so that very negative logits stay exact (≈ z) and nothing overflows.
    /// </summary>
    public static void LogSigmoidGates(Span<float> z, double normalizer, double? clampMin)
    {
        double inv = 1.0 / normalizer;
        for (int i = 0; i < z.Length; i++)
        {
            double x = z[i];
            double ls = Math.Min(x, 0.0) - Math.Log(1.0 + Math.Exp(-Math.Abs(x)));
            ls *= inv;
            if (clampMin is double c && ls < c)
                ls = c;
            z[i] = (float)ls;
        }
    }

    /// <summary>
    /// o (count, dim) row by row: o ← RMSNorm(o)·γ, then o ← o ⊙ swish(gate) when gate is not empty (same shape).
    /// </summary>
    private static void NormAndGate(Span<float> o, int count, int dim, float[]? gamma, float eps, Span<float> gate)
    {
        float[]? ones = null;
        if (gamma is null)
        {
            ones = new float[dim];
            Array.Fill(ones, 1f);
        }
        CpuKernels.RmsNorm(o, count, gamma ?? ones!, eps, o);
        if (!gate.IsEmpty)
            MultiplySwish(o, gate);
    }

    /// <summary>o ← o ⊙ swish(gate), swish(g) = g·σ(g); gate is overwritten.</summary>
    private static void MultiplySwish(Span<float> o, Span<float> gate)
    {
        const int Block = 4096;
        Span<float> sig = stackalloc float[Block];
        for (int start = 0; start < gate.Length; start += Block)
        {
            int n = Math.Min(Block, gate.Length - start);
            var g = gate.Slice(start, n);
            TensorPrimitives.Sigmoid(g, sig[..n]);
            TensorPrimitives.Multiply(g, sig[..n], g);
            TensorPrimitives.Multiply(o.Slice(start, n), g, o.Slice(start, n));
        }
    }

    private static void ValidateGla(ReadOnlySpan<float> x, int rows, GlaWeights w, GlaOptions o, GlaState state, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(state);
        CheckSizes("gla", o.Hidden, o.Heads, o.KvHeads, o.HeadKDim, o.HeadVDim, o.ChunkSize);
        CheckRows("gla", x, rows, o.Hidden, y);
        if (o.GateLogitNormalizer <= 0)
            throw new ArgumentException($"gla: gate_logit_normalizer = {o.GateLogitNormalizer} must be positive");
        CheckMatrix("gla", "q_proj", w.Query, o.KeyDim, o.Hidden);
        CheckMatrix("gla", "k_proj", w.Key, o.KvKeyDim, o.Hidden);
        CheckMatrix("gla", "v_proj", w.Value, o.KvValueDim, o.Hidden);
        CheckMatrix("gla", "gk_proj.0", w.GateDown, w.GateDown.Rows, o.Hidden);
        CheckMatrix("gla", "gk_proj.1", w.GateUp, o.KvKeyDim, w.GateDown.Rows);
        CheckVector("gla", "gk_proj.1.bias", w.GateBias, o.KvKeyDim);
        CheckMatrix("gla", "o_proj", w.Output, o.Hidden, o.ValueDim);
        CheckVector("gla", "g_norm weight", w.NormWeight, o.HeadVDim);
        if (o.UseOutputGate)
        {
            if (w.OutputGate is null)
                throw new ArgumentException("gla: use_output_gate is true but g_proj is missing");
            CheckMatrix("gla", "g_proj", w.OutputGate, o.ValueDim, o.Hidden);
        }
        if (o.ConvSize < 0)
            throw new ArgumentException($"gla: conv_size = {o.ConvSize} must not be negative");
        if (o.ConvSize > 0)
        {
            CheckConv("q_conv1d", w.QueryConv, o.KeyDim, o.ConvSize);
            CheckConv("k_conv1d", w.KeyConv, o.KvKeyDim, o.ConvSize);
            CheckConv("v_conv1d", w.ValueConv, o.KvValueDim, o.ConvSize);
        }
        CheckState("gla", state, o.KvHeads, o.HeadKDim, o.HeadVDim);
        int pad = Math.Max(o.ConvSize - 1, 0);
        if (state.ConvSize != o.ConvSize || state.QueryConvTail.Length != pad * o.KeyDim
            || state.KeyConvTail.Length != pad * o.KvKeyDim || state.ValueConvTail.Length != pad * o.KvValueDim)
            throw new ArgumentException($"gla: the state's short-convolution tails (conv {state.ConvSize}) do not match conv_size = {o.ConvSize} and the q/k/v widths");
    }

    private static void ValidateLinearAttention(ReadOnlySpan<float> x, int rows, LinearAttentionWeights w, LinearAttentionOptions o, GlaState state, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(state);
        CheckSizes("linear_attention", o.Hidden, o.Heads, o.KvHeads, o.HeadKDim, o.HeadVDim, o.ChunkSize);
        CheckRows("linear_attention", x, rows, o.Hidden, y);
        CheckMatrix("linear_attention", "q_proj", w.Query, o.Heads * o.HeadKDim, o.Hidden);
        CheckMatrix("linear_attention", "k_proj", w.Key, o.KvHeads * o.HeadKDim, o.Hidden);
        CheckMatrix("linear_attention", "v_proj", w.Value, o.KvHeads * o.HeadVDim, o.Hidden);
        CheckMatrix("linear_attention", "o_proj", w.Output, o.Hidden, o.Heads * o.HeadVDim);
        if (w.OutputGate is not null)
            CheckMatrix("linear_attention", "g_proj", w.OutputGate, o.Heads * o.HeadVDim, o.Hidden);
        CheckVector("linear_attention", "norm weight", w.NormWeight, o.HeadVDim);
        CheckState("linear_attention", state, o.KvHeads, o.HeadKDim, o.HeadVDim);
    }

    private static void CheckSizes(string op, int hidden, int heads, int kvHeads, int dk, int dv, int chunk)
    {
        if (hidden <= 0 || heads <= 0 || kvHeads <= 0 || dk <= 0 || dv <= 0)
            throw new ArgumentException($"{op}: sizes must be positive (hidden {hidden}, heads {heads}, kv_heads {kvHeads}, d_k {dk}, d_v {dv})");
        if (heads % kvHeads != 0)
            throw new ArgumentException($"{op}: heads = {heads} is not a multiple of kv_heads = {kvHeads}");
        if (chunk <= 0)
            throw new ArgumentException($"{op}: chunk size = {chunk} must be positive");
    }

    private static void CheckRows(string op, ReadOnlySpan<float> x, int rows, int hidden, Span<float> y)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        if (x.Length < (long)rows * hidden)
            throw new ArgumentException($"{op}: x holds {x.Length} values, {rows} rows of {hidden} need {(long)rows * hidden}");
        if (y.Length < (long)rows * hidden)
            throw new ArgumentException($"{op}: y holds {y.Length} values, {rows} rows of {hidden} need {(long)rows * hidden}");
    }

    private static void CheckMatrix(string op, string role, Matrix m, int rows, int cols)
    {
        ArgumentNullException.ThrowIfNull(m, role);
        if (m.Rows != rows || m.Cols != cols)
            throw new ArgumentException($"{op}: {role} ('{m.Name}') is [{m.Rows}, {m.Cols}], expected [{rows}, {cols}]");
    }

    private static void CheckVector(string op, string role, float[]? v, int length)
    {
        if (v is not null && v.Length != length)
            throw new ArgumentException($"{op}: {role} has {v.Length} values, expected {length}");
    }

    private static void CheckConv(string role, ShortConvWeights? conv, int channels, int width)
    {
        if (conv is null)
            throw new ArgumentException($"gla: conv_size = {width} but {role} is missing");
        if (conv.Channels != channels || conv.Width != width || conv.Weight.Length != channels * width)
            throw new ArgumentException(
                $"gla: {role} is {conv.Channels} channels × width {conv.Width} ({conv.Weight.Length} values), expected {channels} × {width}");
        if (conv.Bias is not null && conv.Bias.Length != channels)
            throw new ArgumentException($"gla: {role} bias has {conv.Bias.Length} values, expected {channels}");
    }

    private static void CheckState(string op, GlaState state, int kvHeads, int dk, int dv)
    {
        if (state.KvHeads != kvHeads || state.HeadKDim != dk || state.HeadVDim != dv)
            throw new ArgumentException(
                $"{op}: the state is ({state.KvHeads}, {state.HeadKDim}, {state.HeadVDim}), expected (kv_heads {kvHeads}, d_k {dk}, d_v {dv})");
    }
}
