namespace Horizon.Ops;

/// <summary>
/// How a recurrent token mixer (<c>gla</c>, <c>linear_attention</c>) processes the rows of one call.
/// <see cref="Auto"/>: one row steps the recurrence, more rows use the chunkwise parallel form. Both give the same
/// numbers up to float32 rounding; the other two force one form (tests, benchmarks).
/// </summary>
public enum GlaMode
{
    Auto,
    Chunked,
    Recurrent,
}

/// <summary>
/// Weights of a depthwise causal short convolution followed by silu (flash-linear-attention's
/// <c>ShortConvolution</c>, an <c>nn.Conv1d</c> with groups = channels and causal padding width − 1).
/// <see cref="Weight"/> is (channels, width) row-major: the checkpoint's [channels, 1, width] with the middle axis
/// dropped. Tap width − 1 multiplies the current token, tap 0 the token width − 1 steps back:
/// y_t[c] = silu(bias[c] + Σ_j Weight[c, j] · x_{t − (width − 1) + j}[c]).
/// </summary>
public sealed record ShortConvWeights(float[] Weight, int Channels, int Width, float[]? Bias = null);

/// <summary>
/// Weights of a <c>gla</c> node in flash-linear-attention's <c>GatedLinearAttention</c> layout (prefix
/// <c>model.layers.N.attn.</c>; Hugging Face linear weights are [out, in]). With D = hidden, H heads, H_kv key/value
/// heads, d_k and d_v the head sizes and r the gate rank (16 in every fla checkpoint):
/// <list type="bullet">
/// <item><see cref="Query"/> <c>q_proj.weight</c> [H·d_k, D]</item>
/// <item><see cref="Key"/> <c>k_proj.weight</c> [H_kv·d_k, D]</item>
/// <item><see cref="Value"/> <c>v_proj.weight</c> [H_kv·d_v, D]</item>
/// <item><see cref="GateDown"/> <c>gk_proj.0.weight</c> [r, D] (no bias)</item>
/// <item><see cref="GateUp"/> <c>gk_proj.1.weight</c> [H_kv·d_k, r] and <see cref="GateBias"/> <c>gk_proj.1.bias</c> [H_kv·d_k]</item>
/// <item><see cref="Output"/> <c>o_proj.weight</c> [D, H·d_v]</item>
/// <item><see cref="OutputGate"/> <c>g_proj.weight</c> [H·d_v, D]; null when the config has <c>use_output_gate: false</c></item>
/// <item><see cref="NormWeight"/> <c>g_norm_swish_gate.weight</c> (or <c>g_norm.weight</c> when <c>fuse_norm</c> is
/// false or there is no output gate) [d_v]; null when <c>elementwise_affine</c> is false (γ = 1)</item>
/// <item><see cref="QueryConv"/>, <see cref="KeyConv"/>, <see cref="ValueConv"/> <c>{q,k,v}_conv1d.weight</c>
/// [H·d_k | H_kv·d_k | H_kv·d_v, 1, conv_size] (and <c>.bias</c> if present); only with <c>use_short_conv</c></item>
/// </list>
/// </summary>
public sealed record GlaWeights(
    Matrix Query,
    Matrix Key,
    Matrix Value,
    Matrix GateDown,
    Matrix GateUp,
    float[]? GateBias,
    Matrix Output,
    Matrix? OutputGate = null,
    float[]? NormWeight = null,
    ShortConvWeights? QueryConv = null,
    ShortConvWeights? KeyConv = null,
    ShortConvWeights? ValueConv = null);

/// <summary>
/// Sizes and switches of a <c>gla</c> node. Query head h reads key/value head h / <see cref="GroupSize"/> (fla repeats
/// each key/value head over consecutive query heads). <see cref="ConvSize"/> 0 means no short convolutions.
/// </summary>
public sealed record GlaOptions(int Hidden, int Heads, int KvHeads, int HeadKDim, int HeadVDim)
{
    /// <summary>ε of the per-head output RMSNorm (config <c>norm_eps</c>, legacy <c>rms_norm_eps</c>).</summary>
    public float NormEps { get; init; } = 1e-6f;

    /// <summary>τ in log α = logsigmoid(gk) / τ (fla's <c>gate_logit_normalizer</c>, 16; not a config key).</summary>
    public double GateLogitNormalizer { get; init; } = 16.0;

    /// <summary>Lower bound on log α after the division (config <c>clamp_min</c>); null: none.</summary>
    public double? ClampMin { get; init; }

    /// <summary>Width of the q/k/v short convolutions (config <c>conv_size</c> when <c>use_short_conv</c>); 0: none.</summary>
    public int ConvSize { get; init; }

    /// <summary>y = W_o[RMSNorm(o) ⊙ swish(W_g x)] when true, y = W_o RMSNorm(o) when false (config <c>use_output_gate</c>).</summary>
    public bool UseOutputGate { get; init; } = true;

    /// <summary>Tokens per chunk of the chunkwise parallel form (fla uses 64).</summary>
    public int ChunkSize { get; init; } = 64;

    public GlaMode Mode { get; init; } = GlaMode.Auto;

    /// <summary>Query heads that share one key/value head.</summary>
    public int GroupSize => Heads / KvHeads;

    /// <summary>H·d_k, the width of q (fla's <c>key_dim</c>).</summary>
    public int KeyDim => Heads * HeadKDim;

    /// <summary>H·d_v, the width of o and of the output gate (fla's <c>value_dim</c>).</summary>
    public int ValueDim => Heads * HeadVDim;

    /// <summary>H_kv·d_k, the width of k and of the gate (fla's <c>key_dim_per_group</c>).</summary>
    public int KvKeyDim => KvHeads * HeadKDim;

    /// <summary>H_kv·d_v, the width of v (fla's <c>value_dim_per_group</c>).</summary>
    public int KvValueDim => KvHeads * HeadVDim;

    /// <summary>
    /// Reads the mixer's options from a flash-linear-attention <c>GLAConfig</c> config.json, current or legacy:
    /// <c>hidden_size</c>, <c>num_heads</c> (4), <c>num_kv_heads</c> (= num_heads), <c>expand_k</c> (0.5),
    /// <c>expand_v</c> (1), <c>use_short_conv</c> (false), <c>conv_size</c> (4), <c>use_output_gate</c> (true),
    /// <c>clamp_min</c> (null), <c>norm_eps</c> or legacy <c>rms_norm_eps</c> (1e-6), <c>hidden_act</c> (swish; only
    /// swish/silu), <c>feature_map</c> (only null). d_k = int(hidden·expand_k) / num_heads, d_v likewise.
    /// </summary>
    public static GlaOptions FromConfig(ModelConfig config)
    {
        int hidden = config.Positive(config.GetInt("hidden_size"), "hidden_size");
        int heads = config.Positive(config.TryGetInt("num_heads") ?? 4, "num_heads");
        int kvHeads = config.Positive(config.TryGetInt("num_kv_heads") ?? heads, "num_kv_heads");
        double expandK = config.TryGetDouble("expand_k") ?? 0.5;
        double expandV = config.TryGetDouble("expand_v") ?? 1.0;
        // fla: key_dim = int(hidden_size * expand_k), truncated as Python's int() does.
        int keyDim = config.Positive((int)(hidden * expandK), "int(hidden_size * expand_k)");
        int valueDim = config.Positive((int)(hidden * expandV), "int(hidden_size * expand_v)");
        int headK = config.DivideExactly(keyDim, "int(hidden_size * expand_k)", heads, "num_heads");
        int headV = config.DivideExactly(valueDim, "int(hidden_size * expand_v)", heads, "num_heads");
        config.DivideExactly(heads, "num_heads", kvHeads, "num_kv_heads");

        if (config.TryGet("feature_map", out var featureMap))
        {
            string name = featureMap.ValueKind == System.Text.Json.JsonValueKind.String ? featureMap.GetString()! : featureMap.GetRawText();
            throw new ModelLoadException($"{config.Path}: gla: feature_map = '{name}' is not supported (supported: null, no feature map)");
        }
        string act = config.TryGetString("hidden_act") ?? "swish";
        if (act is not ("swish" or "silu"))
            throw new ModelLoadException($"{config.Path}: gla: hidden_act = '{act}' is not supported (supported: swish, silu)");

        bool shortConv = config.TryGetBool("use_short_conv") ?? false;
        int convSize = shortConv ? config.Positive(config.TryGetInt("conv_size") ?? 4, "conv_size") : 0;
        double eps = config.TryGetDouble("norm_eps") ?? config.TryGetDouble("rms_norm_eps") ?? 1e-6;

        return new GlaOptions(hidden, heads, kvHeads, headK, headV)
        {
            NormEps = (float)eps,
            ClampMin = config.TryGetDouble("clamp_min"),
            ConvSize = convSize,
            UseOutputGate = config.TryGetBool("use_output_gate") ?? true,
        };
    }
}

/// <summary>
/// The fixed-size recurrent state of one <c>gla</c> or <c>linear_attention</c> layer.
/// <see cref="S"/> is (kv_heads, d_k, d_v) float32 row-major, S[h, i, j] at (h·d_k + i)·d_v + j: key-major, the
/// paper's S ∈ ℝ^{d_k×d_v} (fla's current kernels keep the transpose, [V, K]). It is kept once per key/value head:
/// the query heads of one group share k, v and α, so their states are identical.
/// The short-convolution tails are the last conv_size − 1 inputs of each convolution, (conv_size − 1, channels)
/// row-major, oldest first; zeros before the first token are the convolution's causal padding.
/// </summary>
public sealed class GlaState
{
    public GlaState(GlaOptions options)
        : this(options.KvHeads, options.HeadKDim, options.HeadVDim, options.ConvSize, options.KeyDim, options.KvKeyDim, options.KvValueDim)
    {
    }

    /// <summary>A state without short convolutions when <paramref name="convSize"/> is 0.</summary>
    public GlaState(int kvHeads, int headKDim, int headVDim, int convSize = 0, int queryChannels = 0, int keyChannels = 0, int valueChannels = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headKDim);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headVDim);
        ArgumentOutOfRangeException.ThrowIfNegative(convSize);
        KvHeads = kvHeads;
        HeadKDim = headKDim;
        HeadVDim = headVDim;
        ConvSize = convSize;
        S = new float[(long)kvHeads * headKDim * headVDim];
        int tail = Math.Max(convSize - 1, 0);
        QueryConvTail = new float[(long)tail * queryChannels];
        KeyConvTail = new float[(long)tail * keyChannels];
        ValueConvTail = new float[(long)tail * valueChannels];
    }

    public int KvHeads { get; }
    public int HeadKDim { get; }
    public int HeadVDim { get; }
    public int ConvSize { get; }

    /// <summary>(kv_heads, d_k, d_v) row-major.</summary>
    public float[] S { get; }

    /// <summary>(conv_size − 1, H·d_k); empty without short convolutions.</summary>
    public float[] QueryConvTail { get; }

    /// <summary>(conv_size − 1, H_kv·d_k); empty without short convolutions.</summary>
    public float[] KeyConvTail { get; }

    /// <summary>(conv_size − 1, H_kv·d_v); empty without short convolutions.</summary>
    public float[] ValueConvTail { get; }

    /// <summary>Tokens consumed since the last <see cref="Reset"/>.</summary>
    public long Tokens { get; internal set; }

    /// <summary>Bytes held: 4 × (kv_heads·d_k·d_v + the convolution tails), independent of the tokens seen.</summary>
    public long ByteSize => 4L * (S.LongLength + QueryConvTail.LongLength + KeyConvTail.LongLength + ValueConvTail.LongLength);

    /// <summary>Back to the state before the first token (all zeros).</summary>
    public void Reset()
    {
        Array.Clear(S);
        Array.Clear(QueryConvTail);
        Array.Clear(KeyConvTail);
        Array.Clear(ValueConvTail);
        Tokens = 0;
    }

    /// <summary>Makes this state a copy of <paramref name="other"/> (forking a session); the shapes must match.</summary>
    public void CopyFrom(GlaState other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (other.KvHeads != KvHeads || other.HeadKDim != HeadKDim || other.HeadVDim != HeadVDim || other.ConvSize != ConvSize
            || other.QueryConvTail.Length != QueryConvTail.Length || other.KeyConvTail.Length != KeyConvTail.Length
            || other.ValueConvTail.Length != ValueConvTail.Length)
            throw new ArgumentException(
                $"gla state: cannot copy a state of ({other.KvHeads}, {other.HeadKDim}, {other.HeadVDim}, conv {other.ConvSize}) " +
                $"into one of ({KvHeads}, {HeadKDim}, {HeadVDim}, conv {ConvSize})", nameof(other));
        if (ReferenceEquals(other, this))
            return;
        other.S.CopyTo(S, 0);
        other.QueryConvTail.CopyTo(QueryConvTail, 0);
        other.KeyConvTail.CopyTo(KeyConvTail, 0);
        other.ValueConvTail.CopyTo(ValueConvTail, 0);
        Tokens = other.Tokens;
    }
}

/// <summary>
/// <c>gla</c>: the gated linear attention token mixer (Yang et al. 2024, "Gated Linear Attention Transformers with
/// Hardware-Efficient Training", §4.1 recurrent form, §4.4 GLA layer). Per head, with d_k^{−½}-scaled queries:
/// S_t = Diag(α_t) S_{t−1} + k_tᵀ v_t, α_t = exp(logsigmoid(W₂W₁x_t + b)/16), o_t = (d_k^{−½} q_t) S_t,
/// y = W_o [RMSNorm_head(o) ⊙ swish(W_g x)]. Prefill uses the chunkwise parallel form (§4.2), decode the recurrence.
/// </summary>
public static class Gla
{
    /// <summary>
    /// x is (rows, hidden): the rows are the tokens right after the <see cref="GlaState.Tokens"/> tokens the state
    /// holds. Advances <paramref name="state"/> over them and writes y (rows, hidden). y must not overlap x.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, GlaWeights weights, GlaOptions options, GlaState state, Span<float> y) =>
        Cpu.GlaKernels.GlaLayer(x, rows, weights, options, state, y);
}
