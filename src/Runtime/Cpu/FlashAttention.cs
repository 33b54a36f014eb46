using System.Numerics.Tensors;

namespace Horizon.Cpu;

public static unsafe partial class CpuKernels
{
    /// <summary>
    /// Query vectors one attention work item holds at most (its rows × the query heads it serves). With
    /// <see cref="KeyTileSize"/> this bounds the score tile to 64 × 64 floats (16 KiB, L1-resident).
    /// </summary>
    internal const int QueryTileSize = 64;

    /// <summary>Keys processed per step of the online softmax.</summary>
    internal const int KeyTileSize = 64;

    /// <summary>
    /// Causal multi-head softmax attention o = softmax(q kᵀ / √d + causal mask) v per head (Vaswani et al. 2017,
    /// eq. 1), with grouped key/value heads (Ainslie et al. 2023; one key/value head is multi-query attention,
    /// Shazeer 2019). Computed tile by tile with an online softmax (Dao et al. 2022, FlashAttention, Algorithm 1;
    /// the final division by the running sum is deferred as in FlashAttention-2, Dao 2023, Algorithm 1), so the
    /// memory used is a fixed O(tile²) whatever the sequence length.
    /// </summary>
    /// <param name="q">(queries, heads, headDim): query vectors, RoPE already applied.</param>
    /// <param name="queries">Number of query tokens.</param>
    /// <param name="heads">Query heads per token; a multiple of <paramref name="kvHeads"/>.</param>
    /// <param name="keys">(keyCount, kvHeads, headDim): keys of positions 0 … keyCount − 1.</param>
    /// <param name="values">(keyCount, kvHeads, headDim).</param>
    /// <param name="keyCount">Number of key/value tokens; at least queryStart + queries.</param>
    /// <param name="kvHeads">Key/value heads; query head h reads key/value head h / (heads / kvHeads).</param>
    /// <param name="headDim">d; scores are scaled by 1/√d.</param>
    /// <param name="queryStart">Absolute position of query 0: query r attends to keys 0 … queryStart + r.</param>
    /// <param name="output">(queries, heads, headDim); must not overlap the inputs.</param>
    /// <remarks>
    /// Work items are (key/value head × tile of query rows); the query heads of one group are processed together
    /// so each key and value tile is read once for all of them. When there are fewer items than threads (decode,
    /// multi-query attention) the heads of a group are spread over several items instead.
    /// </remarks>
    public static void CausalAttention(
        ReadOnlySpan<float> q, int queries, int heads,
        ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int keyCount, int kvHeads, int headDim,
        int queryStart, Span<float> output)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(queries);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegative(queryStart);
        ArgumentOutOfRangeException.ThrowIfNegative(keyCount);
        if (heads % kvHeads != 0)
            throw new ArgumentException($"CausalAttention: heads {heads} is not a multiple of kv_heads {kvHeads}", nameof(kvHeads));
        if (q.Length != (long)queries * heads * headDim)
            throw new ArgumentException($"CausalAttention: q has {q.Length} floats, expected queries {queries} × heads {heads} × head_dim {headDim}", nameof(q));
        if (output.Length != q.Length)
            throw new ArgumentException($"CausalAttention: output has {output.Length} floats, expected {q.Length} (same shape as q)", nameof(output));
        long kvLength = (long)keyCount * kvHeads * headDim;
        if (keys.Length != kvLength || values.Length != kvLength)
            throw new ArgumentException($"CausalAttention: keys/values have {keys.Length}/{values.Length} floats, expected keys {keyCount} × kv_heads {kvHeads} × head_dim {headDim} = {kvLength}", nameof(keys));
        if ((long)queryStart + queries > keyCount)
            throw new ArgumentException($"CausalAttention: the last query (position {(long)queryStart + queries - 1}) needs {(long)queryStart + queries} keys, only {keyCount} given", nameof(keyCount));
        if (output.Overlaps(q) || output.Overlaps(keys) || output.Overlaps(values))
            throw new ArgumentException("CausalAttention: output must not overlap q, keys or values", nameof(output));
        if (queries == 0)
            return;

        var plan = new AttentionPlan(queries, heads, kvHeads, headDim, queryStart);
        // Multiply-adds: q·k and p·v for every (query, head, visible key), the keys averaging queryStart + queries/2.
        long work = 2L * queries * heads * headDim * (queryStart + (queries + 1) / 2);
        int items = plan.ItemCount;
        int chunks = Parallelism.ChunkCount(items, work, MinWorkPerChunk) == 1 ? 1 : items;

        fixed (float* qPinned = q, keysPinned = keys, valuesPinned = values, outputPinned = output)
        {
            float* qPointer = qPinned, keysPointer = keysPinned, valuesPointer = valuesPinned, outputPointer = outputPinned;
            int qLength = q.Length;
            int kvLengthInt = keys.Length;
            Parallelism.For(chunks, plan.ScratchFloats, (chunk, scratch) =>
            {
                var queryView = new ReadOnlySpan<float>(qPointer, qLength);
                var keyView = new ReadOnlySpan<float>(keysPointer, kvLengthInt);
                var valueView = new ReadOnlySpan<float>(valuesPointer, kvLengthInt);
                var outputView = new Span<float>(outputPointer, qLength);
                // Inline (one chunk): every item in turn; parallel: chunk i is item i.
                int first = chunks == 1 ? 0 : chunk;
                int last = chunks == 1 ? items : chunk + 1;
                for (int item = first; item < last; item++)
                    AttentionItem(queryView, keyView, valueView, outputView, plan, item, scratch);
            });
        }
    }

    /// <summary>How one <see cref="CausalAttention"/> call is cut into work items.</summary>
    private readonly struct AttentionPlan
    {
        public AttentionPlan(int queries, int heads, int kvHeads, int headDim, int queryStart)
        {
            Queries = queries;
            Heads = heads;
            KvHeads = kvHeads;
            HeadDim = headDim;
            QueryStart = queryStart;
            GroupSize = heads / kvHeads;
            // Rows per tile so that rows × (heads of a group) query vectors fill a tile; at least one row even
            // when a group has more than QueryTileSize heads (then a work item takes a share of the heads).
            RowsPerTile = Math.Max(1, QueryTileSize / GroupSize);
            QueryTiles = (queries + RowsPerTile - 1) / RowsPerTile;

            // Spread a group's heads over several items when (kv heads × query tiles) alone would leave threads
            // idle, which is the usual case in decode with few key/value heads.
            int headsPerItem = Math.Min(GroupSize, QueryTileSize);
            int wantedItems = 2 * Parallelism.MaxDegreeOfParallelism;
            while (headsPerItem > 1 && (long)kvHeads * QueryTiles * ((GroupSize + headsPerItem - 1) / headsPerItem) < wantedItems)
                headsPerItem = (headsPerItem + 1) / 2;
            HeadsPerItem = headsPerItem;
            HeadSplits = (GroupSize + headsPerItem - 1) / headsPerItem;

            int vectors = RowsPerTile * HeadsPerItem;
            // Scaled query tile and output accumulator (vectors, d) each, a score tile (vectors, key tile),
            // the running maximum m and running sum l (vectors) each.
            ScratchFloats = 2 * vectors * headDim + vectors * KeyTileSize + 2 * vectors;
        }

        public int Queries { get; }
        public int Heads { get; }
        public int KvHeads { get; }
        public int HeadDim { get; }
        public int QueryStart { get; }
        public int GroupSize { get; }
        public int RowsPerTile { get; }
        public int QueryTiles { get; }
        public int HeadsPerItem { get; }
        public int HeadSplits { get; }
        public int ScratchFloats { get; }
        public int ItemCount => QueryTiles * KvHeads * HeadSplits;
    }

    /// <summary>
    /// One work item: the query rows of one tile × the query heads [firstHead, firstHead + headCount) of one
    /// key/value group, attended over every key tile up to the last row's position.
    /// </summary>
    private static void AttentionItem(
        ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output,
        in AttentionPlan plan, int item, float[] scratch)
    {
        int headDim = plan.HeadDim;
        int heads = plan.Heads;
        int kvStride = plan.KvHeads * headDim; // floats between consecutive tokens of one key/value head

        // The costliest tiles (the last rows see the most keys) get the lowest item numbers, so they start first
        // and the short tiles fill in at the end.
        int itemsPerTile = plan.KvHeads * plan.HeadSplits;
        int tile = plan.QueryTiles - 1 - item / itemsPerTile;
        int kvHead = item % itemsPerTile / plan.HeadSplits;
        int split = item % plan.HeadSplits;

        int firstRow = tile * plan.RowsPerTile;
        int rowCount = Math.Min(plan.RowsPerTile, plan.Queries - firstRow);
        int firstHead = kvHead * plan.GroupSize + split * plan.HeadsPerItem;
        int headCount = Math.Min(plan.HeadsPerItem, (kvHead + 1) * plan.GroupSize - firstHead);
        int vectors = rowCount * headCount; // query vector i is row i / headCount, head firstHead + i % headCount

        Span<float> queryTile = scratch.AsSpan(0, vectors * headDim);                       // (vectors, d), scaled by 1/√d
        Span<float> accumulator = scratch.AsSpan(vectors * headDim, vectors * headDim);      // (vectors, d), unnormalised output
        Span<float> scores = scratch.AsSpan(2 * vectors * headDim, vectors * KeyTileSize);  // (vectors, key tile)
        Span<float> runningMax = scratch.AsSpan(2 * vectors * headDim + vectors * KeyTileSize, vectors);      // m
        Span<float> runningSum = scratch.AsSpan(2 * vectors * headDim + vectors * KeyTileSize + vectors, vectors); // l

        // Fold the 1/√d scale into the queries once instead of into every score.
        float scale = 1f / MathF.Sqrt(headDim);
        for (int i = 0; i < vectors; i++)
        {
            int row = firstRow + i / headCount;
            int head = firstHead + i % headCount;
            TensorPrimitives.Multiply(q.Slice((row * heads + head) * headDim, headDim), scale, queryTile.Slice(i * headDim, headDim));
        }
        accumulator.Clear();
        runningMax.Fill(float.NegativeInfinity);
        runningSum.Clear();

        // The last row of the tile sees keys 0 … lastKey; earlier rows stop sooner inside the diagonal tile.
        int firstPosition = plan.QueryStart + firstRow;
        int lastKey = firstPosition + rowCount - 1;
        for (int keyStart = 0; keyStart <= lastKey; keyStart += KeyTileSize)
        {
            int tileKeys = Math.Min(KeyTileSize, lastKey + 1 - keyStart);
            int keyOffset = keyStart * kvStride + kvHead * headDim; // key/value row keyStart of this head
            ReadOnlySpan<float> keyTile = keys[keyOffset..];     // (tileKeys, d) at stride kvStride
            ReadOnlySpan<float> valueTile = values[keyOffset..]; // (tileKeys, d) at stride kvStride

            // S = Q Kᵀ for the whole tile (vectors × tileKeys), queries already scaled by 1/√d.
            TileKernels.DotRows(queryTile, vectors, headDim, keyTile, tileKeys, kvStride, headDim, scores, KeyTileSize);

            for (int i = 0; i < vectors; i++)
            {
                // Causal mask: the query at position P sees keys ≤ P, i.e. the first P + 1 − keyStart of this tile.
                int position = firstPosition + i / headCount;
                int visible = Math.Min(tileKeys, position + 1 - keyStart);
                Span<float> rowScores = scores.Slice(i * KeyTileSize, tileKeys);
                if (visible <= 0)
                {
                    rowScores.Clear(); // a zero weight leaves the accumulator untouched
                    continue;
                }
                Span<float> visibleScores = rowScores[..visible];

                // Online softmax: the new maximum, the tile's probabilities relative to it, and the factor that moves
                // the earlier sum and accumulator from the old maximum to the new one (exp(−∞) = 0 on the first tile).
                float previousMax = runningMax[i];
                float newMax = MathF.Max(previousMax, TensorPrimitives.Max(visibleScores));
                TensorPrimitives.Subtract(visibleScores, newMax, visibleScores);
                TensorPrimitives.Exp(visibleScores, visibleScores);
                rowScores[visible..].Clear();
                float correction = MathF.Exp(previousMax - newMax);
                runningSum[i] = runningSum[i] * correction + TensorPrimitives.Sum(visibleScores);
                runningMax[i] = newMax;
                if (correction != 1f)
                {
                    Span<float> outputRow = accumulator.Slice(i * headDim, headDim);
                    TensorPrimitives.Multiply(outputRow, correction, outputRow);
                }
            }

            // O += P V for the whole tile (masked probabilities are zero).
            TileKernels.AccumulateWeightedRows(scores, vectors, KeyTileSize, valueTile, tileKeys, kvStride, headDim, accumulator, headDim);
        }

        // Every query sees at least key 0, so the running sum is ≥ 1 (its own maximum contributes exp(0)).
        for (int i = 0; i < vectors; i++)
        {
            int row = firstRow + i / headCount;
            int head = firstHead + i % headCount;
            TensorPrimitives.Multiply(accumulator.Slice(i * headDim, headDim), 1f / runningSum[i], output.Slice((row * heads + head) * headDim, headDim));
        }
    }
}
