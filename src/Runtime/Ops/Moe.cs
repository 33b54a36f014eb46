using System.Text.Json;

namespace Horizon.Ops;

/// <summary>
/// Weights of a <c>moe</c> node (Hugging Face layout, docs/ops/moe.md): the router [experts, hidden]; the routed
/// experts, each a SwiGLU triple (gate and up [moe_intermediate, hidden], down [hidden, moe_intermediate]); and an
/// optional shared expert (a SwiGLU triple of its own width, run on every token) with an optional sigmoid gate
/// [1, hidden] (Qwen2-MoE has both; with no gate the shared expert is added with weight 1).
/// </summary>
/// <remarks>
/// A generated model binds these from a checkpoint with <see cref="Bind(ModelDirectory, string, IReadOnlyList{MoeTensorNames}, MoeShape)"/>,
/// which reads either checkpoint layout: one tensor per expert and projection, or the fused
/// <c>experts.gate_up_proj</c> / <c>experts.down_proj</c> stacks (whose expert slices are views, not copies).
/// </remarks>
public sealed record MoeWeights(
    Matrix Router,
    IReadOnlyList<SwiGluMlpWeights> Experts,
    SwiGluMlpWeights? SharedExpert = null,
    Matrix? SharedExpertGate = null)
{
    public int Hidden => Router.Cols;

    public int ExpertCount => Router.Rows;

    /// <summary>Width of one routed expert (<c>moe_intermediate_size</c>; Mixtral's <c>intermediate_size</c>).</summary>
    public int Intermediate => Experts[0].Intermediate;

    /// <summary>Parameters of the block: router, every expert, the shared expert and its gate.</summary>
    public long ParameterCount =>
        Router.ElementCount + Experts.Sum(Count) + (SharedExpert is null ? 0 : Count(SharedExpert)) + (SharedExpertGate?.ElementCount ?? 0);

    /// <summary>Parameters one token uses: router, <paramref name="topK"/> experts, the shared expert and its gate.</summary>
    public long ActiveParameterCount(int topK) =>
        Router.ElementCount + topK * Count(Experts[0]) + (SharedExpert is null ? 0 : Count(SharedExpert)) + (SharedExpertGate?.ElementCount ?? 0);

    private static long Count(SwiGluMlpWeights w) => w.Gate.ElementCount + w.Up.ElementCount + w.Down.ElementCount;

    /// <summary>
    /// Checks that the shapes agree: every expert is gate/up [I, hidden] and down [hidden, I] with one I, the shared
    /// expert likewise with its own width, the gate [1, hidden]. Throws <see cref="ModelLoadException"/> naming the tensor.
    /// </summary>
    public void Validate()
    {
        if (Experts.Count == 0)
            throw new ModelLoadException($"moe: '{Router.Name}': no experts");
        if (Experts.Count != Router.Rows)
            throw new ModelLoadException($"moe: router '{Router.Name}' has {Router.Rows} rows but {Experts.Count} experts are bound");
        int intermediate = Experts[0].Gate.Rows;
        foreach (var expert in Experts)
            CheckSwiGlu(expert, Hidden, intermediate);
        if (SharedExpert is not null)
            CheckSwiGlu(SharedExpert, Hidden, SharedExpert.Gate.Rows);
        if (SharedExpertGate is not null)
        {
            if (SharedExpert is null)
                throw new ModelLoadException($"moe: shared expert gate '{SharedExpertGate.Name}' is bound without a shared expert");
            CheckShape(SharedExpertGate, 1, Hidden);
        }
    }

    private static void CheckSwiGlu(SwiGluMlpWeights w, int hidden, int intermediate)
    {
        CheckShape(w.Gate, intermediate, hidden);
        CheckShape(w.Up, intermediate, hidden);
        CheckShape(w.Down, hidden, intermediate);
    }

    private static void CheckShape(Matrix m, int rows, int cols)
    {
        if (m.Rows != rows || m.Cols != cols)
            throw new ModelLoadException($"moe: tensor '{m.Name}' is [{m.Rows}, {m.Cols}], expected [{rows}, {cols}]");
    }

    /// <summary>
    /// Binds an MoE block from a checkpoint. <paramref name="prefix"/> is the layer's prefix (for example
    /// <c>model.layers.3.</c>); <paramref name="layouts"/> are tried in order and the first whose router tensor exists
    /// is used (<see cref="MoeTensorNames.Mixtral"/> lists Mixtral's two module names). Within it the experts are read
    /// fused (<c>{block}.experts.gate_up_proj</c> [E, 2I, D] + <c>{block}.experts.down_proj</c> [E, D, I]) when
    /// those exist, else one tensor per expert (<c>{block}.experts.{e}.{gate|up|down}.weight</c>). A checkpoint that
    /// holds both forms, only half of the fused pair, or a tensor of the wrong shape (a router that is not
    /// [shape.Experts, shape.Hidden] among them) or dtype is refused with a <see cref="ModelLoadException"/> naming the tensor.
    /// </summary>
    public static MoeWeights Bind(ModelDirectory checkpoint, string prefix, IReadOnlyList<MoeTensorNames> layouts, MoeShape shape)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        return Bind(name => checkpoint.Contains(name) ? checkpoint.Get(name) : null, prefix, layouts, shape, checkpoint.Path);
    }

    /// <summary>
    /// <see cref="Bind(ModelDirectory, string, IReadOnlyList{MoeTensorNames}, MoeShape)"/> over any name → tensor lookup
    /// (null: no such tensor). <paramref name="source"/> names the checkpoint in error messages.
    /// </summary>
    public static MoeWeights Bind(
        Func<string, (SafeTensorInfo Info, ReadOnlyMemory<byte> Data)?> lookup,
        string prefix,
        IReadOnlyList<MoeTensorNames> layouts,
        MoeShape shape,
        string source = "checkpoint")
    {
        ArgumentNullException.ThrowIfNull(lookup);
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentNullException.ThrowIfNull(layouts);
        ArgumentNullException.ThrowIfNull(shape);
        var binder = new Binder(lookup, source);
        foreach (var names in layouts)
        {
            string routerName = prefix + names.RouterWeight;
            if (lookup(routerName) is null)
                continue;
            var router = binder.Matrix(routerName, shape.Experts, shape.Hidden);
            var experts = binder.Experts(prefix, names, shape);
            SwiGluMlpWeights? shared = null;
            Matrix? sharedGate = null;
            if (shape.SharedIntermediate is int sharedWidth)
            {
                if (names.SharedExpert is null)
                    throw new ModelLoadException($"{source}: {prefix}: the config asks for a shared expert but layout '{names.Block}' has none");
                string s = prefix + names.SharedExpertModule;
                shared = new SwiGluMlpWeights(
                    binder.Matrix($"{s}.{names.SharedGate}.weight", sharedWidth, shape.Hidden),
                    binder.Matrix($"{s}.{names.SharedUp}.weight", sharedWidth, shape.Hidden),
                    binder.Matrix($"{s}.{names.SharedDown}.weight", shape.Hidden, sharedWidth));
                if (names.SharedExpertGate is not null)
                    sharedGate = binder.Matrix(prefix + names.SharedExpertGateWeight, 1, shape.Hidden);
            }
            var weights = new MoeWeights(router, experts, shared, sharedGate);
            weights.Validate();
            return weights;
        }
        throw new ModelLoadException(
            $"{source}: no MoE router found under '{prefix}' (looked for {string.Join(", ", layouts.Select(l => $"'{prefix}{l.RouterWeight}'"))})");
    }

    private sealed class Binder(Func<string, (SafeTensorInfo Info, ReadOnlyMemory<byte> Data)?> lookup, string source)
    {
        public (SafeTensorInfo Info, ReadOnlyMemory<byte> Data) Get(string name) =>
            lookup(name) ?? throw new ModelLoadException($"{source}: tensor '{name}' not found in the checkpoint");

        public Matrix Matrix(string name, int rows, int cols)
        {
            var (info, data) = Get(name);
            CheckShape(info, [rows, cols]);
            return new Matrix(name, rows, cols, DType(info), data);
        }

        public IReadOnlyList<SwiGluMlpWeights> Experts(string prefix, MoeTensorNames names, MoeShape shape)
        {
            int e = shape.Experts, d = shape.Hidden, i = shape.Intermediate;
            string gateUpName = prefix + names.FusedGateUp, downName = prefix + names.FusedDown;
            var gateUp = lookup(gateUpName);
            var down = lookup(downName);
            string firstExpert = prefix + names.ExpertWeight(0, names.Gate);
            if (gateUp is null && down is null)
            {
                if (lookup(firstExpert) is null)
                    throw new ModelLoadException(
                        $"{source}: the experts of '{prefix}{names.Block}' are in neither layout: found neither '{firstExpert}' (one tensor per expert) nor '{gateUpName}' (fused)");
                var list = new SwiGluMlpWeights[e];
                for (int k = 0; k < e; k++)
                {
                    list[k] = new SwiGluMlpWeights(
                        Matrix(prefix + names.ExpertWeight(k, names.Gate), i, d),
                        Matrix(prefix + names.ExpertWeight(k, names.Up), i, d),
                        Matrix(prefix + names.ExpertWeight(k, names.Down), d, i));
                }
                return list;
            }
            if (gateUp is null || down is null)
                throw new ModelLoadException(
                    $"{source}: fused experts are incomplete: '{(gateUp is null ? downName : gateUpName)}' exists but '{(gateUp is null ? gateUpName : downName)}' does not");
            if (lookup(firstExpert) is not null)
                throw new ModelLoadException($"{source}: both '{gateUpName}' (fused) and '{firstExpert}' (one tensor per expert) exist; a checkpoint must hold one layout");
            var (gateUpInfo, gateUpData) = gateUp.Value;
            var (downInfo, downData) = down.Value;
            CheckShape(gateUpInfo, [e, 2L * i, d]);
            CheckShape(downInfo, [e, d, i]);
            var gateUpType = DType(gateUpInfo);
            var downType = DType(downInfo);
            // Expert k's gate is rows [0, I) of gate_up_proj[k] and its up rows [I, 2I) (transformers concatenates
            // gate then up along dim 1 and splits with chunk(2)); the slices share the checkpoint's memory.
            int block = checked(i * d);
            var result = new SwiGluMlpWeights[e];
            for (int k = 0; k < e; k++)
            {
                result[k] = new SwiGluMlpWeights(
                    new Matrix($"{gateUpName}[{k}, 0:{i}]", i, d, gateUpType, Slice(gateUpData, (2L * k) * block, block, gateUpType)),
                    new Matrix($"{gateUpName}[{k}, {i}:{2 * i}]", i, d, gateUpType, Slice(gateUpData, (2L * k + 1) * block, block, gateUpType)),
                    new Matrix($"{downName}[{k}]", d, i, downType, Slice(downData, (long)k * block, block, downType)));
            }
            return result;
        }

        private static ReadOnlyMemory<byte> Slice(ReadOnlyMemory<byte> data, long firstElement, int elements, WeightDType dtype) =>
            data.Slice(checked((int)(firstElement * dtype.ByteSize())), checked(elements * dtype.ByteSize()));

        private void CheckShape(SafeTensorInfo info, long[] expected)
        {
            if (!info.Shape.SequenceEqual(expected))
                throw new ModelLoadException($"{source}: tensor '{info.Name}' has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", expected)}]");
        }

        private WeightDType DType(SafeTensorInfo info) => info.DType switch
        {
            SafeTensorsDType.F32 => WeightDType.F32,
            SafeTensorsDType.F16 => WeightDType.F16,
            SafeTensorsDType.BF16 => WeightDType.BF16,
            _ => throw new ModelLoadException($"{source}: tensor '{info.Name}' has dtype {info.DType}; weights must be F32, F16 or BF16"),
        };
    }
}

/// <summary>
/// The weights of one layer of a <c>moe</c> node in a model that makes some layers dense: Qwen2-MoE's
/// <c>decoder_sparse_step</c> and <c>mlp_only_layers</c> (<see cref="MoeConfig.IsMoeLayer"/>). Exactly one of
/// <see cref="Sparse"/> (an MoE layer) and <see cref="Dense"/> (a plain SwiGLU MLP) is set.
/// </summary>
public sealed class MoeOrDenseMlpWeights
{
    /// <summary>An MoE layer.</summary>
    public MoeOrDenseMlpWeights(MoeWeights sparse) => Sparse = sparse ?? throw new ArgumentNullException(nameof(sparse));

    /// <summary>A dense layer.</summary>
    public MoeOrDenseMlpWeights(SwiGluMlpWeights dense) => Dense = dense ?? throw new ArgumentNullException(nameof(dense));

    public MoeWeights? Sparse { get; }

    public SwiGluMlpWeights? Dense { get; }
}

/// <summary>The sizes a <c>moe</c> node binds with (from config.json; see <see cref="MoeConfig"/>).</summary>
/// <param name="Hidden">hidden_size (D).</param>
/// <param name="Experts">Routed experts (E): <c>num_local_experts</c> (Mixtral) or <c>num_experts</c> (Qwen2-MoE).</param>
/// <param name="Intermediate">Width of one routed expert (I): Mixtral <c>intermediate_size</c>, Qwen2-MoE <c>moe_intermediate_size</c>.</param>
/// <param name="SharedIntermediate">Width of the shared expert (<c>shared_expert_intermediate_size</c>); null: none.</param>
public sealed record MoeShape(int Hidden, int Experts, int Intermediate, int? SharedIntermediate = null);

/// <summary>
/// Tensor names of one MoE block relative to the layer prefix. <see cref="Block"/> is the module (<c>mlp</c>,
/// <c>block_sparse_moe</c>); per-expert tensors are <c>{Block}.experts.{e}.{Gate|Up|Down}.weight</c>, fused ones
/// <c>{Block}.experts.gate_up_proj</c> and <c>{Block}.experts.down_proj</c>.
/// </summary>
public sealed record MoeTensorNames(
    string Block,
    string Gate,
    string Up,
    string Down,
    string Router = "gate",
    string Experts = "experts",
    string? SharedExpert = null,
    string? SharedExpertGate = null,
    string SharedGate = "gate_proj",
    string SharedUp = "up_proj",
    string SharedDown = "down_proj")
{
    public string RouterWeight => $"{Block}.{Router}.weight";

    public string ExpertWeight(int expert, string projection) => $"{Block}.{Experts}.{expert}.{projection}.weight";

    public string FusedGateUp => $"{Block}.{Experts}.gate_up_proj";

    public string FusedDown => $"{Block}.{Experts}.down_proj";

    public string SharedExpertModule => $"{Block}.{SharedExpert}";

    public string SharedExpertGateWeight => $"{Block}.{SharedExpertGate}.weight";

    /// <summary>
    /// Mixtral as on the hub and as transformers 5 <c>save_pretrained</c> writes it by default:
    /// <c>block_sparse_moe.gate.weight</c>, <c>block_sparse_moe.experts.{e}.w1|w3|w2.weight</c> (gate, up, down).
    /// </summary>
    public static MoeTensorNames MixtralPerExpert { get; } = new("block_sparse_moe", "w1", "w3", "w2");

    /// <summary>
    /// Mixtral as transformers 5 holds it in memory (and writes with <c>save_original_format=False</c>):
    /// <c>mlp.gate.weight</c>, <c>mlp.experts.gate_up_proj</c>, <c>mlp.experts.down_proj</c>.
    /// </summary>
    public static MoeTensorNames MixtralFused { get; } = new("mlp", "w1", "w3", "w2");

    /// <summary>Both Mixtral module names, the hub's first.</summary>
    public static IReadOnlyList<MoeTensorNames> Mixtral { get; } = [MixtralPerExpert, MixtralFused];

    /// <summary>
    /// Qwen2-MoE (either layout): <c>mlp.gate.weight</c>, <c>mlp.experts.{e}.gate_proj|up_proj|down_proj.weight</c> or the
    /// fused pair, <c>mlp.shared_expert.{gate,up,down}_proj.weight</c> and <c>mlp.shared_expert_gate.weight</c> [1, D].
    /// </summary>
    public static MoeTensorNames Qwen2MoeNames { get; } =
        new("mlp", "gate_proj", "up_proj", "down_proj", SharedExpert: "shared_expert", SharedExpertGate: "shared_expert_gate");

    public static IReadOnlyList<MoeTensorNames> Qwen2Moe { get; } = [Qwen2MoeNames];
}

/// <summary>Routing of a <c>moe</c> node.</summary>
/// <param name="TopK">Experts per token (<c>num_experts_per_tok</c>), 1 … E.</param>
/// <param name="NormalizeTopK">
/// Renormalise the k selected softmax probabilities to sum to 1 (Mixtral always; Qwen2-MoE when
/// <c>norm_topk_prob</c>). When false each selected expert is weighted by its probability under the softmax over
/// all E experts.
/// </param>
public sealed record MoeOptions(int TopK, bool NormalizeTopK);

/// <summary>
/// The MoE keys of a Mixtral or Qwen2-MoE config.json, with transformers' defaults where it has them.
/// </summary>
/// <param name="Experts"><c>num_local_experts</c> (Mixtral) or <c>num_experts</c> (Qwen2-MoE).</param>
/// <param name="TopK"><c>num_experts_per_tok</c>.</param>
/// <param name="Intermediate">Routed expert width: <c>moe_intermediate_size</c> when present, else <c>intermediate_size</c>.</param>
/// <param name="SharedIntermediate"><c>shared_expert_intermediate_size</c> when present and positive, else null.</param>
/// <param name="NormalizeTopK"><c>norm_topk_prob</c> when present; else true for Mixtral (it always renormalises), false otherwise (Qwen2-MoE's default).</param>
/// <param name="DecoderSparseStep"><c>decoder_sparse_step</c> (default 1).</param>
/// <param name="MlpOnlyLayers"><c>mlp_only_layers</c> (default none): layers that use the dense MLP.</param>
/// <param name="DenseIntermediate"><c>intermediate_size</c>: the width of the dense MLP of non-MoE layers.</param>
public sealed record MoeConfig(
    int Experts,
    int TopK,
    int Intermediate,
    int? SharedIntermediate,
    bool NormalizeTopK,
    int DecoderSparseStep,
    IReadOnlyList<int> MlpOnlyLayers,
    int DenseIntermediate)
{
    public MoeOptions Options => new(TopK, NormalizeTopK);

    public MoeShape Shape(int hidden) => new(hidden, Experts, Intermediate, SharedIntermediate);

    /// <summary>
    /// Whether layer <paramref name="layer"/> (0-based) is an MoE block (Qwen2-MoE's rule; every Mixtral layer is):
    /// not listed in <c>mlp_only_layers</c>, experts &gt; 0 and (layer + 1) divisible by <c>decoder_sparse_step</c>.
    /// Other layers use a dense SwiGLU MLP of width <see cref="DenseIntermediate"/> named <c>mlp.{gate,up,down}_proj</c>.
    /// </summary>
    public bool IsMoeLayer(int layer) =>
        !MlpOnlyLayers.Contains(layer) && Experts > 0 && (layer + 1) % DecoderSparseStep == 0;

    public static MoeConfig FromConfig(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        bool mixtral = config.ModelType == "mixtral" || config.Has("num_local_experts");
        int experts = config.Positive(config.TryGetInt("num_local_experts") ?? config.GetInt("num_experts"), "num_experts");
        int topK = config.Positive(config.GetInt("num_experts_per_tok"), "num_experts_per_tok");
        if (topK > experts)
            throw new ModelLoadException($"{config.Path}: num_experts_per_tok = {topK} is more than the {experts} experts");
        int dense = config.Positive(config.GetInt("intermediate_size"), "intermediate_size");
        int intermediate = config.Positive(config.TryGetInt("moe_intermediate_size") ?? dense, "moe_intermediate_size");
        int? shared = config.TryGetInt("shared_expert_intermediate_size") is int s && s > 0 ? s : null;
        bool normalize = config.TryGetBool("norm_topk_prob") ?? mixtral;
        int step = config.Positive(config.TryGetInt("decoder_sparse_step") ?? 1, "decoder_sparse_step");
        string act = config.TryGetString("hidden_act") ?? "silu";
        if (act != "silu")
            throw new ModelLoadException($"{config.Path}: hidden_act = '{act}' is not supported by moe (supported: silu)");
        return new MoeConfig(experts, topK, intermediate, shared, normalize, step, ReadLayers(config, "mlp_only_layers"), dense);
    }

    private static int[] ReadLayers(ModelConfig config, string key)
    {
        if (!config.TryGet(key, out var value))
            return [];
        if (value.ValueKind != JsonValueKind.Array || value.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out _)))
            throw new ModelLoadException($"{config.Path}: key '{key}' must be a list of layer indices, found {value.GetRawText()}");
        return value.EnumerateArray().Select(e => e.GetInt32()).ToArray();
    }
}

/// <summary>
/// <c>moe</c>: the sparsely-gated mixture of SwiGLU experts (Shazeer et al. 2017, eq. 1 with the top-k gate of
/// eqs. 3–5, no noise at inference; Jiang et al. 2024, Mixtral, §2.1), with Qwen2-MoE's sigmoid-gated shared expert:
/// p = softmax(W_r x) over all E experts; T = the k largest p (ties to the lower index); w_i = p_i / Σ_{j∈T} p_j when
/// renormalising, else p_i; y = Σ_{i∈T} w_i E_i(x) + σ(w_sg · x) S(x), where E_i and S are SwiGLU MLPs
/// (Shazeer 2020, eq. 6).
/// </summary>
public static class Moe
{
    /// <summary>
    /// x is (rows, hidden), y is (rows, hidden); y must not overlap x. Tokens are routed independently, grouped by
    /// expert, and each expert runs once over its tokens (multithreaded); every output element is computed in a
    /// fixed order, so a token's result does not depend on the other rows or on the thread count.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, MoeWeights weights, MoeOptions options, Span<float> y) =>
        Cpu.MoeKernels.Forward(x, rows, weights, options, y);

    /// <summary>
    /// A layer that is either MoE or dense: the MoE block as <see cref="Forward(ReadOnlySpan{float}, int, MoeWeights, MoeOptions, Span{float})"/>,
    /// or the dense SwiGLU MLP (<see cref="SwiGluMlp.Forward"/>; <paramref name="options"/> unused).
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, MoeOrDenseMlpWeights weights, MoeOptions options, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Sparse is not null)
            Cpu.MoeKernels.Forward(x, rows, weights.Sparse, options, y);
        else
            SwiGluMlp.Forward(x, rows, weights.Dense!, y);
    }

    /// <summary>
    /// The routing alone: for each of the rows of x (rows, hidden), the selected experts (rows, top_k) in descending
    /// probability (ties: lower index first) and their weights (rows, top_k), as <see cref="Forward(ReadOnlySpan{float}, int, MoeWeights, MoeOptions, Span{float})"/> uses them.
    /// </summary>
    public static void Route(ReadOnlySpan<float> x, int rows, MoeWeights weights, MoeOptions options, Span<int> experts, Span<float> expertWeights) =>
        Cpu.MoeKernels.Route(x, rows, weights, options, experts, expertWeights);
}
