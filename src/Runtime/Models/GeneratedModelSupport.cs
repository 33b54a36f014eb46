using System.ComponentModel;
using System.Globalization;

namespace Horizon;

/// <summary>
/// Checks and bookkeeping that the model classes generated from specs call. Public because those classes are
/// compiled into the consuming app's assembly; hand-written code has no need for it.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class GeneratedModelSupport
{
    /// <summary>A size computed as a product of two sizes (e.g. heads × head_dim); overflow is a load error naming both.</summary>
    public static int Multiply(ModelConfig config, int left, string leftName, int right, string rightName)
    {
        ArgumentNullException.ThrowIfNull(config);
        long product = (long)left * right;
        if (product is > int.MaxValue or < int.MinValue)
            throw new ModelLoadException($"{config.Path}: {leftName} × {rightName} = {left} × {right} is too large");
        return (int)product;
    }

    /// <summary>
    /// The smallest multiple of <paramref name="multiple"/> that is at least <paramref name="value"/> (a spec's
    /// <c>round_up_to</c>, e.g. a vocabulary padded to <c>pad_vocab_size_multiple</c>); overflow is a load error naming both.
    /// </summary>
    public static int RoundUpToMultiple(ModelConfig config, int value, string valueName, int multiple, string multipleName)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (multiple <= 0)
            throw new ModelLoadException($"{config.Path}: {multipleName} = {multiple} must be positive");
        long rounded = ((long)value + multiple - 1) / multiple * multiple;
        if (rounded > int.MaxValue)
            throw new ModelLoadException($"{config.Path}: {valueName} = {value} rounded up to a multiple of {multipleName} = {multiple} is too large");
        return (int)rounded;
    }

    /// <summary>
    /// int(<paramref name="width"/> × <paramref name="factor"/>), truncated as Python's <c>int()</c> does: the q/k or
    /// v width of a gla or linear_attention node (fla's key_dim = int(hidden_size · expand_k)). Must be positive.
    /// </summary>
    public static int ExpandedWidth(ModelConfig config, int width, string widthName, float factor, string factorName)
    {
        ArgumentNullException.ThrowIfNull(config);
        double product = Math.Truncate(width * (double)factor);
        if (!(product >= 1) || product > int.MaxValue)
            throw new ModelLoadException($"{config.Path}: int({widthName} × {factorName}) = int({width} × {factor.ToString("R", CultureInfo.InvariantCulture)}) must be a positive int");
        return (int)product;
    }

    /// <summary>Refuses <paramref name="value"/> above <paramref name="limit"/> (e.g. more experts per token than experts), naming both.</summary>
    public static int AtMost(ModelConfig config, int value, string valueName, int limit, string limitName)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (value > limit)
            throw new ModelLoadException($"{config.Path}: {valueName} = {value} is more than {limitName} = {limit}");
        return value;
    }

    /// <summary>
    /// The first of <paramref name="names"/> the checkpoint holds (a spec lists alternatives when checkpoints name a
    /// tensor differently, e.g. fla's g_norm_swish_gate or g_norm); none of them is a load error naming all.
    /// </summary>
    public static string FirstPresent(ModelDirectory directory, params string[] names)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(names);
        foreach (string name in names)
        {
            if (directory.Contains(name))
                return name;
        }
        throw new ModelLoadException($"{directory.Path}: none of the tensors {string.Join(", ", names.Select(n => $"'{n}'"))} is in the checkpoint");
    }

    /// <summary>
    /// A tensor of exactly <paramref name="shape"/> widened to float32 (a convolution's [channels, 1, width] weight),
    /// recorded in <paramref name="boundTensors"/>.
    /// </summary>
    public static float[] ReadTensor(ModelDirectory directory, ICollection<string> boundTensors, string name, params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(boundTensors);
        ArgumentNullException.ThrowIfNull(shape);
        var (info, data) = directory.Get(name);
        if (!info.Shape.SequenceEqual(shape))
            throw new ModelLoadException($"{directory.Path}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", shape)}]");
        var dtype = info.DType switch
        {
            SafeTensorsDType.F32 => WeightDType.F32,
            SafeTensorsDType.F16 => WeightDType.F16,
            SafeTensorsDType.BF16 => WeightDType.BF16,
            _ => throw new ModelLoadException($"{directory.Path}: tensor '{name}' has dtype {info.DType}; weights must be F32, F16 or BF16"),
        };
        boundTensors.Add(name);
        return WeightConversion.ToSingleArray(data.Span, dtype);
    }

    /// <summary>
    /// The tensor called <paramref name="name"/>, or null when the checkpoint lacks it: the lookup an op's Bind
    /// factory probes layouts with (<see cref="Ops.MoeWeights.Bind(Func{string, ValueTuple{SafeTensorInfo, ReadOnlyMemory{byte}}?}, string, IReadOnlyList{Ops.MoeTensorNames}, Ops.MoeShape, string)"/>).
    /// Each tensor found is recorded in <paramref name="boundTensors"/>.
    /// </summary>
    public static (SafeTensorInfo Info, ReadOnlyMemory<byte> Data)? Lookup(ModelDirectory directory, ICollection<string> boundTensors, string name)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(boundTensors);
        if (!directory.Contains(name))
            return null;
        boundTensors.Add(name);
        return directory.Get(name);
    }

    /// <summary>
    /// Refuses a config.json value of <paramref name="key"/> that is not one of <paramref name="supportedJson"/> (JSON
    /// text: <c>"\"swish\""</c>, <c>"null"</c>, <c>"2"</c>); an absent key is accepted (the config class's default is
    /// what the spec implements). A spec lists these in <c>supported_config_values</c>, for switches of the
    /// architecture it does not implement (fla's <c>feature_map</c>, <c>hidden_act</c>). A dotted key is a path into
    /// nested objects (<c>token_decoder.decoding_strategy</c>), as for symbols.
    /// </summary>
    public static void RequireSupportedValue(ModelConfig config, string key, params string[] supportedJson)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(supportedJson);
        if (!config.TryGetValue(key, out var value))
            return;
        foreach (string json in supportedJson)
        {
            using var supported = System.Text.Json.JsonDocument.Parse(json);
            if (System.Text.Json.JsonElement.DeepEquals(value, supported.RootElement))
                return;
        }
        throw new ModelLoadException($"{config.Path}: {key} = {value.GetRawText()} is not supported by this model (supported: {string.Join(", ", supportedJson)})");
    }

    /// <summary>
    /// The GELU of a spec's <c>gelu</c> symbol: the activation name config.json holds under <paramref name="key"/>
    /// (Hugging Face <c>hidden_act</c>), else <paramref name="defaultActivation"/>. <c>gelu</c> is the exact (erf) GELU;
    /// <c>gelu_new</c>, <c>gelu_fast</c> and <c>gelu_pytorch_tanh</c> are the tanh approximation. Any other name, or a
    /// value that is not a string, is a load error naming the key.
    /// </summary>
    /// <param name="config">The model's config.json.</param>
    /// <param name="key">The config.json key (a dotted key is a path into nested objects); null: the default only.</param>
    /// <param name="defaultActivation">The activation when the key is absent or null; null: the key is required.</param>
    public static Ops.GeluApproximation GeluApproximationOf(ModelConfig config, string? key, string? defaultActivation)
    {
        ArgumentNullException.ThrowIfNull(config);
        string? name = defaultActivation;
        if (key is not null && config.TryGet(key, out var value))
        {
            if (value.ValueKind != System.Text.Json.JsonValueKind.String)
                throw new ModelLoadException($"{config.Path}: key '{key}' must be an activation name such as \"gelu\", found {value.GetRawText()}");
            name = value.GetString()!;
        }
        if (name is null)
            throw new ModelLoadException($"{config.Path}: required key '{key}' is missing");
        return ParseGeluActivation(name)
            ?? throw new ModelLoadException($"{config.Path}: {key ?? "the default activation"} = \"{name}\" is not supported (supported: {string.Join(", ", GeluActivations)})");
    }

    /// <summary>The activation names a <c>gelu</c> symbol accepts, as transformers' <c>ACT2FN</c> spells them.</summary>
    public static IReadOnlyList<string> GeluActivations { get; } = ["gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh"];

    /// <summary>The GELU an activation name stands for; null for a name that is not one of <see cref="GeluActivations"/>.</summary>
    public static Ops.GeluApproximation? ParseGeluActivation(string name) => name switch
    {
        "gelu" => Ops.GeluApproximation.None,
        "gelu_new" or "gelu_fast" or "gelu_pytorch_tanh" => Ops.GeluApproximation.Tanh,
        _ => null,
    };

    /// <summary>
    /// The pad token of a two-level spec's first block: <paramref name="literal"/> when the spec gives one, else
    /// config.json's <c>pad_token_id</c>, else its first <c>eos_token_id</c>, else 0 (the Block Transformer pads the first
    /// block of a document with the tokenizer's pad, which for Pythia is EOS). It must be a row of the embedder's table.
    /// </summary>
    public static int PadTokenId(ModelConfig config, int? literal, int vocab, string vocabName)
    {
        ArgumentNullException.ThrowIfNull(config);
        int pad = literal ?? config.TryGetInt("pad_token_id") ?? (config.GetTokenIds("eos_token_id") is [int eos, ..] ? eos : 0);
        if (pad < 0 || pad >= vocab)
            throw new ModelLoadException($"{config.Path}: the pad token {pad} of the first block is not below {vocabName} = {vocab}");
        return pad;
    }

    /// <summary>
    /// A [<paramref name="rows"/>, <paramref name="cols"/>] weight stored either so, or as the weight of a kernel-1
    /// <c>Conv1d</c>, [rows, cols, 1] (the Block Transformer's expansion layer), bound as a matrix without a copy and
    /// recorded in <paramref name="boundTensors"/>.
    /// </summary>
    public static Matrix MatrixOrPointwiseConv(ModelDirectory directory, ICollection<string> boundTensors, string name, int rows, int cols)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(boundTensors);
        var (info, data) = directory.Get(name);
        if (!(info.Shape.SequenceEqual([(long)rows, cols]) || info.Shape.SequenceEqual([(long)rows, cols, 1L])))
            throw new ModelLoadException($"{directory.Path}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}], expected [{rows}, {cols}] or [{rows}, {cols}, 1]");
        var dtype = info.DType switch
        {
            SafeTensorsDType.F32 => WeightDType.F32,
            SafeTensorsDType.F16 => WeightDType.F16,
            SafeTensorsDType.BF16 => WeightDType.BF16,
            _ => throw new ModelLoadException($"{directory.Path}: tensor '{name}' has dtype {info.DType}; weights must be F32, F16 or BF16"),
        };
        boundTensors.Add(name);
        return new Matrix(name, rows, cols, dtype, data);
    }

    /// <summary>The first config.json architecture the spec supports, else the spec's first (what <c>ModelInfo</c> reports).</summary>
    public static string SelectArchitecture(ModelConfig config, IReadOnlyList<string> supported)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(supported);
        foreach (var architecture in config.Architectures)
        {
            if (supported.Contains(architecture, StringComparer.Ordinal))
                return architecture;
        }
        return supported.Count > 0 ? supported[0] : "";
    }

    /// <summary>
    /// Parameters of the tensors a model bound, counted once each, in total and per stored dtype (norm scales and
    /// biases are widened to float32 at load; they count under the dtype the checkpoint stores them in).
    /// </summary>
    public static (long Total, IReadOnlyDictionary<string, long> ByDType) CountParameters(ModelDirectory directory, IEnumerable<string> tensorNames)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(tensorNames);
        long total = 0;
        var byDType = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var name in tensorNames.Distinct(StringComparer.Ordinal))
        {
            var info = directory.Get(name).Info;
            long count = 1;
            foreach (long dimension in info.Shape)
                count *= dimension;
            total += count;
            string dtype = info.DType.ToString();
            byDType[dtype] = byDType.GetValueOrDefault(dtype) + count;
        }
        return (total, byDType);
    }

    /// <summary>Refuses a token id outside [0, <paramref name="vocabSize"/>), naming the id, its position and the range.</summary>
    public static void CheckTokens(ReadOnlySpan<int> tokens, int vocabSize)
    {
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)vocabSize)
                throw new HorizonException($"token id {tokens[i]} at position {i} is out of range [0, {vocabSize})");
        }
    }

    /// <summary>Refuses to run <paramref name="count"/> more tokens than <paramref name="state"/> has room for.</summary>
    public static void CheckRoom(IModelState state, int count)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (count > state.Capacity - state.Length)
            throw new HorizonException($"the state holds {state.Length} of at most {state.Capacity} tokens; {count} more do not fit (create a state with a larger capacity)");
    }

    /// <summary>Refuses a logits span shorter than <paramref name="count"/> rows of <paramref name="vocabSize"/>.</summary>
    public static void CheckLogits(int logitsLength, int count, int vocabSize)
    {
        long needed = (long)count * vocabSize;
        if (logitsLength < needed)
            throw new ArgumentException($"logits has room for {logitsLength} values; {count} tokens × {vocabSize} vocab need {needed}", "logits");
    }
}
