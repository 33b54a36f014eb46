using System.Text.Json;

namespace Horizon.Ops;

/// <summary>
/// Weights of a <c>gpt_neox_attention</c> sublayer in the Hugging Face <c>GPTNeoXAttention</c> layout (prefix
/// <c>gpt_neox.layers.N.attention.</c>):
/// <list type="bullet">
/// <item><see cref="QueryKeyValue"/> <c>query_key_value.weight</c> [3·hidden, hidden], fused and laid out <b>per
/// head</b>: output rows h·3d … h·3d + d − 1 are head h's query, the next d its key, the next d its value
/// (transformers views the projection as (…, heads, 3·d) and splits the last axis into q | k | v).</item>
/// <item><see cref="QueryKeyValueBias"/> <c>query_key_value.bias</c> [3·hidden], same layout; null when the config
/// has <c>attention_bias: false</c>.</item>
/// <item><see cref="Dense"/> <c>dense.weight</c> [hidden, hidden] and <see cref="DenseBias"/> <c>dense.bias</c>.</item>
/// </list>
/// The non-persistent buffers some exports carry (<c>attention.bias</c>, <c>attention.masked_bias</c>,
/// <c>attention.rotary_emb.inv_freq</c>) are not weights and are not bound.
/// </summary>
public sealed record GptNeoXAttentionWeights(Matrix QueryKeyValue, float[]? QueryKeyValueBias, Matrix Dense, float[]? DenseBias);

/// <summary>
/// Weights of one <c>gpt_neox_layer</c> (Hugging Face <c>GPTNeoXLayer</c>, prefix <c>gpt_neox.layers.N.</c>):
/// <c>input_layernorm</c>, <c>attention.*</c>, <c>post_attention_layernorm</c> and the GELU MLP
/// <c>mlp.dense_h_to_4h</c> [intermediate, hidden] (+ bias) → <c>mlp.dense_4h_to_h</c> [hidden, intermediate] (+ bias),
/// bound as <see cref="GeluMlpWeights"/> (Fc1 = dense_h_to_4h, Fc2 = dense_4h_to_h).
/// </summary>
public sealed record GptNeoXLayerWeights(
    LayerNormWeights InputLayerNorm,
    GptNeoXAttentionWeights Attention,
    LayerNormWeights PostAttentionLayerNorm,
    GeluMlpWeights Mlp);

/// <summary>
/// A stack of GPT-NeoX layers and the final LayerNorm (Hugging Face <c>GPTNeoXModel</c> run on input embeddings:
/// <c>gpt_neox.layers.*</c> and <c>gpt_neox.final_layer_norm</c>). The input embedding <c>gpt_neox.embed_in</c> and
/// the head <c>embed_out</c> are not part of it: the caller embeds and projects.
/// </summary>
public sealed record GptNeoXStackWeights(IReadOnlyList<GptNeoXLayerWeights> Layers, LayerNormWeights FinalLayerNorm)
{
    public int LayerCount => Layers.Count;

    /// <summary>
    /// Binds <c>{prefix}layers.N.*</c> (N &lt; <paramref name="layers"/>) and <c>{prefix}final_layer_norm.*</c> from a
    /// checkpoint, e.g. prefix <c>gpt_neox.</c> for a GPTNeoXForCausalLM, <c>block_decoder.gpt_neox.</c> for a Block
    /// Transformer. Biases of the attention and MLP are optional (config <c>attention_bias: false</c>); LayerNorm
    /// biases are not.
    /// </summary>
    public static GptNeoXStackWeights FromCheckpoint(ModelDirectory checkpoint, string prefix, GptNeoXOptions options, int layers)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(options);
        int d = options.Hidden, i = options.Intermediate;
        LayerNormWeights Norm(string name) => new(checkpoint.Vector(name + ".weight", d), checkpoint.Vector(name + ".bias", d));
        var bound = new GptNeoXLayerWeights[layers];
        for (int l = 0; l < layers; l++)
        {
            string p = $"{prefix}layers.{l}.";
            bound[l] = new GptNeoXLayerWeights(
                Norm(p + "input_layernorm"),
                new GptNeoXAttentionWeights(
                    checkpoint.Matrix(p + "attention.query_key_value.weight", 3 * d, d),
                    checkpoint.OptionalVector(p + "attention.query_key_value.bias", 3 * d),
                    checkpoint.Matrix(p + "attention.dense.weight", d, d),
                    checkpoint.OptionalVector(p + "attention.dense.bias", d)),
                Norm(p + "post_attention_layernorm"),
                new GeluMlpWeights(
                    checkpoint.Matrix(p + "mlp.dense_h_to_4h.weight", i, d), checkpoint.OptionalVector(p + "mlp.dense_h_to_4h.bias", i),
                    checkpoint.Matrix(p + "mlp.dense_4h_to_h.weight", d, i), checkpoint.OptionalVector(p + "mlp.dense_4h_to_h.bias", d)));
        }
        return new GptNeoXStackWeights(bound, Norm(prefix + "final_layer_norm"));
    }
}

/// <summary>
/// Sizes and switches of a GPT-NeoX layer (Hugging Face <c>GPTNeoXConfig</c>; Black et al. 2022, "GPT-NeoX-20B",
/// § 2.1). Every head has its own key/value head (no grouping); head_dim = hidden / heads. <see cref="Rope"/> holds
/// the partial rotary: rotary_dim = int(head_dim · rotary_pct) leading dimensions of each head rotate.
/// </summary>
/// <param name="Hidden">hidden_size.</param>
/// <param name="Heads">num_attention_heads.</param>
/// <param name="Intermediate">intermediate_size, the MLP width (not always 4·hidden: the Block Transformer configs
/// override hidden_size of pythia-410m and keep its 4096).</param>
/// <param name="Rope">Rotary table over head_dim with rotary_dim = int(head_dim · rotary_pct).</param>
public sealed record GptNeoXOptions(int Hidden, int Heads, int Intermediate, RopeTable Rope)
{
    /// <summary>ε of every LayerNorm (config <c>layer_norm_eps</c>, default 1e-5).</summary>
    public float LayerNormEps { get; init; } = 1e-5f;

    /// <summary>
    /// true: y = x + attn(ln₁(x)) + mlp(ln₂(x)) (config <c>use_parallel_residual</c>, the GPT-J/NeoX form, default);
    /// false: h = x + attn(ln₁(x)), y = h + mlp(ln₂(h)).
    /// </summary>
    public bool UseParallelResidual { get; init; } = true;

    /// <summary>GELU of the MLP (config <c>hidden_act</c>: gelu → exact; gelu_new, gelu_fast, gelu_pytorch_tanh → tanh).</summary>
    public GeluApproximation Activation { get; init; } = GeluApproximation.None;

    /// <summary>d = hidden / heads.</summary>
    public int HeadDim => Hidden / Heads;

    /// <summary>Leading dimensions of each head that RoPE rotates.</summary>
    public int RotaryDim => Rope.RotaryDim;

    /// <summary>Throws <see cref="ArgumentException"/> unless the sizes are positive, heads divide hidden and the rotary table fits.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Rope);
        if (Hidden <= 0 || Heads <= 0 || Intermediate <= 0)
            throw new ArgumentException($"gpt_neox: sizes must be positive (hidden {Hidden}, heads {Heads}, intermediate {Intermediate})");
        if (Hidden % Heads != 0)
            throw new ArgumentException($"gpt_neox: hidden {Hidden} is not a multiple of heads {Heads}");
        if (Rope.HeadDim != HeadDim)
            throw new ArgumentException($"gpt_neox: RoPE table head_dim {Rope.HeadDim} differs from hidden / heads = {HeadDim}");
    }

    /// <summary>
    /// Reads a GPT-NeoX config.json (or the <c>config</c> object of a Block Transformer decoder): <c>hidden_size</c>,
    /// <c>num_attention_heads</c>, <c>intermediate_size</c>, <c>rotary_pct</c> (or <c>partial_rotary_factor</c>; 0.25),
    /// <c>rotary_emb_base</c> (or <c>rope_theta</c>; 10000), <c>rope_scaling</c> (none or linear),
    /// <c>layer_norm_eps</c> (1e-5), <c>use_parallel_residual</c> (true), <c>hidden_act</c> (gelu).
    /// rotary_dim = int(head_dim · rotary_pct), truncated as Python's int() does.
    /// </summary>
    public static GptNeoXOptions FromConfig(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int hidden = config.Positive(config.GetInt("hidden_size"), "hidden_size");
        int heads = config.Positive(config.GetInt("num_attention_heads"), "num_attention_heads");
        int intermediate = config.Positive(config.GetInt("intermediate_size"), "intermediate_size");
        int headDim = config.DivideExactly(hidden, "hidden_size", heads, "num_attention_heads");

        double pct = config.TryGetDouble("rotary_pct") ?? config.TryGetDouble("partial_rotary_factor") ?? 0.25;
        double theta = config.TryGetDouble("rotary_emb_base") ?? config.TryGetDouble("rope_theta") ?? 10000.0;
        if (pct <= 0 || pct > 1)
            throw new ModelLoadException($"{config.Path}: rotary_pct = {pct} must be in (0, 1]");
        int rotaryDim = (int)(headDim * pct);
        if (rotaryDim < 2 || rotaryDim % 2 != 0)
            throw new ModelLoadException($"{config.Path}: rotary dims int(head_dim {headDim} × rotary_pct {pct}) = {rotaryDim} must be even and at least 2");

        var scaling = RopeScaling.None;
        if (config.TryGet("rope_scaling", out var ropeScaling) && ropeScaling.ValueKind == JsonValueKind.Object)
        {
            string type = ropeScaling.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()!
                : ropeScaling.TryGetProperty("rope_type", out var rt) && rt.ValueKind == JsonValueKind.String ? rt.GetString()! : "default";
            if (type == "linear")
            {
                if (!ropeScaling.TryGetProperty("factor", out var f) || f.ValueKind != JsonValueKind.Number || f.GetDouble() <= 0)
                    throw new ModelLoadException($"{config.Path}: rope_scaling: linear scaling needs a positive 'factor'");
                scaling = new RopeScaling("linear", f.GetDouble());
            }
            else if (type != "default")
            {
                throw new ModelLoadException($"{config.Path}: rope_scaling type '{type}' is not supported (supported: default, linear)");
            }
        }

        string act = config.TryGetString("hidden_act") ?? "gelu";
        GeluApproximation activation = act switch
        {
            "gelu" => GeluApproximation.None,
            "gelu_new" or "gelu_fast" or "gelu_pytorch_tanh" => GeluApproximation.Tanh,
            _ => throw new ModelLoadException($"{config.Path}: hidden_act = '{act}' is not supported (supported: gelu, gelu_new, gelu_fast, gelu_pytorch_tanh)"),
        };

        return new GptNeoXOptions(hidden, heads, intermediate, new RopeTable(headDim, theta, scaling, rotaryDim))
        {
            LayerNormEps = (float)(config.TryGetDouble("layer_norm_eps") ?? 1e-5),
            UseParallelResidual = config.TryGetBool("use_parallel_residual") ?? true,
            Activation = activation,
        };
    }
}

/// <summary>
/// <c>gpt_neox_attention</c>: causal multi-head softmax attention (Vaswani et al. 2017, eq. 1) with the fused per-head
/// q|k|v projection and partial rotary embedding of GPT-NeoX (Black et al. 2022, § 2.1.1; Su et al. 2021, eq. 34 on
/// the first rotary_dim dimensions of each head, "rotate half" layout): [q_h | k_h | v_h] = x·W_qkvᵀ + b per head,
/// RoPE on q and k at positions cache.Length + r, o_h = softmax(q_h k_hᵀ/√d + causal mask) v_h, y = o·W_denseᵀ + b.
/// </summary>
public static class GptNeoXAttention
{
    /// <summary>
    /// x is (rows, hidden): the tokens at positions cache.Length … cache.Length + rows − 1. Appends their keys (after
    /// RoPE) and values to <paramref name="cache"/> (heads × head_dim per token) and writes y (rows, hidden). y must
    /// not overlap x.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, GptNeoXAttentionWeights weights, GptNeoXOptions options, KvCache cache, Span<float> y) =>
        Cpu.BlockTransformerKernels.GptNeoXAttentionLayer(x, rows, weights, options, cache, y);

    /// <summary>
    /// The options a spec's <c>gpt_neox_attention</c> node runs with: head_dim = <paramref name="hidden"/> /
    /// <paramref name="heads"/> (exactly), rotary_dim = int(head_dim · <paramref name="rotaryPct"/>) (even, at least 2) and
    /// RoPE base <paramref name="ropeTheta"/>. Every problem is a <see cref="ModelLoadException"/> naming the config keys.
    /// The options' <see cref="GptNeoXOptions.Intermediate"/> is not read by the attention; it is set to hidden.
    /// </summary>
    public static GptNeoXOptions CreateOptions(ModelConfig config, int hidden, string hiddenName, int heads, string headsName,
        float rotaryPct, string rotaryPctName, float ropeTheta, string ropeThetaName)
    {
        ArgumentNullException.ThrowIfNull(config);
        int headDim = config.DivideExactly(config.Positive(hidden, hiddenName), hiddenName, config.Positive(heads, headsName), headsName);
        if (!(rotaryPct > 0 && rotaryPct <= 1))
            throw new ModelLoadException($"{config.Path}: {rotaryPctName} = {rotaryPct} must be in (0, 1]");
        if (!(ropeTheta > 0) || float.IsInfinity(ropeTheta))
            throw new ModelLoadException($"{config.Path}: {ropeThetaName} = {ropeTheta} must be a positive number");
        int rotaryDim = RotaryDim(headDim, rotaryPct);
        if (rotaryDim < 2 || rotaryDim % 2 != 0)
            throw new ModelLoadException($"{config.Path}: the rotary dims int(head_dim {headDim} × {rotaryPctName} {rotaryPct}) = {rotaryDim} must be even and at least 2");
        return new GptNeoXOptions(hidden, heads, hidden, new RopeTable(headDim, ropeTheta, RopeScaling.None, rotaryDim));
    }

    /// <summary>
    /// int(head_dim · rotary_pct), truncated as Python's int() truncates the product of config.json's double; a
    /// rotary_pct that reached here as float32 (a spec's float symbol) may sit a rounding step below the double, so the
    /// product is nudged up by a relative 1e-6 first (0.7f · 10 = 6.99999988 is 7, as 0.7 · 10 is in Python).
    /// </summary>
    public static int RotaryDim(int headDim, float rotaryPct) => (int)Math.Floor(headDim * (double)rotaryPct * (1 + 1e-6));
}

/// <summary>
/// <c>gpt_neox_layer</c>: one GPT-NeoX block (Black et al. 2022, § 2.1.2): with LayerNorms ln₁ = input_layernorm and
/// ln₂ = post_attention_layernorm (Ba et al. 2016, eq. 4, with bias), attn = <see cref="GptNeoXAttention"/> and
/// mlp = dense_4h_to_h(GELU(dense_h_to_4h(·))),
/// parallel residual y = x + attn(ln₁(x)) + mlp(ln₂(x)), or sequential h = x + attn(ln₁(x)), y = h + mlp(ln₂(h)).
/// </summary>
public static class GptNeoXLayer
{
    /// <summary>
    /// x is (rows, hidden): the tokens after the cache.Length tokens the cache holds. Writes y (rows, hidden) and
    /// appends the rows' keys and values to <paramref name="cache"/>. y may be x itself (in place) but must not
    /// overlap it otherwise.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, GptNeoXLayerWeights weights, GptNeoXOptions options, KvCache cache, Span<float> y) =>
        Cpu.BlockTransformerKernels.GptNeoXLayer(x, rows, weights, options, cache, y);
}

/// <summary>
/// A causal GPT-NeoX stack on input embeddings (Hugging Face <c>GPTNeoXModel(inputs_embeds=…)</c>): every layer of
/// <see cref="GptNeoXLayer"/> in turn, then the final LayerNorm. Positions continue from the caches' length.
/// </summary>
public static class GptNeoXStack
{
    /// <summary>
    /// x is (rows, hidden) input embeddings at positions caches[0].Length …; y (rows, hidden) gets
    /// final_layer_norm(last layer's output). One cache per layer, all of the same length. y must not overlap x.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, GptNeoXStackWeights weights, GptNeoXOptions options, IReadOnlyList<KvCache> caches, Span<float> y) =>
        Cpu.BlockTransformerKernels.GptNeoXStack(x, rows, weights, options, caches, y);

    /// <summary>One empty cache per layer, each for <paramref name="capacity"/> tokens of heads × head_dim keys and values.</summary>
    public static KvCache[] CreateCaches(GptNeoXOptions options, int layers, int capacity)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        var caches = new KvCache[layers];
        for (int i = 0; i < layers; i++)
            caches[i] = new KvCache(capacity, options.Heads, options.HeadDim);
        return caches;
    }
}
