namespace Horizon.Generators.Model
{
    // The pipeline model of one spec: what the emitter needs, nothing that points back into the compilation or
    // the JSON text. Diagnostics are all decided by the parser, so no source positions live here either: an edit
    // that only moves text around (a blank line, re-indenting) yields an equal model and re-emits nothing.

    internal enum SymbolType
    {
        Int,
        Float,
        Bool,

        /// <summary>A float that may be absent: <c>"type": "float"</c> with <c>"default": null</c> (C# <c>float?</c>).</summary>
        OptionalFloat,

        /// <summary>
        /// <c>"type": "gelu"</c>: a GELU variant read from an activation name (Hugging Face <c>hidden_act</c>: gelu is
        /// exact, gelu_new / gelu_fast / gelu_pytorch_tanh the tanh approximation); C# <c>Horizon.Ops.GeluApproximation</c>.
        /// </summary>
        Gelu,
    }

    /// <summary>A size: a positive int literal, or the name of an int symbol.</summary>
    internal sealed record IntValue(int Literal, string? Symbol)
    {
        public static IntValue Of(int literal) => new IntValue(literal, null);

        public static IntValue OfSymbol(string symbol) => new IntValue(0, symbol);
    }

    /// <summary>A float (an <c>eps</c>): a number literal, or the name of a float symbol.</summary>
    internal sealed record FloatValue(double Literal, string? Symbol);

    /// <summary>A GELU variant (gelu_mlp's <c>approximation</c>): "none"/"tanh", or the name of a gelu symbol.</summary>
    internal sealed record GeluValue(GeluApproximation Literal, string? Symbol);

    /// <summary>A flag (<c>qkv_bias</c>, <c>tied</c>, ...): true/false, or the name of a bool symbol.</summary>
    internal sealed record FlagValue(bool Literal, string? Symbol)
    {
        public static readonly FlagValue False = new FlagValue(false, null);

        /// <summary>True when the flag is the literal <c>false</c>, so code guarded by it can be left out.</summary>
        public bool IsAlwaysFalse => Symbol is null && !Literal;

        public bool IsAlwaysTrue => Symbol is null && Literal;
    }

    internal enum IntOperator
    {
        /// <summary><c>a * b</c>.</summary>
        Multiply,

        /// <summary><c>a / b</c>: exact division (a remainder is an error).</summary>
        Divide,

        /// <summary><c>a // b</c>: division rounded down (Python's <c>//</c>).</summary>
        FloorDivide,

        /// <summary><c>a round_up_to b</c>: the smallest multiple of b that is at least a.</summary>
        RoundUpTo,
    }

    /// <summary>One step of an int expression: the operator and its right operand.</summary>
    internal sealed record IntOperation(IntOperator Operator, IntValue Operand);

    /// <summary>
    /// The default of an int symbol: <see cref="First"/>, then each operation applied to the value so far, left to
    /// right (<c>hidden_size * hidden_ratio * 2 // 3 round_up_to 256</c>), over literals and int symbols.
    /// </summary>
    internal sealed record IntExpression(IntValue First, EquatableArray<IntOperation> Operations)
    {
        public static IntExpression Of(IntValue value) => new IntExpression(value, EquatableArray<IntOperation>.Empty);
    }

    /// <summary>
    /// A symbol: a typed value bound once at load, from config.json key <see cref="ConfigKey"/> when present there,
    /// else from its default.
    /// </summary>
    internal sealed record SymbolSpec(
        string Name,
        string PropertyName,
        SymbolType Type,
        string? ConfigKey,
        IntExpression? IntDefault,
        double? FloatDefault,
        string? FloatDefaultSymbol,
        bool? BoolDefault,
        string? GeluDefault)
    {
        /// <summary>The name load-time errors use: the config.json key a user would edit, else the symbol.</summary>
        public string DisplayName => ConfigKey ?? Name;
    }

    /// <summary>One node of a block: a norm, a mixer or an MLP. Each kind is a record deriving from this.</summary>
    internal abstract record NodeSpec(string Name, string PropertyName)
    {
        /// <summary>The JSON <c>kind</c> string.</summary>
        public abstract string Kind { get; }
    }

    internal sealed record RmsNormSpec(string Name, string PropertyName, string Weight, FloatValue Eps)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.RmsNorm;
    }

    internal enum RopeMode
    {
        None,
        Config,
    }

    internal sealed record AttentionSpec(
        string Name,
        string PropertyName,
        IntValue Heads,
        IntValue KvHeads,
        IntValue HeadDim,
        FlagValue QkvBias,
        FlagValue OutputBias,
        RopeMode Rope,
        string QueryWeight,
        string KeyWeight,
        string ValueWeight,
        string OutputWeight)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.Attention;
    }

    internal sealed record SwiGluMlpSpec(
        string Name,
        string PropertyName,
        IntValue Intermediate,
        string GateWeight,
        string UpWeight,
        string DownWeight,
        string? FusedGateUpWeight)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.SwiGluMlp;
    }

    internal sealed record LayerNormSpec(string Name, string PropertyName, string Weight, string? Bias, FloatValue Eps)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.LayerNorm;
    }

    internal sealed record GlaSpec(
        string Name,
        string PropertyName,
        IntValue Heads,
        IntValue KvHeads,
        FloatValue ExpandK,
        FloatValue ExpandV,
        IntValue GateRank,
        FlagValue ShortConv,
        IntValue? ConvSize,
        FlagValue OutputGate,
        FloatValue? ClampMin,
        FloatValue NormEps,
        FlagValue NormAffine,
        string QueryWeight,
        string KeyWeight,
        string ValueWeight,
        string GateDownWeight,
        string GateUpWeight,
        string OutputWeight,
        string? OutputGateWeight,
        EquatableArray<string> NormWeights,
        string? QueryConvWeight,
        string? KeyConvWeight,
        string? ValueConvWeight)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.Gla;
    }

    internal sealed record LinearAttentionSpec(
        string Name,
        string PropertyName,
        IntValue Heads,
        IntValue KvHeads,
        FloatValue ExpandK,
        FloatValue ExpandV,
        FlagValue OutputNorm,
        FloatValue NormEps,
        FlagValue NormAffine,
        FlagValue OutputGate,
        string QueryWeight,
        string KeyWeight,
        string ValueWeight,
        string OutputWeight,
        string? OutputGateWeight,
        string? NormWeight)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.LinearAttention;
    }

    /// <summary><c>sliding_window_attention</c>: the projections of <see cref="Attention"/>, a window and global positions.</summary>
    internal sealed record SlidingWindowAttentionSpec(
        string Name,
        string PropertyName,
        AttentionSpec Attention,
        IntValue Window,
        EquatableArray<int> GlobalPositions)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.SlidingWindowAttention;
    }

    internal sealed record CcaAttentionSpec(string Name, string PropertyName, AttentionSpec Attention, IntValue GroupSize, IntValue Window)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.CcaAttention;
    }

    /// <summary><c>agent_attention</c>, the causal variant; <see cref="Attention"/> has no RoPE.</summary>
    internal sealed record AgentAttentionSpec(
        string Name,
        string PropertyName,
        AttentionSpec Attention,
        IntValue Agents,
        IntValue ChunkSize,
        IntValue ConvKernel,
        FlagValue ConvBias,
        string ConvWeight)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.AgentAttention;
    }

    /// <summary><c>hyena</c>: HyenaDNA's operator; its tensors are the HF names under <see cref="Module"/>.</summary>
    internal sealed record HyenaSpec(
        string Name,
        string PropertyName,
        IntValue MaxLength,
        IntValue EmbeddingDim,
        IntValue FilterOrder,
        IntValue InnerMlps,
        IntValue ShortFilterWidth,
        IntValue Order,
        FloatValue ActivationFrequency,
        string Module)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.Hyena;
    }

    internal enum GeluApproximation
    {
        None,
        Tanh,
    }

    internal sealed record GeluMlpSpec(
        string Name,
        string PropertyName,
        IntValue Intermediate,
        GeluValue Approximation,
        FlagValue Bias,
        string Fc1Weight,
        string Fc2Weight)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.GeluMlp;
    }

    /// <summary>
    /// <c>gpt_neox_attention</c>: GPT-NeoX's attention, one fused per-head q|k|v projection and partial rotary
    /// embedding (rotary_dim = int(head_dim · rotary_pct) of each head); head_dim = width / heads; no key/value grouping.
    /// </summary>
    internal sealed record GptNeoXAttentionSpec(
        string Name,
        string PropertyName,
        IntValue Heads,
        FloatValue RotaryPct,
        FloatValue RopeTheta,
        FlagValue QkvBias,
        FlagValue OutputBias,
        string QueryKeyValueWeight,
        string OutputWeight)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.GptNeoXAttention;
    }

    /// <summary>Where one checkpoint layout keeps an MoE block's tensors (names under the layer prefix).</summary>
    internal sealed record MoeLayoutSpec(
        string Module,
        string Router,
        string Experts,
        string Gate,
        string Up,
        string Down,
        string? SharedExpert,
        string? SharedExpertGate);

    /// <summary>The dense SwiGLU MLP of the layers that config.json says are not MoE layers (Qwen2-MoE).</summary>
    internal sealed record DenseFallbackSpec(IntValue Intermediate, string GateWeight, string UpWeight, string DownWeight);

    internal sealed record MoeSpec(
        string Name,
        string PropertyName,
        IntValue Experts,
        IntValue TopK,
        IntValue Intermediate,
        FlagValue NormalizeTopK,
        IntValue? SharedIntermediate,
        EquatableArray<MoeLayoutSpec> Layouts,
        DenseFallbackSpec? DenseFallback)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.Moe;
    }

    /// <summary>
    /// A block group: <see cref="Repeat"/> identical blocks (mixer_norm → mixer → +residual → mlp_norm → mlp →
    /// +residual, or with <see cref="ParallelResidual"/> x + mixer(mixer_norm(x)) + mlp(mlp_norm(x)));
    /// <see cref="Prefix"/> holds <c>{layer}</c>, replaced by the global layer index.
    /// </summary>
    internal sealed record BlockGroupSpec(
        string Name,
        string PropertyName,
        IntValue Repeat,
        string Prefix,
        NodeSpec MixerNorm,
        NodeSpec Mixer,
        NodeSpec MlpNorm,
        NodeSpec Mlp,
        FlagValue ParallelResidual)
    {
        /// <summary>The nodes in the order a block runs them.</summary>
        public NodeSpec[] Nodes => new[] { MixerNorm, Mixer, MlpNorm, Mlp };
    }

    internal sealed record EmbeddingSpec(string Name, string PropertyName, string Weight, IntValue Vocab, IntValue Dim);

    /// <summary>The output head; <see cref="Weight"/> is null only when <see cref="Tied"/> is the literal true.</summary>
    internal sealed record LmHeadSpec(string Name, string PropertyName, string? Weight, FlagValue Tied);

    /// <summary>
    /// A config.json key whose value, when the key is present, must be one of <see cref="Values"/> (JSON text:
    /// <c>"swish"</c>, <c>null</c>, <c>2</c>): values the spec's model does not implement are refused at load.
    /// </summary>
    internal sealed record SupportedConfigValue(string Key, EquatableArray<string> Values);

    /// <summary>
    /// The block decoder's embedder of a two-level spec (<c>"kind": "lookup_concat"</c>): a table [vocab, dim /
    /// block_length]; a block's embedding is the concatenation of its <see cref="BlockLength"/> tokens' rows, width dim.
    /// </summary>
    /// <param name="PadToken">The first block's pad token: a literal id, or null to read it from config.json.</param>
    internal sealed record LookupEmbedderSpec(string Name, string PropertyName, string Weight, IntValue Vocab, IntValue Dim, IntValue BlockLength, int? PadToken);

    /// <summary>The token decoder's prefix projection: [prefix_tokens · token dim, block dim] (+ bias), one context embedding → R prefix rows.</summary>
    internal sealed record PrefixProjectionSpec(string Name, string PropertyName, IntValue PrefixTokens, string Weight, string? Bias);

    /// <summary>
    /// What a two-level spec (<c>"levels"</c>) adds: the block decoder (embedder, block groups, final norm) and the
    /// token decoder's prefix projection. The token decoder's embedding, block groups and final norm are the spec's
    /// <see cref="ModelSpec.Embedding"/>, <see cref="ModelSpec.Blocks"/> and <see cref="ModelSpec.FinalNorm"/>: the level
    /// that makes the logits.
    /// </summary>
    internal sealed record TwoLevelSpec(
        LookupEmbedderSpec Embedder,
        EquatableArray<BlockGroupSpec> BlockDecoder,
        NodeSpec BlockFinalNorm,
        PrefixProjectionSpec Prefix);

    /// <summary>
    /// A spec. Single-level: <see cref="Embedding"/> → <see cref="Blocks"/> → <see cref="FinalNorm"/> →
    /// <see cref="LmHead"/>. Two-level (<see cref="Levels"/> not null): those four are the token decoder's.
    /// </summary>
    internal sealed record ModelSpec(
        string FileName,
        string ClassName,
        string Namespace,
        EquatableArray<string> Architectures,
        EquatableArray<SupportedConfigValue> SupportedConfigValues,
        EquatableArray<SymbolSpec> Symbols,
        EquatableArray<string> BindingOrder,
        EmbeddingSpec Embedding,
        EquatableArray<BlockGroupSpec> Blocks,
        NodeSpec FinalNorm,
        LmHeadSpec LmHead,
        TwoLevelSpec? Levels);

    /// <summary>A name declared by a spec and where, for checks across specs (duplicate classes, architectures).</summary>
    internal sealed record NamedLocation(string Name, LocationInfo Location);

    /// <summary>What other specs of the same compilation must not repeat.</summary>
    internal sealed record SpecIdentity(string FilePath, NamedLocation? ClassName, EquatableArray<NamedLocation> Architectures);

    /// <summary>The outcome of parsing one spec file: the model when it is valid, and every diagnostic.</summary>
    internal sealed record ParsedSpec(ModelSpec? Spec, EquatableArray<DiagnosticInfo> Diagnostics, SpecIdentity Identity);

    /// <summary>What the source output of one spec depends on: its diagnostics and, when valid, the model.</summary>
    internal sealed record SpecOutput(string FilePath, ModelSpec? Spec, EquatableArray<DiagnosticInfo> Diagnostics);
}
