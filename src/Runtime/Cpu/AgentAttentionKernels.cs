using System.Buffers;
using System.Numerics.Tensors;
using Horizon.Ops;

namespace Horizon.Cpu;

public static unsafe partial class CpuKernels
{
    /// <summary>
    /// One agent attention layer (Han et al. 2024, Agent Attention, eq. 3–6). q, k, v as in <see cref="AttentionLayer"/>
    /// (no RoPE). Bidirectional, over the whole sequence of N = rows tokens, per query head h (value head g):
    /// A_h = AdaptiveAvgPool_N→n(Q_h) (n, d); V_A = softmax(A_h K_gᵀ/√d + B₁) V_g (n, d);
    /// O_h = softmax(Q_h A_hᵀ/√d + B₂) V_A + DWC(V)_h (N, d); y = concat_h O_h · W_oᵀ + b_o.
    /// Causal: see <see cref="CausalAgentAttention"/>.
    /// </summary>
    /// <param name="x">(rows, hidden).</param>
    /// <param name="rows">Tokens: the whole sequence (bidirectional) or the next tokens after state.Length (causal).</param>
    /// <param name="weights">Projections, DWC filters and the optional biases B₁ (heads, n, N) and B₂ (heads, N, n).</param>
    /// <param name="options">Sizes, agents, kernel, variant and chunk size.</param>
    /// <param name="state">Null when bidirectional; the causal decode state otherwise.</param>
    /// <param name="y">(rows, hidden); must not overlap <paramref name="x"/>.</param>
    public static void AgentAttentionLayer(
        ReadOnlySpan<float> x, int rows, AgentAttentionWeights weights, AgentAttentionOptions options, AgentAttentionState? state, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        options.Validate();
        AttentionOptions attention = options.Attention;
        ValidateVariantLayer(x, rows, weights.Projections, attention, y, "AgentAttention");
        int channels = attention.Heads * attention.HeadDim;
        if (weights.ConvWeight is null || weights.ConvWeight.Length != (long)channels * options.ConvKernel)
            throw new ArgumentException($"AgentAttention: conv weight has {weights.ConvWeight?.Length ?? 0} floats, expected heads·d {channels} × kernel {options.ConvKernel}", nameof(weights));
        if (weights.ConvBias is { } convBias && convBias.Length != channels)
            throw new ArgumentException($"AgentAttention: conv bias has {convBias.Length} floats, expected heads·d = {channels}", nameof(weights));

        if (!options.Causal)
        {
            if (state is not null)
                throw new ArgumentException("AgentAttention: the bidirectional variant takes the whole sequence in one call and no state", nameof(state));
            long biasLength = (long)attention.Heads * options.Agents * rows;
            if (weights.AgentKeyBias is { } b1 && b1.Length != biasLength)
                throw new ArgumentException($"AgentAttention: agent bias B₁ has {b1.Length} floats, expected heads {attention.Heads} × agents {options.Agents} × rows {rows} (the biases fix the sequence length)", nameof(weights));
            if (weights.QueryAgentBias is { } b2 && b2.Length != biasLength)
                throw new ArgumentException($"AgentAttention: agent bias B₂ has {b2.Length} floats, expected heads {attention.Heads} × rows {rows} × agents {options.Agents} (the biases fix the sequence length)", nameof(weights));
            if (rows > 0)
                BidirectionalAgentAttention(x, rows, weights, options, y);
            return;
        }

        ArgumentNullException.ThrowIfNull(state);
        if (weights.AgentKeyBias is not null || weights.QueryAgentBias is not null)
            throw new ArgumentException("AgentAttention: the causal variant has no agent biases (its agents change with every chunk)", nameof(weights));
        if (state.ChunkSize != options.ChunkSize || state.Agents != options.Agents || state.Heads != attention.Heads || state.KvHeads != attention.KvHeads
            || state.HeadDim != attention.HeadDim || state.ConvKernel != options.ConvKernel)
            throw new ArgumentException($"AgentAttention: state was made for (chunk {state.ChunkSize}, agents {state.Agents}, heads {state.Heads}, kv_heads {state.KvHeads}, head_dim {state.HeadDim}, kernel {state.ConvKernel}), not this layer", nameof(state));
        if ((long)state.Length + rows > state.Capacity)
            throw new HorizonException($"agent attention state full: capacity {state.Capacity}, {state.Length} tokens seen, cannot take {rows} more");
        if (rows > 0)
            CausalAgentAttention(x, rows, weights, options, state, y);
    }

    private static void BidirectionalAgentAttention(ReadOnlySpan<float> x, int rows, AgentAttentionWeights weights, AgentAttentionOptions options, Span<float> y)
    {
        AttentionOptions attention = options.Attention;
        int heads = attention.Heads, kvHeads = attention.KvHeads, headDim = attention.HeadDim, agents = options.Agents;
        int queryWidth = heads * headDim, kvWidth = kvHeads * headDim;
        int pad = (options.ConvKernel - 1) / 2;

        float[] queryBuffer = ArrayPool<float>.Shared.Rent(rows * queryWidth);
        float[] keyBuffer = ArrayPool<float>.Shared.Rent(rows * kvWidth);
        float[] paddedBuffer = ArrayPool<float>.Shared.Rent((rows + 2 * pad) * kvWidth);
        float[] agentBuffer = ArrayPool<float>.Shared.Rent(2 * agents * queryWidth);
        float[] attendedBuffer = ArrayPool<float>.Shared.Rent(rows * queryWidth);
        try
        {
            Span<float> queries = queryBuffer.AsSpan(0, rows * queryWidth);                 // Q (N, heads, d)
            Span<float> keys = keyBuffer.AsSpan(0, rows * kvWidth);                         // K (N, kv_heads, d)
            Span<float> padded = paddedBuffer.AsSpan(0, (rows + 2 * pad) * kvWidth);        // [0 (pad) | V (N) | 0 (pad)]
            Span<float> values = padded.Slice(pad * kvWidth, rows * kvWidth);               // V (N, kv_heads, d)
            Span<float> agentTokens = agentBuffer.AsSpan(0, agents * queryWidth);           // A (n, heads, d)
            Span<float> agentValues = agentBuffer.AsSpan(agents * queryWidth, agents * queryWidth); // V_A (n, heads, d)
            Span<float> attended = attendedBuffer.AsSpan(0, rows * queryWidth);             // O (N, heads, d)
            padded[..(pad * kvWidth)].Clear();
            padded[((pad + rows) * kvWidth)..].Clear();
            ProjectQueryKeyValue(x, rows, weights.Projections, attention, 0, queries, keys, values);

            // Agents: adaptive average pooling of the queries over the sequence (official code: AdaptiveAvgPool of q).
            AdaptiveAveragePool(queries, rows, queryWidth, agents, agentTokens);
            // Agent aggregation V_A = softmax(A Kᵀ/√d + B₁) V, then agent broadcast O = softmax(Q Aᵀ/√d + B₂) V_A.
            DenseSoftmaxAttention(agentTokens, agents, heads, keys, values, rows, kvHeads, headDim, weights.AgentKeyBias, agentValues);
            DenseSoftmaxAttention(queries, rows, heads, agentTokens, agentValues, agents, heads, headDim, weights.QueryAgentBias, attended);
            // O += DWC(V), centred taps with zero padding.
            DepthwiseConvolution(padded, rows, heads, kvHeads, headDim, options.ConvKernel, weights.ConvWeight, weights.ConvBias, attended);
            Linear(attended, rows, weights.Projections.Output, weights.Projections.OutputBias, y);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queryBuffer);
            ArrayPool<float>.Shared.Return(keyBuffer);
            ArrayPool<float>.Shared.Return(paddedBuffer);
            ArrayPool<float>.Shared.Return(agentBuffer);
            ArrayPool<float>.Shared.Return(attendedBuffer);
        }
    }

    /// <summary>
    /// The causal variant, chunks of C tokens. The token at position p = c·C + o (chunk c) computes, per query
    /// head h with value head g,
    /// o_h(p) = Σ_{u ∈ U(p)} softmax_u(s_u) w_u + DWC_causal(V)_h(p),
    /// where U(p) holds the n agents of every completed chunk j &lt; c (score q_h(p)·A_{j,h,a}/√d, value
    /// V_A{j,h,a}) and the raw keys of chunk c up to p (score q_h(p)·k_g(t)/√d, value v_g(t)), one softmax over
    /// the union; A_j = AdaptiveAvgPool_C→n(Q_h over chunk j) and V_A{j} = softmax(A_j K_{chunk j}ᵀ/√d) V_{chunk j}.
    /// Everything p reads lies at positions ≤ p.
    /// </summary>
    /// <remarks>
    /// Each segment of new rows that falls in one chunk is one <see cref="CausalAttention(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, int, int, Span{float})"/> call over the keys
    /// [agents of chunks 0 … c − 1 | raw keys of chunk c], laid out per query head (agents differ per head, raw
    /// keys are repeated over the heads of a group); the segment starts at key row c·n + o, so the causal prefix
    /// is exactly U(p). A chunk's agents are pooled when its last token arrives and stored in the state.
    /// </remarks>
    private static void CausalAgentAttention(ReadOnlySpan<float> x, int rows, AgentAttentionWeights weights, AgentAttentionOptions options, AgentAttentionState state, Span<float> y)
    {
        AttentionOptions attention = options.Attention;
        int heads = attention.Heads, kvHeads = attention.KvHeads, headDim = attention.HeadDim;
        int agents = options.Agents, chunkSize = options.ChunkSize, kernel = options.ConvKernel;
        int queryWidth = heads * headDim, kvWidth = kvHeads * headDim;
        int group = heads / kvHeads;
        int start = state.Length;
        int total = start + rows;
        int history = kernel - 1;
        int maxKeys = (total / chunkSize) * agents + chunkSize;

        float[] queryBuffer = ArrayPool<float>.Shared.Rent(rows * queryWidth);
        float[] keyBuffer = ArrayPool<float>.Shared.Rent(rows * kvWidth);
        float[] paddedBuffer = ArrayPool<float>.Shared.Rent((history + rows) * kvWidth);
        float[] attendedBuffer = ArrayPool<float>.Shared.Rent(rows * queryWidth);
        float[] unionKeyBuffer = ArrayPool<float>.Shared.Rent(maxKeys * queryWidth);
        float[] unionValueBuffer = ArrayPool<float>.Shared.Rent(maxKeys * queryWidth);
        try
        {
            Span<float> queries = queryBuffer.AsSpan(0, rows * queryWidth);             // (rows, heads, d)
            Span<float> keys = keyBuffer.AsSpan(0, rows * kvWidth);                     // (rows, kv_heads, d)
            Span<float> padded = paddedBuffer.AsSpan(0, (history + rows) * kvWidth);    // [values of the k − 1 positions before | V (rows)]
            Span<float> values = padded[(history * kvWidth)..];                         // (rows, kv_heads, d)
            Span<float> attended = attendedBuffer.AsSpan(0, rows * queryWidth);         // (rows, heads, d)
            state.ConvHistory.AsSpan().CopyTo(padded);
            ProjectQueryKeyValue(x, rows, weights.Projections, attention, start, queries, keys, values);

            int row = 0;
            while (row < rows)
            {
                int position = start + row;
                int chunk = position / chunkSize;
                int offset = position % chunkSize;
                int count = Math.Min(rows - row, chunkSize - offset);
                queries.Slice(row * queryWidth, count * queryWidth).CopyTo(state.ChunkQueries.AsSpan(offset * queryWidth));
                keys.Slice(row * kvWidth, count * kvWidth).CopyTo(state.ChunkKeys.AsSpan(offset * kvWidth));
                values.Slice(row * kvWidth, count * kvWidth).CopyTo(state.ChunkValues.AsSpan(offset * kvWidth));

                // Key rows: [agents of the completed chunks (chunk · n) | raw keys of this chunk up to the segment's end].
                int agentRows = chunk * agents;
                int keyCount = agentRows + offset + count;
                Span<float> unionKeys = unionKeyBuffer.AsSpan(0, keyCount * queryWidth);
                Span<float> unionValues = unionValueBuffer.AsSpan(0, keyCount * queryWidth);
                state.AgentKeys.AsSpan(0, agentRows * queryWidth).CopyTo(unionKeys);
                state.AgentValues.AsSpan(0, agentRows * queryWidth).CopyTo(unionValues);
                for (int t = 0; t < offset + count; t++)
                {
                    for (int h = 0; h < heads; h++)
                    {
                        int target = ((agentRows + t) * heads + h) * headDim;
                        int source = (t * kvHeads + h / group) * headDim;
                        state.ChunkKeys.AsSpan(source, headDim).CopyTo(unionKeys.Slice(target, headDim));
                        state.ChunkValues.AsSpan(source, headDim).CopyTo(unionValues.Slice(target, headDim));
                    }
                }
                CausalAttention(
                    queries.Slice(row * queryWidth, count * queryWidth), count, heads,
                    unionKeys, unionValues, keyCount, heads, headDim,
                    queryStart: agentRows + offset, attended.Slice(row * queryWidth, count * queryWidth));

                if (offset + count == chunkSize)
                    SummarizeAgentChunk(state, chunk);
                row += count;
            }

            // O += DWC(V) with past taps only: output p reads the values of positions p − k + 1 … p.
            DepthwiseConvolution(padded, rows, heads, kvHeads, headDim, kernel, weights.ConvWeight, weights.ConvBias, attended);
            Linear(attended, rows, weights.Projections.Output, weights.Projections.OutputBias, y);
            padded.Slice(rows * kvWidth, history * kvWidth).CopyTo(state.ConvHistory);
            state.Length = total;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queryBuffer);
            ArrayPool<float>.Shared.Return(keyBuffer);
            ArrayPool<float>.Shared.Return(paddedBuffer);
            ArrayPool<float>.Shared.Return(attendedBuffer);
            ArrayPool<float>.Shared.Return(unionKeyBuffer);
            ArrayPool<float>.Shared.Return(unionValueBuffer);
        }
    }

    /// <summary>
    /// Pools the n agents of the completed chunk <paramref name="chunk"/> from the state's chunk queries and
    /// aggregates their values over the chunk's keys: A = AdaptiveAvgPool_C→n(Q_chunk),
    /// V_A = softmax(A K_chunkᵀ/√d) V_chunk, stored at agent rows chunk·n … chunk·n + n − 1.
    /// </summary>
    private static void SummarizeAgentChunk(AgentAttentionState state, int chunk)
    {
        int queryWidth = state.Heads * state.HeadDim;
        Span<float> agentTokens = state.AgentKeys.AsSpan(chunk * state.Agents * queryWidth, state.Agents * queryWidth);
        Span<float> agentValues = state.AgentValues.AsSpan(chunk * state.Agents * queryWidth, state.Agents * queryWidth);
        AdaptiveAveragePool(state.ChunkQueries, state.ChunkSize, queryWidth, state.Agents, agentTokens);
        DenseSoftmaxAttention(agentTokens, state.Agents, state.Heads, state.ChunkKeys, state.ChunkValues, state.ChunkSize, state.KvHeads, state.HeadDim, null, agentValues);
    }

    /// <summary>
    /// Adaptive average pooling over rows (PyTorch AdaptiveAvgPool bins): output row a is the mean of input rows
    /// ⌊a·L/n⌋ … ⌈(a+1)·L/n⌉ − 1. input (L, width), output (n, width).
    /// </summary>
    private static void AdaptiveAveragePool(ReadOnlySpan<float> input, int length, int width, int bins, Span<float> output)
    {
        for (int a = 0; a < bins; a++)
        {
            int first = (int)((long)a * length / bins);
            int end = (int)(((long)(a + 1) * length + bins - 1) / bins);
            Span<float> target = output.Slice(a * width, width);
            input.Slice(first * width, width).CopyTo(target);
            for (int t = first + 1; t < end; t++)
                TensorPrimitives.Add(target, input.Slice(t * width, width), target);
            TensorPrimitives.Multiply(target, 1f / (end - first), target);
        }
    }

    /// <summary>
    /// Full (unmasked) softmax attention with an optional additive score bias, for the short side of agent
    /// attention: o_h(i) = Σ_j softmax_j(q_h(i)·k_g(j)/√d + bias[h, i, j]) v_g(j), g = h / (heads / kvHeads).
    /// q (queries, heads, d), keys and values (keyCount, kvHeads, d), bias (heads, queries, keyCount) or null,
    /// output (queries, heads, d). Each (row, head) keeps its keyCount scores in scratch.
    /// </summary>
    private static void DenseSoftmaxAttention(
        ReadOnlySpan<float> q, int queries, int heads, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int keyCount, int kvHeads, int headDim,
        float[]? bias, Span<float> output)
    {
        int items = queries * heads;
        int chunks = Parallelism.ChunkCount(items, 2L * items * keyCount * headDim, MinWorkPerChunk);
        fixed (float* qPinned = q, keysPinned = keys, valuesPinned = values, outputPinned = output)
        {
            float* qPointer = qPinned, keysPointer = keysPinned, valuesPointer = valuesPinned, outputPointer = outputPinned;
            int qLength = q.Length, kvLength = keys.Length, outputLength = output.Length;
            Parallelism.For(chunks, keyCount + headDim, (chunk, scratch) =>
            {
                var (first, end) = Parallelism.ChunkRange(items, chunks, chunk);
                DenseSoftmaxItems(
                    new ReadOnlySpan<float>(qPointer, qLength), queries, heads,
                    new ReadOnlySpan<float>(keysPointer, kvLength), new ReadOnlySpan<float>(valuesPointer, kvLength), keyCount, kvHeads, headDim,
                    bias, new Span<float>(outputPointer, outputLength), first, end, scratch);
            });
        }
    }

    private static void DenseSoftmaxItems(
        ReadOnlySpan<float> q, int queries, int heads, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int keyCount, int kvHeads, int headDim,
        float[]? bias, Span<float> output, int first, int end, float[] scratch)
    {
        int group = heads / kvHeads;
        int kvStride = kvHeads * headDim;
        float scale = 1f / MathF.Sqrt(headDim);
        Span<float> scores = scratch.AsSpan(0, keyCount);
        Span<float> scaledQuery = scratch.AsSpan(keyCount, headDim);
        for (int item = first; item < end; item++)
        {
            int row = item / heads, head = item % heads, kvHead = head / group;
            TensorPrimitives.Multiply(q.Slice((row * heads + head) * headDim, headDim), scale, scaledQuery);
            TileKernels.DotRows(scaledQuery, 1, headDim, keys[(kvHead * headDim)..], keyCount, kvStride, headDim, scores, keyCount);
            if (bias is not null)
                TensorPrimitives.Add(scores, bias.AsSpan((head * queries + row) * keyCount, keyCount), scores);
            float max = TensorPrimitives.Max(scores);
            TensorPrimitives.Subtract(scores, max, scores);
            TensorPrimitives.Exp(scores, scores);
            float sum = TensorPrimitives.Sum(scores);
            Span<float> target = output.Slice((row * heads + head) * headDim, headDim);
            target.Clear();
            TileKernels.AccumulateWeightedRows(scores, 1, keyCount, values[(kvHead * headDim)..], keyCount, kvStride, headDim, target, headDim);
            TensorPrimitives.Multiply(target, 1f / sum, target);
        }
    }

    /// <summary>
    /// Depthwise 1-D convolution of the values added to the attention output (the DWC term of Agent Attention):
    /// output[r, h, e] += b[h·d + e] + Σ_τ w[h·d + e, τ] · padded[r + τ, g, e], g = h / (heads / kvHeads).
    /// padded ((rows + kernel − 1), kvHeads, d) holds the values with their padding: (k − 1)/2 zero rows on each
    /// side for the centred (bidirectional) filter, the k − 1 previous positions' values for the causal one.
    /// weight (heads·d, kernel), bias (heads·d) or null, output (rows, heads, d).
    /// </summary>
    private static void DepthwiseConvolution(
        ReadOnlySpan<float> padded, int rows, int heads, int kvHeads, int headDim, int kernel, float[] weight, float[]? bias, Span<float> output)
    {
        int channels = heads * headDim;
        int group = heads / kvHeads;
        int kvWidth = kvHeads * headDim;
        float[] taps = ArrayPool<float>.Shared.Rent(kernel * channels);
        try
        {
            // Transposed filters (kernel, heads·d), so each tap is one elementwise multiply-add over a head's d channels.
            for (int channel = 0; channel < channels; channel++)
                for (int tap = 0; tap < kernel; tap++)
                    taps[tap * channels + channel] = weight[channel * kernel + tap];
            for (int row = 0; row < rows; row++)
            {
                Span<float> outputRow = output.Slice(row * channels, channels);
                if (bias is not null)
                    TensorPrimitives.Add(outputRow, bias, outputRow);
                for (int head = 0; head < heads; head++)
                {
                    Span<float> target = outputRow.Slice(head * headDim, headDim);
                    for (int tap = 0; tap < kernel; tap++)
                    {
                        ReadOnlySpan<float> source = padded.Slice((row + tap) * kvWidth + head / group * headDim, headDim);
                        TensorPrimitives.MultiplyAdd(source, taps.AsSpan(tap * channels + head * headDim, headDim), target, target);
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(taps);
        }
    }
}
