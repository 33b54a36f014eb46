using System.Text.Json;

namespace Horizon.Ops;

/// <summary>
/// Weights of a <c>block_transformer</c> (Ho et al. 2024, "Block Transformer: Global-to-Local Language Modeling for
/// Fast Inference", § 2), named as the official code's <c>BlockTransformer</c> module saves them
/// (checkpoint-N/model.safetensors; see docs/ops/block_transformer.md). With L_B the block length, D_B and D_T the
/// block and token decoder widths, R the prefix length and V the vocabulary:
/// <list type="bullet">
/// <item><see cref="EmbedderEmbeddings"/> <c>embedder.embeddings.weight</c> [V, D_B / L_B] (lookup embedder).</item>
/// <item><see cref="BlockDecoder"/> <c>block_decoder.gpt_neox.layers.N.*</c> and
/// <c>block_decoder.gpt_neox.final_layer_norm.*</c>. (The checkpoint also holds an unused
/// <c>block_decoder.gpt_neox.embed_in.weight</c>: the block decoder takes embeddings, not ids.)</item>
/// <item><see cref="ExpansionWeight"/> <c>token_decoder.expansion_layer.weight</c>, a Conv1d(kernel 1) stored
/// [R·D_T, D_B, 1], bound as [R·D_T, D_B]; <see cref="ExpansionBias"/> <c>token_decoder.expansion_layer.bias</c>
/// [R·D_T].</item>
/// <item><see cref="TokenEmbeddings"/> <c>token_decoder.gpt_neox.embed_in.weight</c> [V, D_T].</item>
/// <item><see cref="TokenDecoder"/> <c>token_decoder.gpt_neox.layers.N.*</c>, <c>token_decoder.gpt_neox.final_layer_norm.*</c>.</item>
/// <item><see cref="LmHead"/> <c>token_decoder.embed_out.weight</c> [V, D_T] (no bias).</item>
/// </list>
/// </summary>
public sealed record BlockTransformerWeights(
    Matrix EmbedderEmbeddings,
    GptNeoXStackWeights BlockDecoder,
    Matrix ExpansionWeight,
    float[]? ExpansionBias,
    Matrix TokenEmbeddings,
    GptNeoXStackWeights TokenDecoder,
    Matrix LmHead)
{
    /// <summary>
    /// Binds every weight by its official name (see the type's summary). The expansion layer's Conv1d weight is
    /// accepted as [R·D_T, D_B, 1] (as saved) or [R·D_T, D_B]. <c>block_decoder.gpt_neox.embed_in.weight</c> is
    /// left unbound: the official block decoder keeps it but never uses it.
    /// </summary>
    public static BlockTransformerWeights FromCheckpoint(ModelDirectory checkpoint, BlockTransformerOptions options)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(options);
        int blockHidden = options.BlockDecoder.Hidden, tokenHidden = options.TokenDecoder.Hidden, prefixWidth = options.PrefixLength * tokenHidden;
        const string expansion = "token_decoder.expansion_layer.weight";
        var (info, data) = checkpoint.Get(expansion);
        if (!(info.Shape.SequenceEqual([prefixWidth, blockHidden, 1L]) || info.Shape.SequenceEqual([prefixWidth, blockHidden])))
            throw new ModelLoadException($"{checkpoint.Path}: tensor '{expansion}' has shape [{string.Join(", ", info.Shape)}], expected [{prefixWidth}, {blockHidden}, 1]");
        var dtype = info.DType switch
        {
            SafeTensorsDType.F32 => WeightDType.F32,
            SafeTensorsDType.F16 => WeightDType.F16,
            SafeTensorsDType.BF16 => WeightDType.BF16,
            _ => throw new ModelLoadException($"{checkpoint.Path}: tensor '{expansion}' has dtype {info.DType}; weights must be F32, F16 or BF16"),
        };
        return new BlockTransformerWeights(
            checkpoint.Matrix("embedder.embeddings.weight", checkpoint.Get("embedder.embeddings.weight").Info.Shape is [long rows, _] ? (int)rows : 0, options.EmbedderHidden),
            GptNeoXStackWeights.FromCheckpoint(checkpoint, "block_decoder.gpt_neox.", options.BlockDecoder, options.BlockDecoderLayers),
            new Matrix(expansion, prefixWidth, blockHidden, dtype, data),
            checkpoint.OptionalVector("token_decoder.expansion_layer.bias", prefixWidth),
            checkpoint.Matrix("token_decoder.gpt_neox.embed_in.weight", checkpoint.Get("token_decoder.gpt_neox.embed_in.weight").Info.Shape is [long vocab, _] ? (int)vocab : 0, tokenHidden),
            GptNeoXStackWeights.FromCheckpoint(checkpoint, "token_decoder.gpt_neox.", options.TokenDecoder, options.TokenDecoderLayers),
            checkpoint.Matrix("token_decoder.embed_out.weight", options.VocabSize, tokenHidden));
    }
}

/// <summary>
/// The token decoder's prefix projection in a two-level spec (<c>levels.token_decoder.prefix_projection</c>): the
/// Block Transformer's expansion layer, a Conv1d of kernel 1 from the block decoder's width D_B to R·D_T, i.e. the
/// linear map [p_0 | … | p_{R−1}] = W g + b that turns one context embedding into R prefix vectors of the token decoder.
/// </summary>
/// <param name="Weight">[R·D_T, D_B] (stored [R·D_T, D_B, 1] or [R·D_T, D_B]).</param>
/// <param name="Bias">[R·D_T], or null for none.</param>
public sealed record PrefixProjectionWeights(Matrix Weight, float[]? Bias);

/// <summary>
/// Sizes of a <c>block_transformer</c> with the official main configuration (lookup embedder with concat
/// projection and one embedding per block, GPT-NeoX block and token decoders, "prefix" decoding strategy with a
/// Conv1d expansion layer).
/// </summary>
/// <param name="BlockLength">L_B, tokens per block (config <c>block_length</c>; 4 in every main checkpoint).</param>
/// <param name="PrefixLength">R, prefix vectors the expansion layer makes from one context embedding (token decoder
/// <c>expansion_ratio</c>; 2 in every main checkpoint).</param>
/// <param name="VocabSize">V, rows of <c>embed_out</c>: the width of a logits row.</param>
/// <param name="BlockDecoder">The block decoder's layer options (hidden D_B).</param>
/// <param name="BlockDecoderLayers">Layers of the block decoder.</param>
/// <param name="TokenDecoder">The token decoder's layer options (hidden D_T).</param>
/// <param name="TokenDecoderLayers">Layers of the token decoder.</param>
public sealed record BlockTransformerOptions(
    int BlockLength,
    int PrefixLength,
    int VocabSize,
    GptNeoXOptions BlockDecoder,
    int BlockDecoderLayers,
    GptNeoXOptions TokenDecoder,
    int TokenDecoderLayers)
{
    /// <summary>The id that fills the first block's left padding (the tokenizer's pad id; Pythia has none and the
    /// official data pipeline pads with EOS = 0). Config <c>pad_token_id</c>, else <c>eos_token_id</c>, else 0.</summary>
    public int PadTokenId { get; init; }

    /// <summary>
    /// P, pad tokens placed before the first token so that token t sits at stream position t + P (0 ≤ P &lt; L_B).
    /// The first block is never predicted (it has no context embedding), so a token's log-prob is defined only when
    /// its stream position is ≥ L_B. Null: L_B − 1, which puts token 0 at the end of block 0 and gives every later
    /// token a prediction (the official data pipeline pads the first block by a random 0 … L_B − 1; its generate()
    /// left-pads so the prompt ends on a block boundary). A state may override it (<see cref="BlockTransformerState.Reset(int)"/>).
    /// </summary>
    public int? FirstBlockPadding { get; init; }

    /// <summary>The P a new state uses: <see cref="FirstBlockPadding"/> or L_B − 1.</summary>
    public int DefaultFirstBlockPadding => FirstBlockPadding ?? BlockLength - 1;

    /// <summary>Width of one lookup, D_B / L_B (the embedder's <c>hidden_size</c>).</summary>
    public int EmbedderHidden => BlockDecoder.Hidden / BlockLength;

    /// <summary>Bound on the token decoder's local cache, R + L_B − 1 entries per layer: the prefix and the first
    /// L_B − 1 tokens of the block (the last token of a block is never fed to the token decoder).</summary>
    public int LocalCapacity => PrefixLength + BlockLength - 1;

    /// <summary>Complete blocks, hence block-decoder cache entries, of a session of <paramref name="tokens"/> tokens
    /// after <paramref name="firstBlockPadding"/> pads: ⌊(tokens + P) / L_B⌋.</summary>
    public int BlockCapacity(int tokens, int firstBlockPadding) => (int)(((long)tokens + firstBlockPadding) / BlockLength);

    /// <summary>Throws <see cref="ArgumentException"/> unless the sizes fit together.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(BlockDecoder);
        ArgumentNullException.ThrowIfNull(TokenDecoder);
        BlockDecoder.Validate();
        TokenDecoder.Validate();
        if (BlockLength <= 0 || PrefixLength <= 0 || VocabSize <= 0 || BlockDecoderLayers <= 0 || TokenDecoderLayers <= 0)
            throw new ArgumentException($"block_transformer: sizes must be positive (block_length {BlockLength}, prefix {PrefixLength}, vocab {VocabSize}, layers {BlockDecoderLayers}/{TokenDecoderLayers})");
        if (BlockDecoder.Hidden % BlockLength != 0)
            throw new ArgumentException($"block_transformer: block decoder hidden {BlockDecoder.Hidden} is not a multiple of block_length {BlockLength} (concat of {BlockLength} lookups)");
        if (PadTokenId < 0)
            throw new ArgumentException($"block_transformer: pad_token_id {PadTokenId} is negative");
        if (FirstBlockPadding is int p && (p < 0 || p >= BlockLength))
            throw new ArgumentException($"block_transformer: first block padding {p} must be in [0, block_length {BlockLength})");
    }

    /// <summary>
    /// Reads the Block Transformer config.json that tests/golden/make_block_transformer_golden.py writes (the official
    /// code has no config.json; its Hydra YAML sections are mirrored with every sub-config resolved):
    /// <c>block_length</c>; <c>embedder</c> {<c>cls</c> "lookup", <c>n_embedding_tokens</c> 1,
    /// <c>projection_method</c> "concat", <c>config</c> {<c>hidden_size</c> = D_B / L_B, <c>vocab_size</c>}};
    /// <c>block_decoder</c> {<c>cls</c> "gpt-neo-x", <c>config</c> = a GPTNeoXConfig}; <c>token_decoder</c>
    /// {<c>cls</c> "gpt-neo-x", <c>decoding_strategy</c> "prefix", <c>expansion_method</c> "expansion_layer",
    /// <c>expansion_ratio</c> R, <c>config</c> = a GPTNeoXConfig}; <c>pad_token_id</c> / <c>eos_token_id</c>.
    /// Other embedders, strategies and n_embedding_tokens ≠ 1 are refused by name.
    /// </summary>
    public static BlockTransformerOptions FromConfig(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int blockLength = config.Positive(config.GetInt("block_length"), "block_length");

        var embedder = Section(config, "embedder");
        RequireString(config, embedder, "embedder", "cls", "lookup");
        RequireString(config, embedder, "embedder", "projection_method", "concat");
        if (embedder.TryGetProperty("n_embedding_tokens", out var n) && n.ValueKind == JsonValueKind.Number && n.GetInt32() != 1)
            throw new ModelLoadException($"{config.Path}: embedder.n_embedding_tokens = {n.GetInt32()} is not supported (supported: 1, as in every main checkpoint)");

        var blockSection = Section(config, "block_decoder");
        RequireString(config, blockSection, "block_decoder", "cls", "gpt-neo-x");
        var blockConfig = SubConfig(config, blockSection, "block_decoder");
        var tokenSection = Section(config, "token_decoder");
        RequireString(config, tokenSection, "token_decoder", "cls", "gpt-neo-x");
        RequireString(config, tokenSection, "token_decoder", "decoding_strategy", "prefix");
        RequireString(config, tokenSection, "token_decoder", "expansion_method", "expansion_layer");
        if (!tokenSection.TryGetProperty("expansion_ratio", out var ratio) || ratio.ValueKind != JsonValueKind.Number || ratio.GetInt32() <= 0)
            throw new ModelLoadException($"{config.Path}: token_decoder.expansion_ratio must be a positive integer");
        var tokenConfig = SubConfig(config, tokenSection, "token_decoder");

        var blockDecoder = GptNeoXOptions.FromConfig(blockConfig);
        var tokenDecoder = GptNeoXOptions.FromConfig(tokenConfig);
        int embedderHidden = config.DivideExactly(blockDecoder.Hidden, "block_decoder.config.hidden_size", blockLength, "block_length");
        if (embedder.TryGetProperty("config", out var embedderConfig) && embedderConfig.ValueKind == JsonValueKind.Object
            && embedderConfig.TryGetProperty("hidden_size", out var eh) && eh.ValueKind == JsonValueKind.Number && eh.GetInt32() != embedderHidden)
            throw new ModelLoadException($"{config.Path}: embedder.config.hidden_size = {eh.GetInt32()} must be block_decoder hidden_size / block_length = {embedderHidden}");

        int pad = config.TryGetInt("pad_token_id") ?? (config.GetTokenIds("eos_token_id") is [int eos, ..] ? eos : 0);
        return new BlockTransformerOptions(
            blockLength, ratio.GetInt32(), config.Positive(tokenConfig.GetInt("vocab_size"), "token_decoder.config.vocab_size"),
            blockDecoder, config.Positive(blockConfig.GetInt("num_hidden_layers"), "block_decoder.config.num_hidden_layers"),
            tokenDecoder, config.Positive(tokenConfig.GetInt("num_hidden_layers"), "token_decoder.config.num_hidden_layers"))
        {
            PadTokenId = pad,
        };

        static JsonElement Section(ModelConfig config, string key)
        {
            if (!config.TryGet(key, out var section) || section.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"{config.Path}: block transformer config needs an object '{key}'");
            return section;
        }

        static void RequireString(ModelConfig config, JsonElement section, string sectionName, string key, string expected)
        {
            if (section.TryGetProperty(key, out var value) && value.ValueKind == JsonValueKind.String && value.GetString() != expected)
                throw new ModelLoadException($"{config.Path}: {sectionName}.{key} = '{value.GetString()}' is not supported (supported: '{expected}')");
        }

        static ModelConfig SubConfig(ModelConfig config, JsonElement section, string sectionName)
        {
            if (!section.TryGetProperty("config", out var sub) || sub.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"{config.Path}: {sectionName} needs an object 'config' (a GPTNeoXConfig)");
            return ModelConfig.Parse(sub.GetRawText(), $"{config.Path} ({sectionName}.config)");
        }
    }
}

/// <summary>
/// The per-session state of a <c>block_transformer</c>:
/// <list type="bullet">
/// <item><see cref="BlockCaches"/>: one <see cref="KvCache"/> per block-decoder layer over <b>blocks</b> — one entry
/// per complete block, ⌊(tokens + P)/L_B⌋ at most, heads_B × head_dim_B keys and values each.</item>
/// <item><see cref="LocalCaches"/>: one <see cref="KvCache"/> per token-decoder layer over the current block only:
/// the R prefix vectors and the block's tokens so far, never more than R + L_B − 1 entries, emptied and refilled
/// every time a block completes.</item>
/// <item>The tokens of the incomplete block (at most L_B − 1), which the embedder needs once the block completes.</item>
/// </list>
/// Stream positions count the P pad tokens of the first block: token t is at stream position t + P.
/// </summary>
public sealed class BlockTransformerState : IBlockModelState
{
    private readonly KvCache[] _blockCaches;
    private readonly KvCache[] _localCaches;

    /// <summary>An empty state for up to <paramref name="capacity"/> tokens, padded by <paramref name="firstBlockPadding"/>
    /// (null: <see cref="BlockTransformerOptions.DefaultFirstBlockPadding"/>).</summary>
    public BlockTransformerState(BlockTransformerOptions options, int capacity, int? firstBlockPadding = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        options.Validate();
        Options = options;
        Capacity = capacity;
        int padding = firstBlockPadding ?? options.DefaultFirstBlockPadding;
        CheckPadding(padding);
        // Room for the most blocks any padding can complete, so Reset(padding) never reallocates.
        int blocks = Math.Max(1, options.BlockCapacity(capacity, options.BlockLength - 1));
        _blockCaches = GptNeoXStack.CreateCaches(options.BlockDecoder, options.BlockDecoderLayers, blocks);
        _localCaches = GptNeoXStack.CreateCaches(options.TokenDecoder, options.TokenDecoderLayers, options.LocalCapacity);
        PendingTokens = new int[options.BlockLength];
        Reset(padding);
    }

    /// <summary>The options the caches were sized for.</summary>
    public BlockTransformerOptions Options { get; }

    /// <summary>Tokens the state can hold.</summary>
    public int Capacity { get; }

    /// <summary>Tokens seen (the pads of the first block not counted).</summary>
    public int Length { get; internal set; }

    /// <summary>P: pad tokens before token 0.</summary>
    public int FirstBlockPadding { get; private set; }

    /// <summary>L_B, tokens per block.</summary>
    public int BlockLength => Options.BlockLength;

    /// <summary>Stream positions seen, P + <see cref="Length"/>.</summary>
    public long StreamLength => (long)FirstBlockPadding + Length;

    /// <summary>Complete blocks, i.e. entries of every block-decoder cache.</summary>
    public int Blocks => _blockCaches[0].Length;

    /// <summary>Entries of every token-decoder cache (≤ <see cref="BlockTransformerOptions.LocalCapacity"/>).</summary>
    public int LocalLength => _localCaches[0].Length;

    /// <summary>One cache per block-decoder layer, one entry per complete block.</summary>
    public IReadOnlyList<KvCache> BlockCaches => _blockCaches;

    /// <summary>One cache per token-decoder layer, capacity R + L_B − 1.</summary>
    public IReadOnlyList<KvCache> LocalCaches => _localCaches;

    /// <summary>(L_B): entries 0 … (StreamLength mod L_B) − 1 are the tokens (or pads) of the incomplete block.</summary>
    internal int[] PendingTokens { get; }

    /// <summary>
    /// Bytes the state takes when full: block caches sized for the capacity, local caches for R + L_B − 1 entries
    /// (the caches are paged and hold only the pages their entries fill so far; see <see cref="KvCache.ByteSize"/>).
    /// </summary>
    public long ByteSize
    {
        get
        {
            long bytes = 4L * PendingTokens.Length;
            foreach (var cache in _blockCaches)
                bytes += cache.MaxByteSize;
            foreach (var cache in _localCaches)
                bytes += cache.MaxByteSize;
            return bytes;
        }
    }

    /// <summary>Forgets every token; keeps the current first-block padding.</summary>
    public void Reset() => Reset(FirstBlockPadding);

    /// <summary>Forgets every token and places <paramref name="firstBlockPadding"/> pads (0 ≤ P &lt; L_B) before the next token 0.</summary>
    public void Reset(int firstBlockPadding)
    {
        CheckPadding(firstBlockPadding);
        foreach (var cache in _blockCaches)
            cache.Reset();
        foreach (var cache in _localCaches)
            cache.Reset();
        FirstBlockPadding = firstBlockPadding;
        Length = 0;
        Array.Fill(PendingTokens, Options.PadTokenId, 0, firstBlockPadding);
    }

    /// <summary>Makes this state a copy of <paramref name="other"/> (forking a session); options and capacity must match.</summary>
    public void CopyFrom(BlockTransformerState other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (ReferenceEquals(other, this))
            return;
        if (other.Capacity != Capacity || other.Options.BlockLength != Options.BlockLength || other.Options.PrefixLength != Options.PrefixLength
            || other.Options.PadTokenId != Options.PadTokenId || !SameShapes(other._blockCaches, _blockCaches) || !SameShapes(other._localCaches, _localCaches))
            throw new ArgumentException(
                $"block_transformer state: cannot copy a state of capacity {other.Capacity}, block_length {other.Options.BlockLength}, " +
                $"{other._blockCaches.Length}/{other._localCaches.Length} layers into one of capacity {Capacity}, block_length {Options.BlockLength}, " +
                $"{_blockCaches.Length}/{_localCaches.Length} layers", nameof(other));
        for (int i = 0; i < _blockCaches.Length; i++)
            CopyCache(other._blockCaches[i], _blockCaches[i]);
        for (int i = 0; i < _localCaches.Length; i++)
            CopyCache(other._localCaches[i], _localCaches[i]);
        other.PendingTokens.CopyTo(PendingTokens, 0);
        FirstBlockPadding = other.FirstBlockPadding;
        Length = other.Length;

        static bool SameShapes(KvCache[] a, KvCache[] b)
        {
            if (a.Length != b.Length)
                return false;
            for (int i = 0; i < a.Length; i++)
            {
                if (a[i].Capacity != b[i].Capacity || a[i].KvHeads != b[i].KvHeads || a[i].HeadDim != b[i].HeadDim)
                    return false;
            }
            return true;
        }

        // Copy-on-write: the full pages of the source are shared, only its partial last page is copied.
        static void CopyCache(KvCache source, KvCache target) => target.CopyFrom(source);
    }

    private void CheckPadding(int padding)
    {
        if (padding < 0 || padding >= Options.BlockLength)
            throw new ArgumentOutOfRangeException(nameof(padding), padding, $"first block padding must be in [0, block_length {Options.BlockLength})");
    }
}

/// <summary>
/// <c>block_transformer</c>: the global-to-local two-level language model of Ho et al. 2024, § 2, in the official
/// code's main configuration. With s the token stream after P pads, blocks B_b = s[b·L_B … (b+1)·L_B − 1]:
/// <list type="number">
/// <item>Embedder (§ 2.1, lookup + concat): e_b = concat_r E[s_{b·L_B + r}] ∈ ℝ^{D_B}.</item>
/// <item>Block decoder (§ 2.2): g_0 … g_b = final_ln(GPT-NeoX_B(e_0 … e_b)), causal over blocks, position b.</item>
/// <item>Token decoder (§ 2.3, prefix strategy): the context embedding of the previous block becomes R prefix
/// vectors [p_{b,0} | … | p_{b,R−1}] = W_x g_{b−1} + b_x; the local sequence is [p_{b,0} … p_{b,R−1}, T[s_{b·L_B}] …
/// T[s_{b·L_B + L_B − 2}]] at local positions 0 …; the output at local index R − 1 + r gives
/// logits(s_{b·L_B + r}) = W_out final_ln(GPT-NeoX_T(·)).</item>
/// </list>
/// Block 0 is never predicted; the first token of block b is predicted from g_{b−1} alone (through the prefix).
/// </summary>
public static class BlockTransformer
{
    /// <summary>
    /// Runs <paramref name="tokens"/> (n ids) after the tokens <paramref name="state"/> holds and writes logits
    /// (n, V): row t is the distribution of the token that follows tokens[t]. A row whose next token falls in the
    /// first block (stream position &lt; L_B, only when P &lt; L_B − 1) has no prediction and is filled with NaN.
    /// Prefill and decode are the same call; decode costs one token-decoder row over at most R + L_B − 1 local keys
    /// per token, plus one block-decoder row and R prefix rows when the token completes a block.
    /// </summary>
    /// <exception cref="HorizonException">A token id is out of range or the state is full; nothing changes then.</exception>
    public static void Forward(ReadOnlySpan<int> tokens, BlockTransformerWeights weights, BlockTransformerOptions options, BlockTransformerState state, Span<float> logits) =>
        Cpu.BlockTransformerKernels.Forward(tokens, weights, options, state, logits);
}
