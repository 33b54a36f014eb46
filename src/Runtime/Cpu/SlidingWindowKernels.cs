using System.Buffers;
using Horizon.Ops;

namespace Horizon.Cpu;

public static unsafe partial class CpuKernels
{
    /// <summary>
    /// One sliding-window attention layer with global tokens on new tokens: q, k, v projected as in
    /// <see cref="AttentionLayer"/> with RoPE at the absolute positions start + r (start = cache.Length); then for the
    /// query at position p and head h (key/value head g = h / group)
    /// o_h(p) = Σ_{j ∈ S(p)} softmax_j(q_h(p) · k_g(j) / √d) v_g(j),
    /// S(p) = {j : p − w &lt; j ≤ p} ∪ {j ∈ globals : j ≤ p} (Beltagy et al. 2020, Longformer § 3.1; Jiang et al.
    /// 2023, Mistral 7B § 2); y = concat_h o_h · W_oᵀ + b_o.
    /// </summary>
    /// <param name="x">(rows, hidden): the tokens at positions cache.Length … cache.Length + rows − 1.</param>
    /// <param name="rows">Number of new tokens (1 for decode).</param>
    /// <param name="weights">Projections, the layout of <see cref="AttentionWeights"/>.</param>
    /// <param name="options">Sizes, RoPE, window and global positions; must match the cache's.</param>
    /// <param name="cache">The last w keys/values and the global ones; moves past the rows.</param>
    /// <param name="y">(rows, hidden); must not overlap <paramref name="x"/>.</param>
    /// <remarks>
    /// The keys the rows can see — the globals, the w − 1 positions before the rows (from the ring) and the rows'
    /// own — are gathered into one scratch buffer, [globals | positions t0 … end − 1], and
    /// <see cref="MaskedAttention"/> is given two ranges per row: the globals at least w before it (nearer ones are
    /// in its window already, so no key counts twice) and its window. Key tiles outside both are skipped, so the
    /// cost is O(rows · (w + globals)), not O(rows · position).
    /// </remarks>
    public static void SlidingWindowAttentionLayer(
        ReadOnlySpan<float> x, int rows, AttentionWeights weights, SlidingWindowAttentionOptions options, SlidingWindowCache cache, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        options.Validate();
        ValidateVariantLayer(x, rows, weights, options.Attention, y, "SlidingWindowAttention");
        AttentionOptions attention = options.Attention;
        if (cache.Window != options.Window || cache.KvHeads != attention.KvHeads || cache.HeadDim != attention.HeadDim || !SameGlobals(options.Globals, cache.SortedGlobals))
            throw new ArgumentException($"SlidingWindowAttention: cache holds (window {cache.Window}, kv_heads {cache.KvHeads}, head_dim {cache.HeadDim}, {cache.GlobalPositions.Count} globals), layer needs (window {options.Window}, kv_heads {attention.KvHeads}, head_dim {attention.HeadDim}, {options.Globals.Count} globals)", nameof(cache));
        if (rows == 0)
            return;

        int start = cache.Length;
        if ((long)start + rows > int.MaxValue)
            throw new HorizonException($"sliding_window_attention: position {(long)start + rows} is past the largest supported position");
        int total = start + rows;
        int window = options.Window;
        int heads = attention.Heads, kvHeads = attention.KvHeads, headDim = attention.HeadDim;
        int queryWidth = heads * headDim, kvWidth = kvHeads * headDim;
        int[] globals = cache.SortedGlobals;

        // Keys the rows may see: the stored and new globals (every global position < total), then the time-ordered
        // positions t0 … total − 1, where t0 is the window start of the first row.
        int globalCount = 0;
        while (globalCount < globals.Length && globals[globalCount] < total)
            globalCount++;
        int t0 = Math.Max(0, start - (window - 1));
        int keyCount = globalCount + (total - t0);

        float[] queryBuffer = ArrayPool<float>.Shared.Rent(rows * queryWidth);
        float[] attendedBuffer = ArrayPool<float>.Shared.Rent(rows * queryWidth);
        float[] keyBuffer = ArrayPool<float>.Shared.Rent(keyCount * kvWidth);
        float[] valueBuffer = ArrayPool<float>.Shared.Rent(keyCount * kvWidth);
        try
        {
            Span<float> queries = queryBuffer.AsSpan(0, rows * queryWidth);     // (rows, heads, d)
            Span<float> attended = attendedBuffer.AsSpan(0, rows * queryWidth); // (rows, heads, d)
            Span<float> keys = keyBuffer.AsSpan(0, keyCount * kvWidth);         // (keyCount, kv_heads, d)
            Span<float> values = valueBuffer.AsSpan(0, keyCount * kvWidth);     // (keyCount, kv_heads, d)
            int timeBase = globalCount;              // key row of position t0
            int newBase = timeBase + (start - t0);   // key row of position start
            Span<float> newKeys = keys.Slice(newBase * kvWidth, rows * kvWidth);
            Span<float> newValues = values.Slice(newBase * kvWidth, rows * kvWidth);
            ProjectQueryKeyValue(x, rows, weights, attention, start, queries, newKeys, newValues);

            // Positions t0 … start − 1 from the ring (all within the last w − 1, so all still there).
            for (int position = t0; position < start; position++)
            {
                int slot = position % window;
                int row = timeBase + position - t0;
                cache.WindowKeys.AsSpan(slot * kvWidth, kvWidth).CopyTo(keys.Slice(row * kvWidth, kvWidth));
                cache.WindowValues.AsSpan(slot * kvWidth, kvWidth).CopyTo(values.Slice(row * kvWidth, kvWidth));
            }
            // Globals: from the store when seen in an earlier call, from the new rows otherwise.
            for (int i = 0; i < globalCount; i++)
            {
                int position = globals[i];
                ReadOnlySpan<float> key = position < start ? cache.GlobalKeys.AsSpan(i * kvWidth, kvWidth) : newKeys.Slice((position - start) * kvWidth, kvWidth);
                ReadOnlySpan<float> value = position < start ? cache.GlobalValues.AsSpan(i * kvWidth, kvWidth) : newValues.Slice((position - start) * kvWidth, kvWidth);
                key.CopyTo(keys.Slice(i * kvWidth, kvWidth));
                value.CopyTo(values.Slice(i * kvWidth, kvWidth));
            }

            AttentionKeyRanges RowRanges(int row)
            {
                int position = start + row;
                int windowStart = Math.Max(0, position - window + 1);
                // Globals at positions ≤ position − w are outside the window: the first `outside` of the sorted list
                // (all of them below `total`, so all among the first globalCount key rows).
                int outside = UpperBound(globals, position - window);
                return new AttentionKeyRanges(0, outside, timeBase + windowStart - t0, timeBase + position - t0 + 1);
            }
            MaskedAttention(queries, rows, heads, keys, values, keyCount, kvHeads, headDim, RowRanges, attended);
            Linear(attended, rows, weights.Output, weights.OutputBias, y);

            // Only now is the cache updated: the ring takes the last w rows, the store the new globals.
            for (int row = Math.Max(0, rows - window); row < rows; row++)
            {
                int slot = (start + row) % window;
                newKeys.Slice(row * kvWidth, kvWidth).CopyTo(cache.WindowKeys.AsSpan(slot * kvWidth, kvWidth));
                newValues.Slice(row * kvWidth, kvWidth).CopyTo(cache.WindowValues.AsSpan(slot * kvWidth, kvWidth));
            }
            for (int i = 0; i < globalCount; i++)
            {
                if (globals[i] < start)
                    continue;
                keys.Slice(i * kvWidth, kvWidth).CopyTo(cache.GlobalKeys.AsSpan(i * kvWidth, kvWidth));
                values.Slice(i * kvWidth, kvWidth).CopyTo(cache.GlobalValues.AsSpan(i * kvWidth, kvWidth));
            }
            cache.Length = total;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queryBuffer);
            ArrayPool<float>.Shared.Return(attendedBuffer);
            ArrayPool<float>.Shared.Return(keyBuffer);
            ArrayPool<float>.Shared.Return(valueBuffer);
        }
    }

    private static bool SameGlobals(IReadOnlyList<int> a, int[] b)
    {
        if (a.Count != b.Length)
            return false;
        for (int i = 0; i < b.Length; i++)
            if (a[i] != b[i])
                return false;
        return true;
    }

    /// <summary>The number of entries of the sorted <paramref name="sorted"/> that are ≤ <paramref name="value"/>.</summary>
    private static int UpperBound(int[] sorted, int value)
    {
        int low = 0, high = sorted.Length;
        while (low < high)
        {
            int middle = (low + high) >>> 1;
            if (sorted[middle] <= value)
                low = middle + 1;
            else
                high = middle;
        }
        return low;
    }

    /// <summary>
    /// The input projections shared by the attention variants (Vaswani et al. 2017, § 3.2.2): q = x·W_qᵀ + b_q
    /// (rows, heads, d), k = x·W_kᵀ + b_k and v = x·W_vᵀ + b_v (rows, kv_heads, d), then RoPE on q and k at positions
    /// startPosition + r when <see cref="AttentionOptions.Rope"/> is set.
    /// </summary>
    private static void ProjectQueryKeyValue(
        ReadOnlySpan<float> x, int rows, AttentionWeights weights, AttentionOptions options, int startPosition,
        Span<float> queries, Span<float> keys, Span<float> values)
    {
        Linear(x, rows, weights.Query, weights.QueryBias, queries);
        Linear(x, rows, weights.Key, weights.KeyBias, keys);
        Linear(x, rows, weights.Value, weights.ValueBias, values);
        if (options.Rope is { } rope)
        {
            Rope(queries, rows, options.Heads, options.HeadDim, startPosition, rope);
            Rope(keys, rows, options.KvHeads, options.HeadDim, startPosition, rope);
        }
    }

    /// <summary>The shape checks of <see cref="AttentionLayer"/> for a layer variant named <paramref name="op"/> (no cache).</summary>
    private static void ValidateVariantLayer(ReadOnlySpan<float> x, int rows, AttentionWeights weights, AttentionOptions options, Span<float> y, string op)
    {
        ArgumentNullException.ThrowIfNull(options);
        int hidden = options.Hidden, heads = options.Heads, kvHeads = options.KvHeads, headDim = options.HeadDim;
        if (hidden <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0)
            throw new ArgumentException($"{op}: sizes must be positive (hidden {hidden}, heads {heads}, kv_heads {kvHeads}, head_dim {headDim})", nameof(options));
        if (heads % kvHeads != 0)
            throw new ArgumentException($"{op}: heads {heads} is not a multiple of kv_heads {kvHeads}", nameof(options));
        Check(weights.Query, heads * headDim, hidden, "query");
        Check(weights.Key, kvHeads * headDim, hidden, "key");
        Check(weights.Value, kvHeads * headDim, hidden, "value");
        Check(weights.Output, hidden, heads * headDim, "output");
        if (options.Rope is { } rope && rope.HeadDim != headDim)
            throw new ArgumentException($"{op}: RoPE table head_dim {rope.HeadDim} differs from head_dim {headDim}", nameof(options));
        if (x.Length != (long)rows * hidden)
            throw new ArgumentException($"{op}: x has {x.Length} floats, expected rows {rows} × hidden {hidden} = {(long)rows * hidden}", nameof(x));
        if (y.Length != x.Length)
            throw new ArgumentException($"{op}: y has {y.Length} floats, expected rows {rows} × hidden {hidden} = {(long)rows * hidden}", nameof(y));
        if (x.Overlaps(y))
            throw new ArgumentException($"{op}: y must not overlap x", nameof(y));

        void Check(Matrix matrix, int expectedRows, int expectedCols, string role)
        {
            ArgumentNullException.ThrowIfNull(matrix, role);
            if (matrix.Rows != expectedRows || matrix.Cols != expectedCols)
                throw new ArgumentException($"{op}: {role} weight '{matrix.Name}' is [{matrix.Rows}, {matrix.Cols}], expected [{expectedRows}, {expectedCols}]", nameof(weights));
        }
    }
}
