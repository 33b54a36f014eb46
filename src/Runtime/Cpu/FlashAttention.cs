using System.Numerics.Tensors;
using Horizon.Ops;

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
        ArgumentOutOfRangeException.ThrowIfNegative(keyCount);
        CheckCausalQueries(q, queries, heads, kvHeads, headDim, queryStart, output);
        long kvLength = (long)keyCount * kvHeads * headDim;
        if (keys.Length != kvLength || values.Length != kvLength)
            throw new ArgumentException($"CausalAttention: keys/values have {keys.Length}/{values.Length} floats, expected keys {keyCount} × kv_heads {kvHeads} × head_dim {headDim} = {kvLength}", nameof(keys));
        if ((long)queryStart + queries > keyCount)
            throw new ArgumentException($"CausalAttention: the last query (position {(long)queryStart + queries - 1}) needs {(long)queryStart + queries} keys, only {keyCount} given", nameof(keyCount));
        if (output.Overlaps(q) || output.Overlaps(keys) || output.Overlaps(values))
            throw new ArgumentException("CausalAttention: output must not overlap q, keys or values", nameof(output));
        if (queries == 0)
            return;

        fixed (float* keysPinned = keys, valuesPinned = values)
            RunCausal(q, queries, heads, KeyValueSource.Contiguous(keysPinned, valuesPinned, keys.Length), kvHeads, headDim, queryStart, output);
    }

    /// <summary>
    /// <see cref="CausalAttention(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, int, int, Span{float})"/>
    /// over the keys and values held in a paged <see cref="KvCache"/>: the same work items, tiles and arithmetic, so
    /// the result is bit-identical to gathering the cache into contiguous arrays first. A page is a whole number of
    /// key tiles, so each key tile lies in one page; the page is looked up once per tile.
    /// </summary>
    /// <param name="q">(queries, heads, headDim): query vectors, RoPE already applied.</param>
    /// <param name="queries">Number of query tokens.</param>
    /// <param name="heads">Query heads per token; a multiple of the cache's kv_heads.</param>
    /// <param name="cache">
    /// Keys and values; query r attends to its tokens 0 … queryStart + r, which it must hold (its Length, or the
    /// rows of an open append once <see cref="KvAppend.Store"/> was called).
    /// </param>
    /// <param name="queryStart">Absolute position of query 0.</param>
    /// <param name="output">(queries, heads, headDim); must not overlap q or the cache.</param>
    public static void CausalAttention(ReadOnlySpan<float> q, int queries, int heads, KvCache cache, int queryStart, Span<float> output)
    {
        ArgumentNullException.ThrowIfNull(cache);
        CheckCausalQueries(q, queries, heads, cache.KvHeads, cache.HeadDim, queryStart, output);
        if ((long)queryStart + queries > cache.ReadableLength)
            throw new ArgumentException($"CausalAttention: the last query (position {(long)queryStart + queries - 1}) needs {(long)queryStart + queries} keys, the cache holds only {cache.ReadableLength}", nameof(cache));
        if (output.Overlaps(q))
            throw new ArgumentException("CausalAttention: output must not overlap q", nameof(output));
        if (queries == 0)
            return;
        RunCausal(q, queries, heads, KeyValueSource.Paged(cache), cache.KvHeads, cache.HeadDim, queryStart, output);
    }

    /// <summary>The argument checks the contiguous and the paged CausalAttention share.</summary>
    private static void CheckCausalQueries(ReadOnlySpan<float> q, int queries, int heads, int kvHeads, int headDim, int queryStart, Span<float> output)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(queries);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegative(queryStart);
        if (heads % kvHeads != 0)
            throw new ArgumentException($"CausalAttention: heads {heads} is not a multiple of kv_heads {kvHeads}", nameof(kvHeads));
        if (q.Length != (long)queries * heads * headDim)
            throw new ArgumentException($"CausalAttention: q has {q.Length} floats, expected queries {queries} × heads {heads} × head_dim {headDim}", nameof(q));
        if (output.Length != q.Length)
            throw new ArgumentException($"CausalAttention: output has {output.Length} floats, expected {q.Length} (same shape as q)", nameof(output));
    }

    private static void RunCausal(ReadOnlySpan<float> q, int queries, int heads, in KeyValueSource source, int kvHeads, int headDim, int queryStart, Span<float> output)
    {
        var plan = new AttentionPlan(queries, heads, kvHeads, headDim, queryStart, keyRanges: null);
        // Multiply-adds: q·k and p·v for every (query, head, visible key), the keys averaging queryStart + queries/2.
        long work = 2L * queries * heads * headDim * (queryStart + (queries + 1) / 2);
        RunAttentionItems(q, source, output, plan, work);
    }

    /// <summary>
    /// Multi-head softmax attention in which each query row sees an arbitrary set of keys given as at most two index
    /// ranges: o = softmax(q kᵀ / √d + mask) v per head, the mask being 0 inside
    /// <paramref name="keyRanges"/>(row) and −∞ outside. The same tiled online softmax as
    /// <see cref="CausalAttention(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, int, int, Span{float})"/> (Dao et al. 2022, Algorithm 1), and key tiles that no row of a query tile sees
    /// are skipped, so the cost is proportional to the visible keys (plus at most one partial tile per range and
    /// query tile), not to <paramref name="keyCount"/>. Used by the attention variants whose masks are not a
    /// causal prefix: sliding windows with global tokens, pooled core tokens plus a local window.
    /// </summary>
    /// <param name="q">(queries, heads, headDim): query vectors, RoPE already applied.</param>
    /// <param name="queries">Number of query rows.</param>
    /// <param name="heads">Query heads per row; a multiple of <paramref name="kvHeads"/>.</param>
    /// <param name="keys">(keyCount, kvHeads, headDim).</param>
    /// <param name="values">(keyCount, kvHeads, headDim).</param>
    /// <param name="keyCount">Number of key/value rows.</param>
    /// <param name="kvHeads">Key/value heads; query head h reads key/value head h / (heads / kvHeads).</param>
    /// <param name="headDim">d; scores are scaled by 1/√d.</param>
    /// <param name="keyRanges">
    /// Row r → the key rows it sees, the same for every head of the row. Called once per row before any work
    /// starts; every row must see at least one key.
    /// </param>
    /// <param name="output">(queries, heads, headDim); must not overlap the inputs.</param>
    /// <remarks>
    /// With <c>keyRanges(r) = [0, queryStart + r + 1)</c> the result is bit-identical to
    /// <see cref="CausalAttention(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, int, int, Span{float})"/>: the same tiles, in the same order, with the same arithmetic.
    /// </remarks>
    public static void MaskedAttention(
        ReadOnlySpan<float> q, int queries, int heads,
        ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int keyCount, int kvHeads, int headDim,
        Func<int, AttentionKeyRanges> keyRanges, Span<float> output)
    {
        ArgumentNullException.ThrowIfNull(keyRanges);
        ArgumentOutOfRangeException.ThrowIfNegative(queries);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegative(keyCount);
        if (heads % kvHeads != 0)
            throw new ArgumentException($"MaskedAttention: heads {heads} is not a multiple of kv_heads {kvHeads}", nameof(kvHeads));
        if (q.Length != (long)queries * heads * headDim)
            throw new ArgumentException($"MaskedAttention: q has {q.Length} floats, expected queries {queries} × heads {heads} × head_dim {headDim}", nameof(q));
        if (output.Length != q.Length)
            throw new ArgumentException($"MaskedAttention: output has {output.Length} floats, expected {q.Length} (same shape as q)", nameof(output));
        long kvLength = (long)keyCount * kvHeads * headDim;
        if (keys.Length != kvLength || values.Length != kvLength)
            throw new ArgumentException($"MaskedAttention: keys/values have {keys.Length}/{values.Length} floats, expected keys {keyCount} × kv_heads {kvHeads} × head_dim {headDim} = {kvLength}", nameof(keys));
        if (output.Overlaps(q) || output.Overlaps(keys) || output.Overlaps(values))
            throw new ArgumentException("MaskedAttention: output must not overlap q, keys or values", nameof(output));
        if (queries == 0)
            return;

        // The ranges of every row, four ints each, validated once so the work items can trust them.
        int[] table = System.Buffers.ArrayPool<int>.Shared.Rent(4 * queries);
        try
        {
            long visibleKeys = 0;
            for (int row = 0; row < queries; row++)
            {
                AttentionKeyRanges ranges = keyRanges(row);
                if (ranges.Start0 < 0 || ranges.End0 < ranges.Start0 || ranges.Start1 < ranges.End0 || ranges.End1 < ranges.Start1 || ranges.End1 > keyCount)
                    throw new ArgumentException($"MaskedAttention: row {row} has key ranges [{ranges.Start0}, {ranges.End0}) ∪ [{ranges.Start1}, {ranges.End1}); they must be ordered, disjoint and inside [0, {keyCount})", nameof(keyRanges));
                if (ranges.Count == 0)
                    throw new ArgumentException($"MaskedAttention: row {row} sees no key (a softmax over nothing is undefined)", nameof(keyRanges));
                table[4 * row] = ranges.Start0;
                table[4 * row + 1] = ranges.End0;
                table[4 * row + 2] = ranges.Start1;
                table[4 * row + 3] = ranges.End1;
                visibleKeys += ranges.Count;
            }
            var plan = new AttentionPlan(queries, heads, kvHeads, headDim, queryStart: 0, table);
            fixed (float* keysPinned = keys, valuesPinned = values)
                RunAttentionItems(q, KeyValueSource.Contiguous(keysPinned, valuesPinned, keys.Length), output, plan, 2L * heads * headDim * visibleKeys);
        }
        finally
        {
            System.Buffers.ArrayPool<int>.Shared.Return(table);
        }
    }

    /// <summary>Runs every work item of <paramref name="plan"/>, inline or on the thread pool depending on <paramref name="work"/>.</summary>
    /// <remarks>Contiguous keys and values must stay pinned (<see cref="KeyValueSource.Contiguous"/>) until this returns.</remarks>
    private static void RunAttentionItems(
        ReadOnlySpan<float> q, KeyValueSource source, Span<float> output,
        AttentionPlan plan, long work)
    {
        int items = plan.ItemCount;
        int chunks = Parallelism.ChunkCount(items, work, MinWorkPerChunk) == 1 ? 1 : items;

        fixed (float* qPinned = q, outputPinned = output)
        {
            float* qPointer = qPinned, outputPointer = outputPinned;
            int qLength = q.Length;
            Parallelism.For(chunks, plan.ScratchFloats, (chunk, scratch) =>
            {
                var queryView = new ReadOnlySpan<float>(qPointer, qLength);
                var outputView = new Span<float>(outputPointer, qLength);
                // Inline (one chunk): every item in turn; parallel: chunk i is item i.
                int first = chunks == 1 ? 0 : chunk;
                int last = chunks == 1 ? items : chunk + 1;
                for (int item = first; item < last; item++)
                    AttentionItem(queryView, source, outputView, plan, item, scratch);
            });
        }
    }

    /// <summary>
    /// Where work items read their key and value tiles: one contiguous (keyCount, kv_heads, d) pair of arrays
    /// (pinned by the caller), or the pages of a <see cref="KvCache"/>. Either way a tile is one span at stride
    /// kv_heads · d, so the tile arithmetic is the same.
    /// </summary>
    private readonly struct KeyValueSource
    {
        private readonly float* _keys;
        private readonly float* _values;
        private readonly int _length;
        private readonly KvPage?[]? _pages;
        private readonly int _pageTokens;

        private KeyValueSource(float* keys, float* values, int length, KvPage?[]? pages, int pageTokens)
        {
            _keys = keys;
            _values = values;
            _length = length;
            _pages = pages;
            _pageTokens = pageTokens;
        }

        /// <summary>Keys and values of <paramref name="length"/> floats each at pinned addresses.</summary>
        public static KeyValueSource Contiguous(float* keys, float* values, int length) => new(keys, values, length, null, 0);

        /// <summary>The pages of <paramref name="cache"/> as they are now (the cache must not change during the call).</summary>
        public static KeyValueSource Paged(KvCache cache) => new(null, null, 0, cache.PageTable, cache.PageTokens);

        /// <summary>
        /// Keys and values from token <paramref name="keyStart"/>, head <paramref name="kvHead"/> on: (tileKeys, d) at
        /// stride <paramref name="kvStride"/>, all inside one page.
        /// </summary>
        public void Tile(int keyStart, int tileKeys, int kvHead, int kvStride, int headDim, out ReadOnlySpan<float> keyTile, out ReadOnlySpan<float> valueTile)
        {
            if (_pages is null)
            {
                int keyOffset = keyStart * kvStride + kvHead * headDim; // key/value row keyStart of this head
                keyTile = new ReadOnlySpan<float>(_keys + keyOffset, _length - keyOffset);
                valueTile = new ReadOnlySpan<float>(_values + keyOffset, _length - keyOffset);
                return;
            }
            int page = keyStart / _pageTokens;
            int inPage = keyStart - page * _pageTokens;
            if (inPage + tileKeys > _pageTokens)
                throw new InvalidOperationException($"attention: key tile [{keyStart}, {keyStart + tileKeys}) crosses a KV cache page boundary ({_pageTokens} tokens per page)");
            KvPage held = _pages[page]!;
            int offset = inPage * kvStride + kvHead * headDim;
            keyTile = held.Keys.AsSpan(offset);
            valueTile = held.Values.AsSpan(offset);
        }
    }

    /// <summary>How one <see cref="CausalAttention(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, int, int, Span{float})"/> or <see cref="MaskedAttention"/> call is cut into work items.</summary>
    private readonly struct AttentionPlan
    {
        public AttentionPlan(int queries, int heads, int kvHeads, int headDim, int queryStart, int[]? keyRanges)
        {
            KeyRanges = keyRanges;
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

        /// <summary>
        /// (queries, 4): Start0, End0, Start1, End1 of the keys each row sees (<see cref="MaskedAttention"/>), or
        /// null for the causal mask of <see cref="CausalAttention(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, int, int, Span{float})"/> (row r sees [0, QueryStart + r + 1)).
        /// </summary>
        public int[]? KeyRanges { get; }

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
    /// key/value group, attended over every key tile that some row of the tile sees (causal: every tile up to the
    /// last row's position).
    /// </summary>
    private static void AttentionItem(
        ReadOnlySpan<float> q, in KeyValueSource source, Span<float> output,
        in AttentionPlan plan, int item, float[] scratch)
    {
        int headDim = plan.HeadDim;
        int heads = plan.Heads;

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

        // The keys each row of the tile sees, [Start0, End0) ∪ [Start1, End1) (causal: [0, position + 1)), and the
        // spans of key tiles to walk: the union of the rows' first ranges, then of their second ranges, merged when
        // they meet. Tiles in neither span are seen by no row and are skipped.
        int firstPosition = plan.QueryStart + firstRow;
        Span<int> rowRanges = stackalloc int[4 * rowCount];
        int spanStart0 = int.MaxValue, spanEnd0 = 0, spanStart1 = int.MaxValue, spanEnd1 = 0;
        for (int r = 0; r < rowCount; r++)
        {
            int start0, end0, start1, end1;
            if (plan.KeyRanges is { } table)
            {
                start0 = table[4 * (firstRow + r)];
                end0 = table[4 * (firstRow + r) + 1];
                start1 = table[4 * (firstRow + r) + 2];
                end1 = table[4 * (firstRow + r) + 3];
            }
            else
            {
                start0 = 0;
                end0 = start1 = end1 = firstPosition + r + 1;
            }
            rowRanges[4 * r] = start0;
            rowRanges[4 * r + 1] = end0;
            rowRanges[4 * r + 2] = start1;
            rowRanges[4 * r + 3] = end1;
            if (end0 > start0)
            {
                spanStart0 = Math.Min(spanStart0, start0);
                spanEnd0 = Math.Max(spanEnd0, end0);
            }
            if (end1 > start1)
            {
                spanStart1 = Math.Min(spanStart1, start1);
                spanEnd1 = Math.Max(spanEnd1, end1);
            }
        }
        if (spanEnd0 > 0 && spanEnd1 > 0 && spanStart1 <= spanEnd0)
        {
            spanStart0 = Math.Min(spanStart0, spanStart1);
            spanEnd0 = Math.Max(spanEnd0, spanEnd1);
            spanEnd1 = 0;
        }

        for (int span = 0; span < 2; span++)
        {
            int spanStart = span == 0 ? spanStart0 : spanStart1;
            int spanEnd = span == 0 ? spanEnd0 : spanEnd1;
            for (int keyStart = spanStart; keyStart < spanEnd; keyStart += KeyTileSize)
                AttentionKeyTile(source, plan, kvHead, keyStart, Math.Min(KeyTileSize, spanEnd - keyStart),
                    rowRanges, vectors, headCount, queryTile, accumulator, scores, runningMax, runningSum);
        }

        // Every query sees at least one key, so the running sum is ≥ 1 (its own maximum contributes exp(0)).
        for (int i = 0; i < vectors; i++)
        {
            int row = firstRow + i / headCount;
            int head = firstHead + i % headCount;
            TensorPrimitives.Multiply(accumulator.Slice(i * headDim, headDim), 1f / runningSum[i], output.Slice((row * heads + head) * headDim, headDim));
        }
    }

    /// <summary>
    /// One step of the online softmax for every query vector of a work item: the key tile
    /// [keyStart, keyStart + tileKeys) of key/value head <paramref name="kvHead"/>, masked per row by
    /// <paramref name="rowRanges"/> (rows, 4).
    /// </summary>
    private static void AttentionKeyTile(
        in KeyValueSource source, in AttentionPlan plan, int kvHead, int keyStart, int tileKeys,
        ReadOnlySpan<int> rowRanges, int vectors, int headCount,
        ReadOnlySpan<float> queryTile, Span<float> accumulator, Span<float> scores, Span<float> runningMax, Span<float> runningSum)
    {
        int headDim = plan.HeadDim;
        int kvStride = plan.KvHeads * headDim; // floats between consecutive tokens of one key/value head
        // (tileKeys, d) at stride kvStride each, from key/value row keyStart of this head.
        source.Tile(keyStart, tileKeys, kvHead, kvStride, headDim, out ReadOnlySpan<float> keyTile, out ReadOnlySpan<float> valueTile);
        int tileEnd = keyStart + tileKeys;

        // S = Q Kᵀ for the whole tile (vectors × tileKeys), queries already scaled by 1/√d.
        TileKernels.DotRows(queryTile, vectors, headDim, keyTile, tileKeys, kvStride, headDim, scores, KeyTileSize);

        for (int i = 0; i < vectors; i++)
        {
            // The row's ranges clipped to the tile, as offsets in it: [lo0, hi0) and [lo1, hi1) (empty when lo ≥ hi).
            ReadOnlySpan<int> ranges = rowRanges.Slice(4 * (i / headCount), 4);
            int lo0 = Math.Max(ranges[0], keyStart) - keyStart, hi0 = Math.Min(ranges[1], tileEnd) - keyStart;
            int lo1 = Math.Max(ranges[2], keyStart) - keyStart, hi1 = Math.Min(ranges[3], tileEnd) - keyStart;
            bool first = lo0 < hi0, second = lo1 < hi1;
            Span<float> rowScores = scores.Slice(i * KeyTileSize, tileKeys);
            if (!first && !second)
            {
                rowScores.Clear(); // a zero weight leaves the accumulator untouched
                continue;
            }
            // The visible keys lie in [lo, hi); with both ranges present, the gap [hi0, lo1) between them is masked.
            int lo = first ? lo0 : lo1;
            int hi = second ? hi1 : hi0;
            bool gap = first && second && hi0 < lo1;
            if (gap)
                rowScores[hi0..lo1].Fill(float.NegativeInfinity);
            Span<float> visibleScores = rowScores[lo..hi];

            // Online softmax: the new maximum, the tile's probabilities relative to it, and the factor that moves
            // the earlier sum and accumulator from the old maximum to the new one (exp(−∞) = 0 on the first tile).
            float previousMax = runningMax[i];
            float newMax = MathF.Max(previousMax, TensorPrimitives.Max(visibleScores));
            TensorPrimitives.Subtract(visibleScores, newMax, visibleScores);
            TensorPrimitives.Exp(visibleScores, visibleScores);
            if (gap)
                rowScores[hi0..lo1].Clear();
            rowScores[..lo].Clear();
            rowScores[hi..].Clear();
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
}

/// <summary>
/// The keys one query row of <see cref="CpuKernels.MaskedAttention"/> sees: the union of the half-open key index
/// ranges [Start0, End0) and [Start1, End1), with Start0 ≤ End0 ≤ Start1 ≤ End1 (an empty range has Start = End).
/// </summary>
public readonly record struct AttentionKeyRanges(int Start0, int End0, int Start1, int End1)
{
    /// <summary>One range [start, end) and an empty second one.</summary>
    public static AttentionKeyRanges Single(int start, int end) => new(start, end, end, end);

    /// <summary>Keys seen in all.</summary>
    public int Count => End0 - Start0 + (End1 - Start1);
}
