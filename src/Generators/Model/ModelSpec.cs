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
    }

    /// <summary>A size: a positive int literal, or the name of an int symbol.</summary>
    internal sealed record IntValue(int Literal, string? Symbol)
    {
        public static IntValue Of(int literal) => new IntValue(literal, null);

        public static IntValue OfSymbol(string symbol) => new IntValue(0, symbol);
    }

    /// <summary>A float (an <c>eps</c>): a number literal, or the name of a float symbol.</summary>
    internal sealed record FloatValue(double Literal, string? Symbol);

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
        None,
        Divide,
        Multiply,
    }

    /// <summary>The default of an int symbol: <c>a</c>, <c>a / b</c> or <c>a * b</c> over literals and int symbols.</summary>
    internal sealed record IntExpression(IntValue Left, IntOperator Operator, IntValue? Right);

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
        bool? BoolDefault)
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
        string DownWeight)
        : NodeSpec(Name, PropertyName)
    {
        public override string Kind => NodeKinds.SwiGluMlp;
    }

    /// <summary>
    /// A block group: <see cref="Repeat"/> identical blocks (mixer_norm → mixer → +residual → mlp_norm → mlp →
    /// +residual); <see cref="Prefix"/> holds <c>{layer}</c>, replaced by the global layer index.
    /// </summary>
    internal sealed record BlockGroupSpec(
        string Name,
        string PropertyName,
        IntValue Repeat,
        string Prefix,
        NodeSpec MixerNorm,
        NodeSpec Mixer,
        NodeSpec MlpNorm,
        NodeSpec Mlp)
    {
        /// <summary>The nodes in the order a block runs them.</summary>
        public NodeSpec[] Nodes => new[] { MixerNorm, Mixer, MlpNorm, Mlp };
    }

    internal sealed record EmbeddingSpec(string Name, string PropertyName, string Weight, IntValue Vocab, IntValue Dim);

    /// <summary>The output head; <see cref="Weight"/> is null only when <see cref="Tied"/> is the literal true.</summary>
    internal sealed record LmHeadSpec(string Name, string PropertyName, string? Weight, FlagValue Tied);

    internal sealed record ModelSpec(
        string FileName,
        string ClassName,
        string Namespace,
        EquatableArray<string> Architectures,
        EquatableArray<SymbolSpec> Symbols,
        EquatableArray<string> BindingOrder,
        EmbeddingSpec Embedding,
        EquatableArray<BlockGroupSpec> Blocks,
        NodeSpec FinalNorm,
        LmHeadSpec LmHead);

    /// <summary>A name declared by a spec and where, for checks across specs (duplicate classes, architectures).</summary>
    internal sealed record NamedLocation(string Name, LocationInfo Location);

    /// <summary>What other specs of the same compilation must not repeat.</summary>
    internal sealed record SpecIdentity(string FilePath, NamedLocation? ClassName, EquatableArray<NamedLocation> Architectures);

    /// <summary>The outcome of parsing one spec file: the model when it is valid, and every diagnostic.</summary>
    internal sealed record ParsedSpec(ModelSpec? Spec, EquatableArray<DiagnosticInfo> Diagnostics, SpecIdentity Identity);

    /// <summary>What the source output of one spec depends on: its diagnostics and, when valid, the model.</summary>
    internal sealed record SpecOutput(string FilePath, ModelSpec? Spec, EquatableArray<DiagnosticInfo> Diagnostics);
}
