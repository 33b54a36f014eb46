namespace Horizon.Ops;

/// <summary>
/// Weights of an <c>attention</c> node (Hugging Face layout): query [heads·head_dim, hidden], key and value
/// [kv_heads·head_dim, hidden], output [hidden, heads·head_dim]; biases are optional (Qwen2 has q/k/v biases).
/// </summary>
public sealed record AttentionWeights(
    Matrix Query,
    Matrix Key,
    Matrix Value,
    Matrix Output,
    float[]? QueryBias = null,
    float[]? KeyBias = null,
    float[]? ValueBias = null,
    float[]? OutputBias = null);

/// <summary>Sizes of an <c>attention</c> node and its rotary embedding (null: no RoPE).</summary>
public sealed record AttentionOptions(int Hidden, int Heads, int KvHeads, int HeadDim, RopeTable? Rope)
{
    /// <summary>Query heads that share one key/value head (GQA group size; Heads for MQA).</summary>
    public int GroupSize => Heads / KvHeads;
}

/// <summary>
/// <c>attention</c>: causal multi-head softmax attention with grouped KV heads and RoPE,
/// o = softmax(q kᵀ / √d + causal mask) v per head (Vaswani et al. 2017, eq. 1), computed tile by tile with an
/// online softmax (Dao et al. 2022, FlashAttention, Algorithm 1) so memory does not grow with n².
/// </summary>
public static class Attention
{
    /// <summary>
    /// x is (rows, hidden): the rows are the tokens at positions cache.Length … cache.Length + rows − 1.
    /// Appends their keys and values to <paramref name="cache"/> and writes y (rows, hidden). y must not overlap x.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, AttentionWeights weights, AttentionOptions options, KvCache cache, Span<float> y) =>
        Cpu.CpuKernels.AttentionLayer(x, rows, weights, options, cache, y);
}
