using System.Buffers;
using System.Numerics.Tensors;
using Horizon.Ops;

namespace Horizon.Cpu;

public static unsafe partial class CpuKernels
{
    /// <summary>
    /// One Core Context Aware attention layer on new tokens (Chen et al. 2025, CCA-Attention; official code
    /// chenyaofo/CCA-Attention, <c>cca_attn.py</c> and <c>cca_pooling.py</c>). q, k, v and RoPE at absolute positions
    /// as in <see cref="AttentionLayer"/>. Group j holds positions j·g … j·g + g − 1; its core token for query head h
    /// (value head g_h) is
    /// α = softmax_t(q_h(j·g + g − 1) · k(t) / √d) over the group, k̃_{j,h} = Σ_t α_t k(t), ṽ_{j,h} = Σ_t α_t v(t).
    /// The query at p, with n(p) = ⌊(p + 1 − w)/g⌋ (0 while p + 1 &lt; w), sees in one softmax the cores
    /// j &lt; n(p) and the raw keys n(p)·g … p:
    /// o_h(p) = softmax([q·k̃_{0..n(p)−1}; q·k(n(p)·g … p)] / √d) [ṽ; v]; y = concat_h o_h · W_oᵀ + b_o.
    /// </summary>
    /// <param name="x">(rows, hidden): the tokens at positions cache.Length … cache.Length + rows − 1.</param>
    /// <param name="rows">Number of new tokens (1 for decode).</param>
    /// <param name="weights">Projections, the layout of <see cref="AttentionWeights"/>.</param>
    /// <param name="options">Sizes, RoPE, group size and window; must match the cache's.</param>
    /// <param name="cache">Cores of completed groups and the last w + g − 1 raw keys/values; moves past the rows.</param>
    /// <param name="y">(rows, hidden); must not overlap <paramref name="x"/>.</param>
    /// <remarks>
    /// A group is pooled as soon as its last token arrives (its query is at hand then), so no queries are kept.
    /// The visible keys are gathered per query head into [cores 0 … n_max − 1 | raw positions t0 … end − 1] (cores
    /// differ per query head, raw keys are repeated over a group's heads) and <see cref="MaskedAttention"/> gets two
    /// ranges per row; tiles of raw keys outside a row's window are skipped.
    /// </remarks>
    public static void CcaAttentionLayer(
        ReadOnlySpan<float> x, int rows, AttentionWeights weights, CcaAttentionOptions options, CcaCache cache, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        options.Validate();
        AttentionOptions attention = options.Attention;
        ValidateVariantLayer(x, rows, weights, attention, y, "CcaAttention");
        if (cache.GroupSize != options.GroupSize || cache.Window != options.Window || cache.Heads != attention.Heads
            || cache.KvHeads != attention.KvHeads || cache.HeadDim != attention.HeadDim)
            throw new ArgumentException($"CcaAttention: cache holds (group {cache.GroupSize}, window {cache.Window}, heads {cache.Heads}, kv_heads {cache.KvHeads}, head_dim {cache.HeadDim}), layer needs (group {options.GroupSize}, window {options.Window}, heads {attention.Heads}, kv_heads {attention.KvHeads}, head_dim {attention.HeadDim})", nameof(cache));
        if (rows == 0)
            return;
        int start = cache.Length;
        if ((long)start + rows > cache.Capacity)
            throw new HorizonException($"CCA cache full: capacity {cache.Capacity}, {start} tokens cached, cannot append {rows} more");

        int total = start + rows;
        int groupSize = options.GroupSize;
        int heads = attention.Heads, kvHeads = attention.KvHeads, headDim = attention.HeadDim;
        int group = heads / kvHeads;
        int queryWidth = heads * headDim, kvWidth = kvHeads * headDim;
        int slots = cache.RecentSlots;
        // Raw positions any row or pooling step reads: t0 … total − 1 (the first row's window starts at ≥ t0).
        int t0 = Math.Max(0, start - slots);
        int rawCount = total - t0;
        int coresNeeded = options.CoresVisible(total - 1); // n(p) grows with p
        int keyCount = coresNeeded + rawCount;

        float[] queryBuffer = ArrayPool<float>.Shared.Rent(rows * queryWidth);
        float[] attendedBuffer = ArrayPool<float>.Shared.Rent(rows * queryWidth);
        float[] rawKeyBuffer = ArrayPool<float>.Shared.Rent(rawCount * kvWidth);
        float[] rawValueBuffer = ArrayPool<float>.Shared.Rent(rawCount * kvWidth);
        float[] keyBuffer = ArrayPool<float>.Shared.Rent(keyCount * queryWidth);
        float[] valueBuffer = ArrayPool<float>.Shared.Rent(keyCount * queryWidth);
        try
        {
            Span<float> queries = queryBuffer.AsSpan(0, rows * queryWidth);      // (rows, heads, d)
            Span<float> attended = attendedBuffer.AsSpan(0, rows * queryWidth);  // (rows, heads, d)
            Span<float> rawKeys = rawKeyBuffer.AsSpan(0, rawCount * kvWidth);    // (positions t0 … total − 1, kv_heads, d)
            Span<float> rawValues = rawValueBuffer.AsSpan(0, rawCount * kvWidth);
            Span<float> newKeys = rawKeys.Slice((start - t0) * kvWidth, rows * kvWidth);
            Span<float> newValues = rawValues.Slice((start - t0) * kvWidth, rows * kvWidth);
            ProjectQueryKeyValue(x, rows, weights, attention, start, queries, newKeys, newValues);
            for (int position = t0; position < start; position++)
            {
                int slot = position % slots;
                cache.RecentKeys.AsSpan(slot * kvWidth, kvWidth).CopyTo(rawKeys.Slice((position - t0) * kvWidth, kvWidth));
                cache.RecentValues.AsSpan(slot * kvWidth, kvWidth).CopyTo(rawValues.Slice((position - t0) * kvWidth, kvWidth));
            }

            // Globality-aware pooling of every group that completes in these rows (rows ≥ CoreCount are not valid
            // until Length moves, so writing them now leaves the cache consistent on failure).
            float scale = 1f / MathF.Sqrt(headDim);
            float[] poolScratch = ArrayPool<float>.Shared.Rent(groupSize);
            try
            {
                for (int core = start / groupSize; core < total / groupSize; core++)
                {
                    int first = core * groupSize - t0;            // raw row of the group's first token
                    int last = (core + 1) * groupSize - 1 - start; // new row of the group's last token
                    for (int head = 0; head < heads; head++)
                    {
                        int kvHead = head / group;
                        ReadOnlySpan<float> query = queries.Slice((last * heads + head) * headDim, headDim);
                        Span<float> alpha = poolScratch.AsSpan(0, groupSize);
                        for (int t = 0; t < groupSize; t++)
                            alpha[t] = TensorPrimitives.Dot(query, rawKeys.Slice(((first + t) * kvHeads + kvHead) * headDim, headDim)) * scale;
                        float max = TensorPrimitives.Max(alpha);
                        TensorPrimitives.Subtract(alpha, max, alpha);
                        TensorPrimitives.Exp(alpha, alpha);
                        TensorPrimitives.Multiply(alpha, 1f / TensorPrimitives.Sum(alpha), alpha);
                        Span<float> coreKey = cache.CoreKeys.AsSpan((core * heads + head) * headDim, headDim);
                        Span<float> coreValue = cache.CoreValues.AsSpan((core * heads + head) * headDim, headDim);
                        coreKey.Clear();
                        coreValue.Clear();
                        TileKernels.AccumulateWeightedRows(alpha, 1, groupSize, rawKeys[(((first * kvHeads) + kvHead) * headDim)..], groupSize, kvWidth, headDim, coreKey, headDim);
                        TileKernels.AccumulateWeightedRows(alpha, 1, groupSize, rawValues[(((first * kvHeads) + kvHead) * headDim)..], groupSize, kvWidth, headDim, coreValue, headDim);
                    }
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(poolScratch);
            }

            // Keys per query head: [cores 0 … coresNeeded − 1 | raw t0 … total − 1 repeated over each group's heads].
            Span<float> keys = keyBuffer.AsSpan(0, keyCount * queryWidth);
            Span<float> values = valueBuffer.AsSpan(0, keyCount * queryWidth);
            cache.CoreKeys.AsSpan(0, coresNeeded * queryWidth).CopyTo(keys);
            cache.CoreValues.AsSpan(0, coresNeeded * queryWidth).CopyTo(values);
            for (int t = 0; t < rawCount; t++)
            {
                for (int head = 0; head < heads; head++)
                {
                    int target = ((coresNeeded + t) * heads + head) * headDim;
                    int source = (t * kvHeads + head / group) * headDim;
                    rawKeys.Slice(source, headDim).CopyTo(keys.Slice(target, headDim));
                    rawValues.Slice(source, headDim).CopyTo(values.Slice(target, headDim));
                }
            }

            AttentionKeyRanges RowRanges(int row)
            {
                int position = start + row;
                int cores = options.CoresVisible(position);
                return new AttentionKeyRanges(0, cores, coresNeeded + cores * groupSize - t0, coresNeeded + position - t0 + 1);
            }
            MaskedAttention(queries, rows, heads, keys, values, keyCount, heads, headDim, RowRanges, attended);
            Linear(attended, rows, weights.Output, weights.OutputBias, y);

            for (int row = Math.Max(0, rows - slots); row < rows; row++)
            {
                int slot = (start + row) % slots;
                newKeys.Slice(row * kvWidth, kvWidth).CopyTo(cache.RecentKeys.AsSpan(slot * kvWidth, kvWidth));
                newValues.Slice(row * kvWidth, kvWidth).CopyTo(cache.RecentValues.AsSpan(slot * kvWidth, kvWidth));
            }
            cache.Length = total;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queryBuffer);
            ArrayPool<float>.Shared.Return(attendedBuffer);
            ArrayPool<float>.Shared.Return(rawKeyBuffer);
            ArrayPool<float>.Shared.Return(rawValueBuffer);
            ArrayPool<float>.Shared.Return(keyBuffer);
            ArrayPool<float>.Shared.Return(valueBuffer);
        }
    }
}
