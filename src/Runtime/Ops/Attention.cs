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
/// The key/value cache of one <c>attention</c> layer: keys and values (capacity, kv_heads, head_dim) row-major,
/// keys stored after RoPE. <see cref="Length"/> tokens are valid.
/// </summary>
public sealed class KvCache
{
    /// <summary>
    /// Allocates room for <paramref name="capacity"/> tokens: 2 × kv_heads × head_dim floats per token
    /// (keys and values), i.e. 8 · kv_heads · head_dim bytes per token and layer.
    /// </summary>
    /// <exception cref="HorizonException">One keys or values array would exceed the largest .NET array.</exception>
    public KvCache(int capacity, int kvHeads, int headDim)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        long elements = (long)capacity * kvHeads * headDim;
        // Checked here so a too-long context fails with a message rather than an OverflowException from `new`.
        if (elements > Array.MaxLength)
            throw new HorizonException($"KV cache too large: capacity {capacity} × kv_heads {kvHeads} × head_dim {headDim} = {elements} floats, above the {Array.MaxLength} an array can hold");
        Capacity = capacity;
        KvHeads = kvHeads;
        HeadDim = headDim;
        Keys = new float[elements];
        Values = new float[elements];
    }

    /// <summary>Tokens the cache can hold.</summary>
    public int Capacity { get; }

    /// <summary>Key/value heads per token.</summary>
    public int KvHeads { get; }

    /// <summary>Floats per head.</summary>
    public int HeadDim { get; }

    /// <summary>Tokens cached so far (positions 0 … Length − 1); the attention kernel advances it.</summary>
    public int Length { get; internal set; }

    /// <summary>Keys after RoPE, (capacity, kv_heads, head_dim); only the first <see cref="Length"/> tokens are valid.</summary>
    public float[] Keys { get; }

    /// <summary>Values, (capacity, kv_heads, head_dim); only the first <see cref="Length"/> tokens are valid.</summary>
    public float[] Values { get; }

    /// <summary>Forgets every cached token (the arrays are reused, not cleared).</summary>
    public void Reset() => Length = 0;

    /// <summary>Sets the valid length (used when a session is truncated or restored).</summary>
    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        Length = length;
    }
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
