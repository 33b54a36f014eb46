namespace Horizon.Ops;

/// <summary>
/// Weights of a <c>linear_attention</c> node (Hugging Face [out, in] layout): <see cref="Query"/> [H·d_k, D],
/// <see cref="Key"/> [H_kv·d_k, D], <see cref="Value"/> [H_kv·d_v, D], <see cref="Output"/> [D, H·d_v]; optional
/// <see cref="OutputGate"/> [H·d_v, D] (y = W_o[norm(o) ⊙ swish(W_g x)]) and per-head RMSNorm γ
/// <see cref="NormWeight"/> [d_v] (null: γ = 1; used only when <see cref="LinearAttentionOptions.OutputNorm"/>).
/// </summary>
public sealed record LinearAttentionWeights(
    Matrix Query,
    Matrix Key,
    Matrix Value,
    Matrix Output,
    Matrix? OutputGate = null,
    float[]? NormWeight = null);

/// <summary>
/// Sizes and switches of a <c>linear_attention</c> node. Query head h reads key/value head h / (Heads / KvHeads).
/// </summary>
public sealed record LinearAttentionOptions(int Hidden, int Heads, int KvHeads, int HeadKDim, int HeadVDim)
{
    /// <summary>Per-head RMSNorm of o before the gate and W_o (fla's <c>output_norm: rmsnorm</c>); false: identity.</summary>
    public bool OutputNorm { get; init; } = true;

    public float NormEps { get; init; } = 1e-5f;

    /// <summary>Query scale; null: d_k^{−½}.</summary>
    public double? Scale { get; init; }

    public int ChunkSize { get; init; } = 64;

    public GlaMode Mode { get; init; } = GlaMode.Auto;

    public int GroupSize => Heads / KvHeads;

    /// <summary>The recurrent state this node needs: S (kv_heads, d_k, d_v), no convolution tails.</summary>
    public GlaState CreateState() => new(KvHeads, HeadKDim, HeadVDim);
}

/// <summary>
/// <c>linear_attention</c>: plain causal linear attention without a feature map or normaliser, the ungated case
/// α ≡ 1 of <see cref="Gla"/> (Katharopoulos et al. 2020, "Transformers are RNNs", §3.2 with φ = identity and no
/// denominator, as in Yang et al. 2024 §2.1): S_t = S_{t−1} + k_tᵀ v_t, o_t = (s q_t) S_t, then an optional
/// per-head RMSNorm, an optional swish output gate, and W_o. It shares the GLA kernels (chunked prefill, stepped decode).
/// </summary>
public static class LinearAttention
{
    /// <summary>
    /// x is (rows, hidden): the rows are the tokens right after those the state holds. Advances
    /// <paramref name="state"/> and writes y (rows, hidden). y must not overlap x.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, LinearAttentionWeights weights, LinearAttentionOptions options, GlaState state, Span<float> y) =>
        Cpu.GlaKernels.LinearAttentionLayer(x, rows, weights, options, state, y);
}
