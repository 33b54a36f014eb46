namespace Horizon.Ops;

/// <summary>
/// Weights of an <c>agent_attention</c> node: the q/k/v/o projections of an <c>attention</c> node and the
/// depthwise convolution DWC that restores feature diversity (Han et al. 2024, Agent Attention, the agent attention
/// module with agent bias and DWC), plus the
/// optional agent biases of the bidirectional variant.
/// </summary>
/// <param name="Projections">q [heads·d, hidden], k and v [kv_heads·d, hidden], o [hidden, heads·d], optional biases.</param>
/// <param name="ConvWeight">
/// (heads·d, kernel): one filter per output channel c = h·d + e, which reads channel e of value head
/// h / (heads / kv_heads) (the official code's <c>dwc</c>, groups = channels, for a 1-D sequence).
/// </param>
/// <param name="ConvBias">(heads·d) or null.</param>
/// <param name="AgentKeyBias">
/// B₁ of the agent aggregation, (heads, agents, rows), added to the agent-to-key scores; bidirectional only, the
/// sequence length fixed (the official code interpolates it from 2-D grids for a given image size). Null: none.
/// </param>
/// <param name="QueryAgentBias">B₂ of the agent broadcast, (heads, rows, agents); bidirectional only. Null: none.</param>
public sealed record AgentAttentionWeights(
    AttentionWeights Projections,
    float[] ConvWeight,
    float[]? ConvBias = null,
    float[]? AgentKeyBias = null,
    float[]? QueryAgentBias = null);

/// <summary>Sizes of an <c>agent_attention</c> node.</summary>
/// <param name="Attention">Hidden size, heads, key/value heads and head_dim; Rope must be null (agent attention has no rotary embedding, positions come from the DWC term and the agent biases).</param>
/// <param name="Agents">n: agent tokens per head (per chunk in the causal variant).</param>
/// <param name="ConvKernel">Taps of the depthwise convolution: odd and centred when bidirectional, any size ≥ 1 (past taps only) when causal.</param>
/// <param name="Causal">False: encoder (every token sees the whole sequence, one call, no state). True: the chunked causal variant with a decode state.</param>
/// <param name="ChunkSize">C: tokens per chunk of the causal variant (ignored when bidirectional).</param>
public sealed record AgentAttentionOptions(AttentionOptions Attention, int Agents, int ConvKernel, bool Causal, int ChunkSize = 0)
{
    /// <summary>Throws <see cref="ArgumentException"/> when the sizes are inconsistent.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Attention);
        if (Attention.Rope is not null)
            throw new ArgumentException("agent_attention: RoPE is not supported (the method takes positions from the DWC term and the agent biases)", nameof(Attention));
        if (Agents < 1)
            throw new ArgumentException($"agent_attention: agents {Agents} must be at least 1", nameof(Agents));
        if (ConvKernel < 1)
            throw new ArgumentException($"agent_attention: conv kernel {ConvKernel} must be at least 1", nameof(ConvKernel));
        if (!Causal && ConvKernel % 2 == 0)
            throw new ArgumentException($"agent_attention: the bidirectional conv kernel {ConvKernel} must be odd (centred, zero 'same' padding)", nameof(ConvKernel));
        if (Causal && ChunkSize < 1)
            throw new ArgumentException($"agent_attention: causal chunk size {ChunkSize} must be at least 1", nameof(ChunkSize));
    }
}

/// <summary>
/// The decode state of one causal <c>agent_attention</c> layer. For every completed chunk it keeps n agents and
/// their aggregated values per query head (2 × n × heads × d floats per chunk: fixed per chunk, nothing per token);
/// for the chunk in progress its queries, keys and values; and the values of the last kernel − 1 positions for
/// the causal convolution.
/// </summary>
public sealed class AgentAttentionState
{
    /// <summary>Room for <paramref name="capacity"/> tokens of the layer described by <paramref name="options"/> (causal).</summary>
    /// <exception cref="HorizonException">An array would exceed the largest .NET array.</exception>
    public AgentAttentionState(int capacity, AgentAttentionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        options.Validate();
        if (!options.Causal)
            throw new ArgumentException("AgentAttentionState: the bidirectional variant has no state (it takes the whole sequence in one call)", nameof(options));
        AttentionOptions attention = options.Attention;
        Capacity = capacity;
        ChunkSize = options.ChunkSize;
        Agents = options.Agents;
        Heads = attention.Heads;
        KvHeads = attention.KvHeads;
        HeadDim = attention.HeadDim;
        ConvKernel = options.ConvKernel;
        MaxChunks = capacity / ChunkSize;
        long agentFloats = (long)MaxChunks * Agents * Heads * HeadDim;
        if (agentFloats > Array.MaxLength || (long)ChunkSize * Heads * HeadDim > Array.MaxLength)
            throw new HorizonException($"agent attention state too large: {MaxChunks} chunks × {Agents} agents × heads {Heads} × head_dim {HeadDim} floats");
        AgentKeys = new float[agentFloats];
        AgentValues = new float[agentFloats];
        ChunkQueries = new float[ChunkSize * Heads * HeadDim];
        ChunkKeys = new float[ChunkSize * KvHeads * HeadDim];
        ChunkValues = new float[ChunkSize * KvHeads * HeadDim];
        ConvHistory = new float[(ConvKernel - 1) * KvHeads * HeadDim];
    }

    /// <summary>Tokens the state can take in all.</summary>
    public int Capacity { get; }

    /// <summary>C.</summary>
    public int ChunkSize { get; }

    /// <summary>n: agents per chunk and head.</summary>
    public int Agents { get; }

    public int Heads { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public int ConvKernel { get; }

    /// <summary>Completed chunks the agent arrays have room for, ⌊capacity / C⌋.</summary>
    public int MaxChunks { get; }

    /// <summary>Tokens seen so far (positions 0 … Length − 1).</summary>
    public int Length { get; internal set; }

    /// <summary>Completed chunks, ⌊Length / C⌋; their agents are the first CompletedChunks × n rows of the agent arrays.</summary>
    public int CompletedChunks => Length / ChunkSize;

    /// <summary>(chunks · n, heads, d): agent a of chunk j in row j·n + a, the mean of the chunk's queries over its pooling bin.</summary>
    public float[] AgentKeys { get; }

    /// <summary>(chunks · n, heads, d): the aggregated values V_A of those agents over the keys of their chunk.</summary>
    public float[] AgentValues { get; }

    /// <summary>(C, heads, d): queries of the chunk in progress, positions CompletedChunks·C … Length − 1.</summary>
    public float[] ChunkQueries { get; }

    /// <summary>(C, kv_heads, d): keys of the chunk in progress.</summary>
    public float[] ChunkKeys { get; }

    /// <summary>(C, kv_heads, d): values of the chunk in progress.</summary>
    public float[] ChunkValues { get; }

    /// <summary>(kernel − 1, kv_heads, d): values of positions Length − kernel + 1 … Length − 1, zeros before position 0.</summary>
    public float[] ConvHistory { get; }

    /// <summary>Floats the state holds for its completed chunks: 2 × n × heads × d per chunk.</summary>
    public long AgentFloatsInUse => 2L * CompletedChunks * Agents * Heads * HeadDim;

    /// <summary>Forgets every token.</summary>
    public void Reset()
    {
        Length = 0;
        Array.Clear(ConvHistory);
    }
}

/// <summary>
/// <c>agent_attention</c> (Han et al. 2024, "Agent Attention: On the Integration of Softmax and Linear Attention",
/// eq. 3–6): n agent tokens A pooled from the queries aggregate the values, V_A = softmax(A Kᵀ/√d + B₁) V, and
/// broadcast them back, O = softmax(Q Aᵀ/√d + B₂) V_A, plus a depthwise convolution of V. Bidirectional (the
/// paper's encoder form, one call over the whole sequence) or causal (chunked; see
/// docs/ops/agent_attention.md for how causality is kept exactly).
/// </summary>
public static class AgentAttention
{
    /// <summary>
    /// x is (rows, hidden), y is (rows, hidden); y must not overlap x. Bidirectional: x is the whole sequence and
    /// <paramref name="state"/> must be null. Causal: the rows are the tokens at positions state.Length …
    /// state.Length + rows − 1 and the state moves past them.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, AgentAttentionWeights weights, AgentAttentionOptions options, AgentAttentionState? state, Span<float> y) =>
        Cpu.CpuKernels.AgentAttentionLayer(x, rows, weights, options, state, y);
}
