namespace Horizon.Ops;

/// <summary>
/// Sizes of a <c>cca_attention</c> node (Core Context Aware attention, Chen et al. 2025): the projections and
/// RoPE of an <c>attention</c> node (its weights are plain <see cref="AttentionWeights"/>), the group size g and
/// the local window w. The official code's defaults are g = 16 and w = 1024.
/// </summary>
/// <param name="Attention">Hidden size, heads, key/value heads, head_dim and RoPE, as for <c>attention</c>.</param>
/// <param name="GroupSize">g ≥ 1: tokens pooled into one core token.</param>
/// <param name="Window">w ≥ 1: the local window; the query at p sees the raw keys of the last w + ((p + 1 − w) mod g) positions.</param>
public sealed record CcaAttentionOptions(AttentionOptions Attention, int GroupSize, int Window)
{
    /// <summary>Throws <see cref="ArgumentException"/> unless g ≥ 1 and w ≥ 1.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Attention);
        if (GroupSize < 1)
            throw new ArgumentException($"cca_attention: group size {GroupSize} must be at least 1", nameof(GroupSize));
        if (Window < 1)
            throw new ArgumentException($"cca_attention: window {Window} must be at least 1", nameof(Window));
    }

    /// <summary>
    /// Core tokens the query at position p sees: ⌊(p + 1 − w) / g⌋ when p + 1 ≥ w, else 0 (the official code's
    /// <c>generate_mask</c>). Its raw keys are then positions CoresVisible(p)·g … p.
    /// </summary>
    public int CoresVisible(int position) => position + 1 >= Window ? (position + 1 - Window) / GroupSize : 0;
}

/// <summary>
/// The decode state of one <c>cca_attention</c> layer: one pooled core key and value per completed group and
/// query head (2 × heads × d floats per g tokens), and a ring of the last w + g − 1 raw keys and values
/// (kv_heads each; position p in slot p mod (w + g − 1)), which is the most any query or pooling step reads.
/// Keys are stored after RoPE, and cores are pooled from them, as in the official code.
/// </summary>
public sealed class CcaCache
{
    /// <summary>Room for <paramref name="capacity"/> tokens of the layer described by <paramref name="options"/>.</summary>
    /// <exception cref="HorizonException">An array would exceed the largest .NET array.</exception>
    public CcaCache(int capacity, CcaAttentionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        options.Validate();
        AttentionOptions attention = options.Attention;
        Capacity = capacity;
        GroupSize = options.GroupSize;
        Window = options.Window;
        Heads = attention.Heads;
        KvHeads = attention.KvHeads;
        HeadDim = attention.HeadDim;
        MaxCores = capacity / GroupSize;
        RecentSlots = Window + GroupSize - 1;
        long coreFloats = (long)MaxCores * Heads * HeadDim;
        long recentFloats = (long)RecentSlots * KvHeads * HeadDim;
        if (coreFloats > Array.MaxLength || recentFloats > Array.MaxLength)
            throw new HorizonException($"CCA cache too large: {MaxCores} cores × heads {Heads} × head_dim {HeadDim} floats, or {RecentSlots} raw slots × kv_heads {KvHeads} × head_dim {HeadDim}");
        CoreKeys = new float[coreFloats];
        CoreValues = new float[coreFloats];
        RecentKeys = new float[recentFloats];
        RecentValues = new float[recentFloats];
    }

    /// <summary>Tokens the cache can take in all.</summary>
    public int Capacity { get; }

    /// <summary>g.</summary>
    public int GroupSize { get; }

    /// <summary>w.</summary>
    public int Window { get; }

    public int Heads { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }

    /// <summary>Core slots, ⌊capacity / g⌋.</summary>
    public int MaxCores { get; }

    /// <summary>Raw ring slots, w + g − 1, whatever the capacity.</summary>
    public int RecentSlots { get; }

    /// <summary>Tokens seen so far (positions 0 … Length − 1).</summary>
    public int Length { get; internal set; }

    /// <summary>Completed groups, ⌊Length / g⌋: the valid rows of the core arrays.</summary>
    public int CoreCount => Length / GroupSize;

    /// <summary>(cores, heads, d): core key of group j for query head h, Σ_t α_t k(t) over the group.</summary>
    public float[] CoreKeys { get; }

    /// <summary>(cores, heads, d): core value, Σ_t α_t v(t) with the same weights.</summary>
    public float[] CoreValues { get; }

    /// <summary>(w + g − 1, kv_heads, d): raw keys (after RoPE) of the last w + g − 1 positions, position p in slot p mod (w + g − 1).</summary>
    public float[] RecentKeys { get; }

    /// <summary>(w + g − 1, kv_heads, d): raw values, laid out as <see cref="RecentKeys"/>.</summary>
    public float[] RecentValues { get; }

    /// <summary>Floats in use: 2 × heads × d per completed group plus the fixed raw ring.</summary>
    public long FloatsInUse => 2L * CoreCount * Heads * HeadDim + RecentKeys.Length + RecentValues.Length;

    /// <summary>Forgets every token.</summary>
    public void Reset() => Length = 0;
}

/// <summary>
/// <c>cca_attention</c>: Core Context Aware attention (Chen et al. 2025, "Core Context Aware Transformers for Long
/// Context Language Modeling", ICML; code chenyaofo/CCA-Attention). Each completed group of g tokens is pooled
/// into one core key/value per query head, weighted by the softmax of the group's last query against its keys
/// (globality-aware pooling); the query at p attends, in one softmax, to the cores of the groups before its
/// local window and to the raw keys of that window (locality-preserving module). Decode keeps one core per g
/// tokens plus w + g − 1 raw tokens (<see cref="CcaCache"/>). See docs/ops/cca_attention.md.
/// </summary>
public static class CcaAttention
{
    /// <summary>
    /// x is (rows, hidden): the tokens at positions cache.Length … cache.Length + rows − 1. Writes y (rows, hidden)
    /// and moves the cache past the rows. y must not overlap x.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, AttentionWeights weights, CcaAttentionOptions options, CcaCache cache, Span<float> y) =>
        Cpu.CpuKernels.CcaAttentionLayer(x, rows, weights, options, cache, y);
}
