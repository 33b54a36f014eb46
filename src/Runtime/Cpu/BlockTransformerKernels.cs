using System.Buffers;
using System.Numerics.Tensors;
using Horizon.Ops;

namespace Horizon.Cpu;

/// <summary>
/// CPU kernels of the GPT-NeoX layer (<see cref="GptNeoXAttention"/>, <see cref="Ops.GptNeoXLayer"/>,
/// <see cref="Ops.GptNeoXStack"/>) and of the two-level <see cref="BlockTransformer"/> built from it. float32
/// activations, row-major; shapes in words: "(rows, hidden)" is rows × hidden floats, the last index fastest.
/// </summary>
public static class BlockTransformerKernels
{
    /// <summary>What a GPT-NeoX layer does between ln₁ and the residual: (rows, hidden) normed input → (rows, hidden) attention output.</summary>
    private delegate void AttentionStep(ReadOnlySpan<float> normed, Span<float> output);

    /// <summary>
    /// A run of consecutive token-decoder rows that belong to one block's local sequence, at local positions
    /// StartPosition … StartPosition + Rows − 1. <c>Continues</c>: the block was started in an earlier call, so the
    /// local caches already hold its first StartPosition entries (only the first segment of a call can continue).
    /// </summary>
    private readonly record struct Segment(int FirstRow, int Rows, int StartPosition, bool Continues);

    // ---------------------------------------------------------------- gpt_neox_attention

    /// <summary>
    /// GPT-NeoX attention on new tokens (Black et al. 2022, § 2.1.1; Vaswani et al. 2017, eq. 1): the fused
    /// projection [q_h | k_h | v_h] = x·W_qkvᵀ + b (per head, 3·d outputs each), RoPE on the first rotary_dim
    /// dimensions of q and k at positions cache.Length + r, k and v appended to the cache, causal softmax attention
    /// with scale 1/√d, y = o·W_denseᵀ + b_dense.
    /// </summary>
    /// <param name="x">(rows, hidden): the tokens at positions cache.Length … cache.Length + rows − 1.</param>
    /// <param name="rows">New tokens (1 for decode).</param>
    /// <param name="weights">Fused q|k|v [3·hidden, hidden] and dense [hidden, hidden], biases optional.</param>
    /// <param name="options">hidden, heads, head_dim and the partial rotary table.</param>
    /// <param name="cache">Keys (after RoPE) and values, (capacity, heads, head_dim); grows by rows.</param>
    /// <param name="y">(rows, hidden); must not overlap x.</param>
    /// <exception cref="HorizonException">The cache has no room for the rows.</exception>
    public static void GptNeoXAttentionLayer(ReadOnlySpan<float> x, int rows, GptNeoXAttentionWeights weights, GptNeoXOptions options, KvCache cache, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        options.Validate();
        ValidateAttention(weights, options);
        CheckRows("GptNeoXAttention", x, y, rows, options.Hidden, inPlace: false);
        CheckCache(cache, options, "GptNeoXAttention");
        if (rows == 0)
            return;
        int start = cache.Length;
        if ((long)start + rows > cache.Capacity)
            throw new HorizonException($"KV cache full: capacity {cache.Capacity}, {start} tokens cached, cannot append {rows} more");

        int hidden = options.Hidden, heads = options.Heads, headDim = options.HeadDim;
        float[] queryBuffer = ArrayPool<float>.Shared.Rent(rows * hidden);
        float[] attendedBuffer = ArrayPool<float>.Shared.Rent(rows * hidden);
        // New keys and values go straight into their cache page (staged when the rows cross pages), (rows, heads, d) each.
        using var append = cache.BeginAppend(rows);
        try
        {
            Span<float> queries = queryBuffer.AsSpan(0, rows * hidden);     // (rows, heads, d)
            Span<float> attended = attendedBuffer.AsSpan(0, rows * hidden); // (rows, heads, d)
            Span<float> newKeys = append.Keys;
            Span<float> newValues = append.Values;
            ProjectFused(x, rows, weights, options, queries, newKeys, newValues);
            CpuKernels.Rope(queries, rows, heads, headDim, start, options.Rope);
            CpuKernels.Rope(newKeys, rows, heads, headDim, start, options.Rope);
            append.Store();
            CpuKernels.CausalAttention(queries, rows, heads, cache, queryStart: start, attended);
            CpuKernels.Linear(attended, rows, weights.Dense, weights.DenseBias, y);
            // Only now are the new entries valid: a failure above leaves the cache as it was.
            append.Commit();
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queryBuffer);
            ArrayPool<float>.Shared.Return(attendedBuffer);
        }
    }

    // ---------------------------------------------------------------- gpt_neox_layer

    /// <summary>
    /// One GPT-NeoX layer on new tokens (Black et al. 2022, § 2.1.2): parallel residual
    /// y = x + attn(ln₁(x)) + mlp(ln₂(x)), or sequential h = x + attn(ln₁(x)), y = h + mlp(ln₂(h)); ln = LayerNorm with
    /// bias (Ba et al. 2016, eq. 4), mlp = dense_4h_to_h(GELU(dense_h_to_4h(·))).
    /// </summary>
    /// <param name="x">(rows, hidden): the tokens at positions cache.Length ….</param>
    /// <param name="rows">New tokens.</param>
    /// <param name="weights">The layer's LayerNorms, attention and MLP.</param>
    /// <param name="options">Sizes, rotary table, ε, residual form and GELU.</param>
    /// <param name="cache">The layer's keys and values; grows by rows.</param>
    /// <param name="y">(rows, hidden); may be x itself, must not overlap it otherwise.</param>
    public static void GptNeoXLayer(ReadOnlySpan<float> x, int rows, GptNeoXLayerWeights weights, GptNeoXOptions options, KvCache cache, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        options.Validate();
        ValidateLayer(weights, options, "GptNeoXLayer");
        CheckRows("GptNeoXLayer", x, y, rows, options.Hidden, inPlace: true);
        CheckCache(cache, options, "GptNeoXLayer");
        if (rows == 0)
            return;
        if ((long)cache.Length + rows > cache.Capacity)
            throw new HorizonException($"KV cache full: capacity {cache.Capacity}, {cache.Length} tokens cached, cannot append {rows} more");
        LayerCore(x, rows, weights, options, (normed, output) => GptNeoXAttentionLayer(normed, rows, weights.Attention, options, cache, output), y);
    }

    /// <summary>
    /// GPT-NeoX layers in turn, then the final LayerNorm (Hugging Face <c>GPTNeoXModel</c> on inputs_embeds).
    /// x (rows, hidden) → y (rows, hidden); one cache per layer, all of the same length; y must not overlap x.
    /// </summary>
    public static void GptNeoXStack(ReadOnlySpan<float> x, int rows, GptNeoXStackWeights weights, GptNeoXOptions options, IReadOnlyList<KvCache> caches, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(caches);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        options.Validate();
        ValidateStack(weights, options, "GptNeoXStack");
        CheckRows("GptNeoXStack", x, y, rows, options.Hidden, inPlace: false);
        if (caches.Count != weights.Layers.Count)
            throw new ArgumentException($"GptNeoXStack: {caches.Count} caches for {weights.Layers.Count} layers", nameof(caches));
        for (int l = 0; l < caches.Count; l++)
        {
            CheckCache(caches[l], options, "GptNeoXStack");
            if (caches[l].Length != caches[0].Length)
                throw new ArgumentException($"GptNeoXStack: cache {l} holds {caches[l].Length} tokens, cache 0 holds {caches[0].Length}", nameof(caches));
        }
        if (rows == 0)
            return;
        if ((long)caches[0].Length + rows > caches[0].Capacity)
            throw new HorizonException($"KV cache full: capacity {caches[0].Capacity}, {caches[0].Length} tokens cached, cannot append {rows} more");

        int hidden = options.Hidden;
        float[] hiddenBuffer = ArrayPool<float>.Shared.Rent(rows * hidden);
        try
        {
            Span<float> h = hiddenBuffer.AsSpan(0, rows * hidden);
            x.CopyTo(h);
            for (int l = 0; l < weights.Layers.Count; l++)
            {
                var layer = weights.Layers[l];
                var cache = caches[l];
                LayerCore(h, rows, layer, options, (normed, output) => GptNeoXAttentionLayer(normed, rows, layer.Attention, options, cache, output), h);
            }
            HyenaKernels.LayerNorm(h, rows, weights.FinalLayerNorm.Gamma, weights.FinalLayerNorm.Beta, options.LayerNormEps, y);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(hiddenBuffer);
        }
    }

    // ---------------------------------------------------------------- block_transformer

    /// <summary>
    /// The Block Transformer (Ho et al. 2024, § 2) on n new tokens; see <see cref="BlockTransformer.Forward"/> and
    /// docs/ops/block_transformer.md. With m₀ = state.StreamLength and m₁ = m₀ + n (stream positions count the P pads):
    /// <list type="number">
    /// <item>Blocks that complete in [m₀, m₁) are embedded (L_B lookups of width D_B/L_B, concatenated) and run
    /// through the block decoder as one batch of rows (its caches hold one entry per block); each context embedding
    /// g_b goes through the expansion layer into R prefix vectors of width D_T for block b + 1.</item>
    /// <item>The token decoder runs on every row it needs, all blocks batched: the block in progress continues
    /// (its local caches hold the prefix and its earlier tokens), every block opened by a completion starts with its
    /// R prefix rows. Attention is local: <see cref="CpuKernels.MaskedAttention"/> with one key range per row, the
    /// row's own block up to itself. The tokens at offset L_B − 1 are never fed (nothing in the block follows them).</item>
    /// <item>Row t of the logits reads the token-decoder output that predicts stream position m₀ + t + 1: the last
    /// prefix row of its block when it opens a block, the row of token t otherwise; final LayerNorm, then embed_out.</item>
    /// </list>
    /// </summary>
    /// <param name="tokens">(n): ids below both embedding tables' row counts.</param>
    /// <param name="weights">Embedder, block decoder, expansion layer, token decoder, head.</param>
    /// <param name="options">Sizes; must match the state's.</param>
    /// <param name="state">Block caches, local caches and the incomplete block's tokens; advanced past the tokens.</param>
    /// <param name="logits">(n, V); rows without a prediction (next token in block 0) are NaN.</param>
    /// <exception cref="HorizonException">A token id is out of range or the state is full; nothing changes then.</exception>
    public static void Forward(ReadOnlySpan<int> tokens, BlockTransformerWeights weights, BlockTransformerOptions options, BlockTransformerState state, Span<float> logits)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(state);
        options.Validate();
        ValidateBlockTransformer(weights, options);
        CheckState(state, options);
        int n = tokens.Length, vocab = options.VocabSize;
        if (logits.Length != (long)n * vocab)
            throw new ArgumentException($"BlockTransformer: logits has {logits.Length} floats, expected tokens {n} × vocab {vocab} = {(long)n * vocab}", nameof(logits));
        int idLimit = Math.Min(weights.EmbedderEmbeddings.Rows, weights.TokenEmbeddings.Rows);
        for (int t = 0; t < n; t++)
        {
            if ((uint)tokens[t] >= (uint)idLimit)
                throw new HorizonException($"token id {tokens[t]} at position {t} is out of range [0, {idLimit})");
        }
        if ((long)state.Length + n > state.Capacity)
            throw new HorizonException($"block_transformer state full: capacity {state.Capacity} tokens, {state.Length} held, cannot append {n} more");
        if (n == 0)
            return;

        int blockLength = options.BlockLength, prefix = options.PrefixLength;
        int blockHidden = options.BlockDecoder.Hidden, tokenHidden = options.TokenDecoder.Hidden, lookupWidth = options.EmbedderHidden;
        long m0 = state.StreamLength, m1 = m0 + n;
        int current = (int)(m0 / blockLength);                 // the block in progress when the call starts
        int completed = (int)(m1 / blockLength) - current;     // blocks current … current + completed − 1 complete here
        int currentOffset = (int)(m0 - (long)current * blockLength);
        if (current >= 1 && state.LocalLength != prefix + currentOffset)
            throw new InvalidOperationException($"BlockTransformer: local caches hold {state.LocalLength} entries, expected prefix {prefix} + {currentOffset} tokens");

        float[]? prefixBuffer = null;
        float[]? rowsBuffer = null;
        try
        {
            // 1. Block decoder over the blocks that complete in this call: e_b (completed, D_B) → g_b → prefix rows
            //    W_x g_b + b_x (completed, R·D_T), i.e. R vectors of D_T for block b + 1.
            if (completed > 0)
            {
                float[] embedBuffer = ArrayPool<float>.Shared.Rent(completed * blockHidden);
                float[] contextBuffer = ArrayPool<float>.Shared.Rent(completed * blockHidden);
                try
                {
                    Span<float> embeds = embedBuffer.AsSpan(0, completed * blockHidden);
                    Span<float> contexts = contextBuffer.AsSpan(0, completed * blockHidden);
                    for (int j = 0; j < completed; j++)
                    {
                        long blockStart = (long)(current + j) * blockLength;
                        for (int r = 0; r < blockLength; r++)
                        {
                            int token = TokenAt(tokens, state, m0, blockStart + r, blockLength);
                            weights.EmbedderEmbeddings.ReadRow(token, embeds.Slice(j * blockHidden + r * lookupWidth, lookupWidth));
                        }
                    }
                    GptNeoXStack(embeds, completed, weights.BlockDecoder, options.BlockDecoder, state.BlockCaches, contexts);
                    prefixBuffer = ArrayPool<float>.Shared.Rent(completed * prefix * tokenHidden);
                    CpuKernels.Linear(contexts, completed, weights.ExpansionWeight, weights.ExpansionBias, prefixBuffer.AsSpan(0, completed * prefix * tokenHidden));
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(embedBuffer);
                    ArrayPool<float>.Shared.Return(contextBuffer);
                }
            }

            // 2. Token-decoder segments. The block in progress continues with its tokens at offsets ≤ L_B − 2; each
            //    completed block j opens block current + j + 1 with R prefix rows and its tokens in the call.
            var segments = new Segment[completed + 1];
            int segmentCount = 0, rows = 0;
            int[] openedAt = new int[completed]; // first row of the segment of block current + j + 1
            if (current >= 1)
            {
                long end = Math.Min(m1, (long)current * blockLength + blockLength - 1);
                int continuing = (int)Math.Max(0, end - m0);
                if (continuing > 0)
                {
                    segments[segmentCount++] = new Segment(0, continuing, state.LocalLength, Continues: true);
                    rows = continuing;
                }
            }
            for (int j = 0; j < completed; j++)
            {
                long blockStart = (long)(current + j + 1) * blockLength;
                int blockTokens = (int)Math.Max(0, Math.Min(m1, blockStart + blockLength - 1) - blockStart);
                openedAt[j] = rows;
                segments[segmentCount++] = new Segment(rows, prefix + blockTokens, 0, Continues: false);
                rows += prefix + blockTokens;
            }

            rowsBuffer = ArrayPool<float>.Shared.Rent(Math.Max(1, rows) * tokenHidden);
            Span<float> h = rowsBuffer.AsSpan(0, rows * tokenHidden); // (rows, D_T)
            if (rows > 0)
            {
                for (int s = 0; s < segmentCount; s++)
                {
                    var segment = segments[s];
                    int row = segment.FirstRow;
                    long firstToken;
                    if (segment.Continues)
                    {
                        firstToken = m0;
                    }
                    else
                    {
                        int j = s - (segments[0].Continues ? 1 : 0);
                        prefixBuffer!.AsSpan(j * prefix * tokenHidden, prefix * tokenHidden).CopyTo(h.Slice(row * tokenHidden, prefix * tokenHidden));
                        row += prefix;
                        firstToken = (long)(current + j + 1) * blockLength;
                    }
                    for (; row < segment.FirstRow + segment.Rows; row++, firstToken++)
                        weights.TokenEmbeddings.ReadRow(tokens[(int)(firstToken - m0)], h.Slice(row * tokenHidden, tokenHidden));
                }

                int[] rowSegment = new int[rows];
                for (int s = 0; s < segmentCount; s++)
                    Array.Fill(rowSegment, s, segments[s].FirstRow, segments[s].Rows);
                for (int l = 0; l < weights.TokenDecoder.Layers.Count; l++)
                {
                    var layer = weights.TokenDecoder.Layers[l];
                    var local = state.LocalCaches[l];
                    LayerCore(h, rows, layer, options.TokenDecoder,
                        (normed, output) => LocalAttention(normed, rows, layer.Attention, options.TokenDecoder, segments, segmentCount, rowSegment, local, output), h);
                }
            }

            // 3. Logits: row t predicts stream position u + 1 (u = m0 + t), block b' = (u+1)/L_B, offset r'.
            int[] source = new int[n];
            int defined = 0;
            for (int t = 0; t < n; t++)
            {
                long target = m0 + t + 1;
                int targetBlock = (int)(target / blockLength), targetOffset = (int)(target % blockLength);
                if (targetBlock == 0)
                    source[t] = -1;                                              // block 0 is never predicted
                else if (targetOffset == 0)
                    source[t] = openedAt[targetBlock - 1 - current] + prefix - 1; // the last prefix row
                else if (targetBlock == current)
                    source[t] = t;                                               // token t in the continuing segment
                else
                    source[t] = openedAt[targetBlock - 1 - current] + prefix + targetOffset - 1;
                if (source[t] >= 0)
                    defined++;
            }
            WriteLogits(h, source, defined, weights, options, logits);

            // 4. The incomplete block's tokens, for its embedding once it completes.
            for (long u = Math.Max(m0, m1 / blockLength * blockLength); u < m1; u++)
                state.PendingTokens[(int)(u % blockLength)] = tokens[(int)(u - m0)];
            state.Length += n;
        }
        finally
        {
            if (prefixBuffer is not null)
                ArrayPool<float>.Shared.Return(prefixBuffer);
            if (rowsBuffer is not null)
                ArrayPool<float>.Shared.Return(rowsBuffer);
        }
    }

    /// <summary>The id at stream position u: a new token when u ≥ m₀, else the incomplete block's stored token (or pad).</summary>
    private static int TokenAt(ReadOnlySpan<int> tokens, BlockTransformerState state, long m0, long u, int blockLength) =>
        u >= m0 ? tokens[(int)(u - m0)] : state.PendingTokens[(int)(u % blockLength)];

    /// <summary>final_layer_norm and embed_out on the token-decoder rows <paramref name="source"/> names, NaN rows elsewhere.</summary>
    private static void WriteLogits(ReadOnlySpan<float> h, int[] source, int defined, BlockTransformerWeights weights, BlockTransformerOptions options, Span<float> logits)
    {
        int n = source.Length, vocab = options.VocabSize, tokenHidden = options.TokenDecoder.Hidden;
        var finalNorm = weights.TokenDecoder.FinalLayerNorm;
        if (defined == 0)
        {
            logits.Fill(float.NaN);
            return;
        }
        float[] selectedBuffer = ArrayPool<float>.Shared.Rent(defined * tokenHidden);
        float[]? logitsBuffer = defined == n ? null : ArrayPool<float>.Shared.Rent(defined * vocab);
        try
        {
            Span<float> selected = selectedBuffer.AsSpan(0, defined * tokenHidden); // (defined, D_T)
            int k = 0;
            foreach (int row in source)
            {
                if (row >= 0)
                    h.Slice(row * tokenHidden, tokenHidden).CopyTo(selected.Slice(k++ * tokenHidden, tokenHidden));
            }
            HyenaKernels.LayerNorm(selected, defined, finalNorm.Gamma, finalNorm.Beta, options.TokenDecoder.LayerNormEps, selected);
            if (logitsBuffer is null)
            {
                CpuKernels.Linear(selected, defined, weights.LmHead, default, logits);
                return;
            }
            Span<float> computed = logitsBuffer.AsSpan(0, defined * vocab);
            CpuKernels.Linear(selected, defined, weights.LmHead, default, computed);
            k = 0;
            for (int t = 0; t < n; t++)
            {
                Span<float> row = logits.Slice(t * vocab, vocab);
                if (source[t] < 0)
                    row.Fill(float.NaN);
                else
                    computed.Slice(k++ * vocab, vocab).CopyTo(row);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(selectedBuffer);
            if (logitsBuffer is not null)
                ArrayPool<float>.Shared.Return(logitsBuffer);
        }
    }

    /// <summary>
    /// Local attention of one token-decoder layer over segments. x (rows, D_T) → y (rows, D_T). Keys are gathered as
    /// [the local cache's entries (only when the first segment continues) | the rows' own keys]; row r of segment s
    /// sees its segment's keys up to itself (the cached ones first when s continues). Afterwards the local cache
    /// holds the last segment's block: appended to when it continues, replaced otherwise.
    /// </summary>
    private static void LocalAttention(
        ReadOnlySpan<float> x, int rows, GptNeoXAttentionWeights weights, GptNeoXOptions options,
        Segment[] segments, int segmentCount, int[] rowSegment, KvCache local, Span<float> y)
    {
        int hidden = options.Hidden, heads = options.Heads, headDim = options.HeadDim;
        int cached = segments[0].Continues ? local.Length : 0;
        int keyCount = cached + rows;
        var last = segments[segmentCount - 1];
        int after = last.Continues ? local.Length + last.Rows : last.Rows;
        if (after > local.Capacity)
            throw new InvalidOperationException($"BlockTransformer: the local cache would hold {after} entries, above its capacity {local.Capacity}");

        float[] queryBuffer = ArrayPool<float>.Shared.Rent(rows * hidden);
        float[] keyBuffer = ArrayPool<float>.Shared.Rent(keyCount * hidden);
        float[] valueBuffer = ArrayPool<float>.Shared.Rent(keyCount * hidden);
        float[] attendedBuffer = ArrayPool<float>.Shared.Rent(rows * hidden);
        try
        {
            Span<float> queries = queryBuffer.AsSpan(0, rows * hidden);     // (rows, heads, d)
            Span<float> keys = keyBuffer.AsSpan(0, keyCount * hidden);      // (cached + rows, heads, d)
            Span<float> values = valueBuffer.AsSpan(0, keyCount * hidden);  // (cached + rows, heads, d)
            Span<float> attended = attendedBuffer.AsSpan(0, rows * hidden); // (rows, heads, d)
            local.CopyTo(0, cached, keys, values);
            Span<float> newKeys = keys[(cached * hidden)..];
            Span<float> newValues = values[(cached * hidden)..];
            ProjectFused(x, rows, weights, options, queries, newKeys, newValues);
            for (int s = 0; s < segmentCount; s++)
            {
                var segment = segments[s];
                CpuKernels.Rope(queries.Slice(segment.FirstRow * hidden, segment.Rows * hidden), segment.Rows, heads, headDim, segment.StartPosition, options.Rope);
                CpuKernels.Rope(newKeys.Slice(segment.FirstRow * hidden, segment.Rows * hidden), segment.Rows, heads, headDim, segment.StartPosition, options.Rope);
            }
            // The continuing segment's keys are [cache | its rows], contiguous from 0; any other segment's start at
            // cached + FirstRow. Either way one range per row.
            AttentionKeyRanges Ranges(int row)
            {
                var segment = segments[rowSegment[row]];
                return AttentionKeyRanges.Single(segment.Continues ? 0 : cached + segment.FirstRow, cached + row + 1);
            }
            CpuKernels.MaskedAttention(queries, rows, heads, keys, values, keyCount, heads, headDim, Ranges, attended);
            CpuKernels.Linear(attended, rows, weights.Dense, weights.DenseBias, y);

            int keep = cached + last.FirstRow; // key row of the last segment's first row
            if (!last.Continues)
                local.Reset();
            local.Append(keys.Slice(keep * hidden, last.Rows * hidden), values.Slice(keep * hidden, last.Rows * hidden));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queryBuffer);
            ArrayPool<float>.Shared.Return(keyBuffer);
            ArrayPool<float>.Shared.Return(valueBuffer);
            ArrayPool<float>.Shared.Return(attendedBuffer);
        }
    }

    // ---------------------------------------------------------------- shared pieces

    /// <summary>
    /// The layer around its attention: normed = ln₁(x), a = attention(normed); parallel: y = mlp(ln₂(x)) + a + x
    /// (the order transformers adds them in), sequential: h = a + x, y = mlp(ln₂(h)) + h. y may be x itself.
    /// </summary>
    private static void LayerCore(ReadOnlySpan<float> x, int rows, GptNeoXLayerWeights weights, GptNeoXOptions options, AttentionStep attention, Span<float> y)
    {
        int count = rows * options.Hidden;
        float eps = options.LayerNormEps;
        float[] normedBuffer = ArrayPool<float>.Shared.Rent(count);
        float[] attentionBuffer = ArrayPool<float>.Shared.Rent(count);
        float[] mlpBuffer = ArrayPool<float>.Shared.Rent(count);
        try
        {
            Span<float> normed = normedBuffer.AsSpan(0, count);
            Span<float> attended = attentionBuffer.AsSpan(0, count);
            Span<float> mlp = mlpBuffer.AsSpan(0, count);
            HyenaKernels.LayerNorm(x, rows, weights.InputLayerNorm.Gamma, weights.InputLayerNorm.Beta, eps, normed);
            attention(normed, attended);
            if (options.UseParallelResidual)
            {
                HyenaKernels.LayerNorm(x, rows, weights.PostAttentionLayerNorm.Gamma, weights.PostAttentionLayerNorm.Beta, eps, normed);
                HyenaKernels.GeluMlp(normed, rows, weights.Mlp, options.Activation, mlp);
                TensorPrimitives.Add(mlp, attended, mlp);
                TensorPrimitives.Add(mlp, x, y);
            }
            else
            {
                TensorPrimitives.Add(attended, x, attended); // h = x + attn(ln₁(x))
                HyenaKernels.LayerNorm(attended, rows, weights.PostAttentionLayerNorm.Gamma, weights.PostAttentionLayerNorm.Beta, eps, normed);
                HyenaKernels.GeluMlp(normed, rows, weights.Mlp, options.Activation, mlp);
                TensorPrimitives.Add(mlp, attended, y);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(normedBuffer);
            ArrayPool<float>.Shared.Return(attentionBuffer);
            ArrayPool<float>.Shared.Return(mlpBuffer);
        }
    }

    /// <summary>
    /// The fused projection of GPT-NeoX: f = x·W_qkvᵀ + b (rows, heads, 3·d), split per head into q = f[…, 0:d],
    /// k = f[…, d:2d], v = f[…, 2d:3d], each written (rows, heads, d).
    /// </summary>
    private static void ProjectFused(ReadOnlySpan<float> x, int rows, GptNeoXAttentionWeights weights, GptNeoXOptions options, Span<float> q, Span<float> k, Span<float> v)
    {
        int hidden = options.Hidden, heads = options.Heads, headDim = options.HeadDim;
        float[] fusedBuffer = ArrayPool<float>.Shared.Rent(rows * 3 * hidden);
        try
        {
            Span<float> fused = fusedBuffer.AsSpan(0, rows * 3 * hidden);
            CpuKernels.Linear(x, rows, weights.QueryKeyValue, weights.QueryKeyValueBias, fused);
            for (int r = 0; r < rows; r++)
            {
                for (int head = 0; head < heads; head++)
                {
                    ReadOnlySpan<float> part = fused.Slice(r * 3 * hidden + head * 3 * headDim, 3 * headDim);
                    int target = r * hidden + head * headDim;
                    part[..headDim].CopyTo(q.Slice(target, headDim));
                    part.Slice(headDim, headDim).CopyTo(k.Slice(target, headDim));
                    part.Slice(2 * headDim, headDim).CopyTo(v.Slice(target, headDim));
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(fusedBuffer);
        }
    }

    private static void CheckRows(string op, ReadOnlySpan<float> x, Span<float> y, int rows, int hidden, bool inPlace)
    {
        if (x.Length != (long)rows * hidden)
            throw new ArgumentException($"{op}: x has {x.Length} floats, expected rows {rows} × hidden {hidden} = {(long)rows * hidden}", nameof(x));
        if (y.Length != x.Length)
            throw new ArgumentException($"{op}: y has {y.Length} floats, expected rows {rows} × hidden {hidden} = {(long)rows * hidden}", nameof(y));
        if (x.Overlaps(y, out int offset) && !(inPlace && offset == 0))
            throw new ArgumentException(inPlace ? $"{op}: y must be x itself or not overlap it" : $"{op}: y must not overlap x", nameof(y));
    }

    private static void CheckCache(KvCache cache, GptNeoXOptions options, string op)
    {
        ArgumentNullException.ThrowIfNull(cache);
        if (cache.KvHeads != options.Heads || cache.HeadDim != options.HeadDim)
            throw new ArgumentException($"{op}: cache holds (heads {cache.KvHeads}, head_dim {cache.HeadDim}), layer needs ({options.Heads}, {options.HeadDim})", nameof(cache));
    }

    private static void CheckState(BlockTransformerState state, BlockTransformerOptions options)
    {
        var made = state.Options;
        if (made.BlockLength != options.BlockLength || made.PrefixLength != options.PrefixLength
            || state.BlockCaches.Count != options.BlockDecoderLayers || state.LocalCaches.Count != options.TokenDecoderLayers
            || state.LocalCaches[0].Capacity < options.LocalCapacity)
            throw new ArgumentException(
                $"BlockTransformer: the state was made for block_length {made.BlockLength}, prefix {made.PrefixLength}, " +
                $"{state.BlockCaches.Count}/{state.LocalCaches.Count} layers; the options say {options.BlockLength}, {options.PrefixLength}, " +
                $"{options.BlockDecoderLayers}/{options.TokenDecoderLayers}", nameof(state));
        foreach (var cache in state.BlockCaches)
            CheckCache(cache, options.BlockDecoder, "BlockTransformer (block caches)");
        foreach (var cache in state.LocalCaches)
            CheckCache(cache, options.TokenDecoder, "BlockTransformer (local caches)");
    }

    private static void CheckMatrix(Matrix matrix, int rows, int cols, string op, string role)
    {
        ArgumentNullException.ThrowIfNull(matrix, role);
        if (matrix.Rows != rows || matrix.Cols != cols)
            throw new ArgumentException($"{op}: {role} '{matrix.Name}' is [{matrix.Rows}, {matrix.Cols}], expected [{rows}, {cols}]");
    }

    private static void CheckVector(float[]? vector, int length, string op, string role, bool optional)
    {
        if (vector is null)
        {
            if (!optional)
                throw new ArgumentException($"{op}: {role} is missing");
            return;
        }
        if (vector.Length != length)
            throw new ArgumentException($"{op}: {role} has {vector.Length} values, expected {length}");
    }

    private static void ValidateAttention(GptNeoXAttentionWeights weights, GptNeoXOptions options, string op = "GptNeoXAttention")
    {
        ArgumentNullException.ThrowIfNull(weights, op);
        int hidden = options.Hidden;
        CheckMatrix(weights.QueryKeyValue, 3 * hidden, hidden, op, "query_key_value");
        CheckVector(weights.QueryKeyValueBias, 3 * hidden, op, "query_key_value bias", optional: true);
        CheckMatrix(weights.Dense, hidden, hidden, op, "dense");
        CheckVector(weights.DenseBias, hidden, op, "dense bias", optional: true);
    }

    private static void ValidateLayer(GptNeoXLayerWeights weights, GptNeoXOptions options, string op)
    {
        ArgumentNullException.ThrowIfNull(weights, op);
        int hidden = options.Hidden;
        CheckVector(weights.InputLayerNorm?.Gamma, hidden, op, "input_layernorm weight", optional: false);
        CheckVector(weights.InputLayerNorm?.Beta, hidden, op, "input_layernorm bias", optional: false);
        CheckVector(weights.PostAttentionLayerNorm?.Gamma, hidden, op, "post_attention_layernorm weight", optional: false);
        CheckVector(weights.PostAttentionLayerNorm?.Beta, hidden, op, "post_attention_layernorm bias", optional: false);
        ValidateAttention(weights.Attention, options, op);
        ArgumentNullException.ThrowIfNull(weights.Mlp, op);
        CheckMatrix(weights.Mlp.Fc1, options.Intermediate, hidden, op, "mlp.dense_h_to_4h");
        CheckVector(weights.Mlp.Fc1Bias, options.Intermediate, op, "mlp.dense_h_to_4h bias", optional: true);
        CheckMatrix(weights.Mlp.Fc2, hidden, options.Intermediate, op, "mlp.dense_4h_to_h");
        CheckVector(weights.Mlp.Fc2Bias, hidden, op, "mlp.dense_4h_to_h bias", optional: true);
    }

    private static void ValidateStack(GptNeoXStackWeights weights, GptNeoXOptions options, string op)
    {
        ArgumentNullException.ThrowIfNull(weights, op);
        if (weights.Layers is null || weights.Layers.Count == 0)
            throw new ArgumentException($"{op}: no layers");
        foreach (var layer in weights.Layers)
            ValidateLayer(layer, options, op);
        CheckVector(weights.FinalLayerNorm?.Gamma, options.Hidden, op, "final_layer_norm weight", optional: false);
        CheckVector(weights.FinalLayerNorm?.Beta, options.Hidden, op, "final_layer_norm bias", optional: false);
    }

    private static void ValidateBlockTransformer(BlockTransformerWeights weights, BlockTransformerOptions options)
    {
        const string op = "BlockTransformer";
        int blockHidden = options.BlockDecoder.Hidden, tokenHidden = options.TokenDecoder.Hidden;
        ArgumentNullException.ThrowIfNull(weights.EmbedderEmbeddings, "embedder.embeddings");
        if (weights.EmbedderEmbeddings.Cols != options.EmbedderHidden)
            throw new ArgumentException($"{op}: embedder.embeddings '{weights.EmbedderEmbeddings.Name}' has {weights.EmbedderEmbeddings.Cols} columns, expected D_B / L_B = {options.EmbedderHidden}");
        if (options.PadTokenId >= weights.EmbedderEmbeddings.Rows)
            throw new ArgumentException($"{op}: pad_token_id {options.PadTokenId} is not a row of embedder.embeddings ({weights.EmbedderEmbeddings.Rows} rows)");
        ValidateStack(weights.BlockDecoder, options.BlockDecoder, op + " (block decoder)");
        ValidateStack(weights.TokenDecoder, options.TokenDecoder, op + " (token decoder)");
        if (weights.BlockDecoder.Layers.Count != options.BlockDecoderLayers || weights.TokenDecoder.Layers.Count != options.TokenDecoderLayers)
            throw new ArgumentException($"{op}: {weights.BlockDecoder.Layers.Count}/{weights.TokenDecoder.Layers.Count} decoder layers bound, the options say {options.BlockDecoderLayers}/{options.TokenDecoderLayers}");
        CheckMatrix(weights.ExpansionWeight, options.PrefixLength * tokenHidden, blockHidden, op, "token_decoder.expansion_layer");
        CheckVector(weights.ExpansionBias, options.PrefixLength * tokenHidden, op, "token_decoder.expansion_layer bias", optional: true);
        ArgumentNullException.ThrowIfNull(weights.TokenEmbeddings, "token_decoder.gpt_neox.embed_in");
        if (weights.TokenEmbeddings.Cols != tokenHidden)
            throw new ArgumentException($"{op}: token_decoder.gpt_neox.embed_in '{weights.TokenEmbeddings.Name}' has {weights.TokenEmbeddings.Cols} columns, expected D_T = {tokenHidden}");
        CheckMatrix(weights.LmHead, options.VocabSize, tokenHidden, op, "token_decoder.embed_out");
    }
}
