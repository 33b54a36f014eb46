namespace Horizon.Ops;

/// <summary>
/// Sizes of a <c>sliding_window_attention</c> node: the projections and RoPE of an <c>attention</c> node
/// (<see cref="AttentionOptions"/>; its weights are plain <see cref="AttentionWeights"/>), the window w, and the
/// absolute positions of the global tokens.
/// </summary>
/// <param name="Attention">Hidden size, heads, key/value heads, head_dim and RoPE, as for <c>attention</c>.</param>
/// <param name="Window">w ≥ 1: the query at position p sees the keys p − w &lt; j ≤ p (itself included).</param>
/// <param name="GlobalPositions">
/// Sorted, distinct, non-negative absolute positions (e.g. [0] for a BOS/attention sink) whose keys every later
/// query sees, in or out of its window (Longformer's global attention, Beltagy et al. 2020, § 3.1, restricted to
/// keys). Null or empty: none.
/// </param>
public sealed record SlidingWindowAttentionOptions(AttentionOptions Attention, int Window, IReadOnlyList<int>? GlobalPositions = null)
{
    /// <summary>The global positions, never null.</summary>
    public IReadOnlyList<int> Globals => GlobalPositions ?? [];

    /// <summary>Throws <see cref="ArgumentException"/> unless w ≥ 1 and the global positions are sorted, distinct and ≥ 0.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Attention);
        if (Window < 1)
            throw new ArgumentException($"sliding_window_attention: window {Window} must be at least 1", nameof(Window));
        IReadOnlyList<int> globals = Globals;
        for (int i = 0; i < globals.Count; i++)
        {
            if (globals[i] < 0 || (i > 0 && globals[i] <= globals[i - 1]))
                throw new ArgumentException($"sliding_window_attention: global positions must be sorted, distinct and non-negative; entry {i} is {globals[i]}", nameof(GlobalPositions));
        }
    }
}

/// <summary>
/// The decode state of one <c>sliding_window_attention</c> layer, whose size does not depend on the sequence
/// length: a ring of the last <see cref="Window"/> keys and values (position p in slot p mod w) and a store with
/// one slot per global position (filled when that position has been seen). Keys are stored after RoPE at their
/// absolute positions, as Mistral and Qwen2 sliding-window caches do.
/// </summary>
public sealed class SlidingWindowCache
{
    /// <summary>Allocates the ring and the global store: (w + globals) × 2 × kv_heads × head_dim floats.</summary>
    public SlidingWindowCache(int window, int kvHeads, int headDim, IReadOnlyList<int>? globalPositions = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(window);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        int[] globals = globalPositions is null ? [] : [.. globalPositions];
        for (int i = 0; i < globals.Length; i++)
        {
            if (globals[i] < 0 || (i > 0 && globals[i] <= globals[i - 1]))
                throw new ArgumentException($"SlidingWindowCache: global positions must be sorted, distinct and non-negative; entry {i} is {globals[i]}", nameof(globalPositions));
        }
        long slots = (long)window + globals.Length;
        if (slots * kvHeads * headDim > Array.MaxLength)
            throw new HorizonException($"sliding-window cache too large: (window {window} + {globals.Length} globals) × kv_heads {kvHeads} × head_dim {headDim} floats");
        Window = window;
        KvHeads = kvHeads;
        HeadDim = headDim;
        SortedGlobals = globals;
        WindowKeys = new float[window * kvHeads * headDim];
        WindowValues = new float[window * kvHeads * headDim];
        GlobalKeys = new float[globals.Length * kvHeads * headDim];
        GlobalValues = new float[globals.Length * kvHeads * headDim];
    }

    /// <summary>A cache for the layer described by <paramref name="options"/>.</summary>
    public SlidingWindowCache(SlidingWindowAttentionOptions options)
        : this(options.Window, options.Attention.KvHeads, options.Attention.HeadDim, options.Globals)
    {
    }

    /// <summary>w: ring slots.</summary>
    public int Window { get; }

    /// <summary>Key/value heads per token.</summary>
    public int KvHeads { get; }

    /// <summary>Floats per head.</summary>
    public int HeadDim { get; }

    /// <summary>The sorted global positions, one store slot each.</summary>
    public IReadOnlyList<int> GlobalPositions => SortedGlobals;

    /// <summary>The same positions as an array, for the kernel's binary searches.</summary>
    internal int[] SortedGlobals { get; }

    /// <summary>Token slots held, w + number of global positions, whatever the sequence length.</summary>
    public int Capacity => Window + GlobalPositions.Count;

    /// <summary>Tokens seen so far (positions 0 … Length − 1); the next token is at position Length.</summary>
    public int Length { get; internal set; }

    /// <summary>(w, kv_heads, head_dim): the key of position p (after RoPE) in slot p mod w, for the last w positions.</summary>
    public float[] WindowKeys { get; }

    /// <summary>(w, kv_heads, head_dim): values, laid out as <see cref="WindowKeys"/>.</summary>
    public float[] WindowValues { get; }

    /// <summary>(globals, kv_heads, head_dim): slot i holds the key of GlobalPositions[i] once Length exceeds it.</summary>
    public float[] GlobalKeys { get; }

    /// <summary>(globals, kv_heads, head_dim): values, laid out as <see cref="GlobalKeys"/>.</summary>
    public float[] GlobalValues { get; }

    /// <summary>Floats held in all (keys and values): (w + globals) × 2 × kv_heads × head_dim.</summary>
    public long Floats => (long)WindowKeys.Length + WindowValues.Length + GlobalKeys.Length + GlobalValues.Length;

    /// <summary>Forgets every token (the arrays are reused, not cleared).</summary>
    public void Reset() => Length = 0;
}

/// <summary>
/// <c>sliding_window_attention</c>: causal softmax attention (Vaswani et al. 2017, eq. 1) in which the query at
/// position p sees only the keys of the last w positions, p − w &lt; j ≤ p (Beltagy et al. 2020, Longformer § 3.1;
/// Jiang et al. 2023, Mistral 7B § 2), plus the keys of a fixed set of global positions ≤ p (Longformer's global
/// attention, keys side). Global positions are ordinary causal queries themselves. Prefill costs
/// O(n·(w + globals)); decode keeps only w + globals keys and values (<see cref="SlidingWindowCache"/>).
/// See docs/ops/sliding_window_attention.md.
/// </summary>
public static class SlidingWindowAttention
{
    /// <summary>
    /// x is (rows, hidden): the tokens at positions cache.Length … cache.Length + rows − 1. Writes y (rows, hidden)
    /// and moves the cache past the rows. y must not overlap x.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, AttentionWeights weights, SlidingWindowAttentionOptions options, SlidingWindowCache cache, Span<float> y) =>
        Cpu.CpuKernels.SlidingWindowAttentionLayer(x, rows, weights, options, cache, y);
}
