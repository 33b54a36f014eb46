using System.Globalization;

namespace Horizon.Ops;

/// <summary>How the long convolution of a <c>hyena</c> node is evaluated: chosen by cost (Auto), or forced.</summary>
public enum HyenaConvolutionPath
{
    /// <summary>Direct form for few new rows (decode, short chunks), FFT otherwise.</summary>
    Auto,
    /// <summary>y_t = Σ_s h_s·u_(t−s) summed directly: O(rows·T) per channel.</summary>
    Direct,
    /// <summary>Zero-padded FFT convolution: O(n log n) per channel, n = the power of two ≥ T + rows − 1.</summary>
    Fft,
}

/// <summary>
/// Sizes of a <c>hyena</c> node (HyenaDNA's <c>HyenaOperator</c>, order 2). Hidden is <c>d_model</c> (D): the
/// input projection makes 3D channels, the long convolution runs over D. MaxLength is <c>max_seq_len</c>, the
/// length of the stored positional embedding z and so the longest context. FilterOrder is the implicit filter
/// network's width, InnerMlps its number of hidden order×order layers, EmbeddingDim the width of z.
/// ActivationFrequency is the Sin activations' frequency used only when the checkpoint holds no <c>freq</c>
/// tensor; ModulationShift is the constant added to the exponential window (0.05 in the HF remote code).
/// </summary>
public sealed record HyenaOptions(
    int Hidden,
    int MaxLength,
    int EmbeddingDim = 3,
    int FilterOrder = 64,
    int InnerMlps = 2,
    int ShortFilterWidth = 3,
    double ActivationFrequency = 1.0,
    double ModulationShift = 0.05,
    HyenaConvolutionPath Path = HyenaConvolutionPath.Auto)
{
    /// <summary>The Hyena recurrence's order (<c>hyena_order</c>); only 2, HyenaDNA's, is supported (<see cref="Validate"/>).</summary>
    public int Order { get; init; } = 2;

    /// <summary>3·Hidden: the channels of in_proj and of the short filter (x0, x1, v back to back).</summary>
    public int InnerWidth => 3 * Hidden;

    /// <summary>
    /// Reads the HyenaDNA <c>config.json</c> keys (<c>LongSafari/hyenadna-*-hf</c>, model_type <c>hyenadna</c>):
    /// d_model, max_seq_len, emb_dim (3), filter_order (64), num_inner_mlps (2), short_filter_order (3),
    /// activation_freq (1), hyena_order (2). Defaults are those of the checkpoints' HyenaConfig.
    /// </summary>
    public static HyenaOptions FromConfig(ModelConfig config)
    {
        int hidden = config.Positive(config.GetInt("d_model"), "d_model");
        int maxLength = config.Positive(config.GetInt("max_seq_len"), "max_seq_len");
        int embeddingDim = config.TryGetInt("emb_dim") ?? 3;
        int filterOrder = config.Positive(config.TryGetInt("filter_order") ?? 64, "filter_order");
        int innerMlps = config.TryGetInt("num_inner_mlps") ?? 2;
        int shortFilter = config.TryGetInt("short_filter_order") ?? 3;
        int order = config.TryGetInt("hyena_order") ?? 2;
        double frequency = config.TryGetDouble("activation_freq") ?? 1.0;
        if (order != 2)
            throw new ModelLoadException($"{config.Path}: hyena_order = {order} is not supported (only 2: the HF remote code's filter has d_model outputs, one long filter)");
        if (embeddingDim < 3 || embeddingDim % 2 == 0)
            throw new ModelLoadException($"{config.Path}: emb_dim = {embeddingDim} must be odd and ≥ 3 (time, then cosine and sine bands)");
        if (innerMlps < 0)
            throw new ModelLoadException($"{config.Path}: num_inner_mlps = {innerMlps} must not be negative");
        if (shortFilter != 3)
            throw new ModelLoadException($"{config.Path}: short_filter_order = {shortFilter} is not supported: the HF remote code pads the short filter by 2 whatever its width, which is causal only for width 3");
        return new HyenaOptions(hidden, maxLength, embeddingDim, filterOrder, innerMlps, shortFilter, frequency);
    }

    /// <summary>
    /// Refuses options the op cannot run, with a <see cref="ModelLoadException"/> whose message starts with
    /// <paramref name="source"/> (a generated model passes its config.json path): sizes must be positive (inner
    /// layers ≥ 0), the positional embedding odd and ≥ 3 wide, the order 2 and the short filter 3 wide (see <see cref="FromConfig"/>).
    /// </summary>
    public void Validate(string source)
    {
        if (Hidden <= 0 || MaxLength <= 0 || FilterOrder <= 0)
            throw new ModelLoadException($"{source}: hyena: d_model = {Hidden}, max_seq_len = {MaxLength} and filter_order = {FilterOrder} must be positive");
        if (EmbeddingDim < 3 || EmbeddingDim % 2 == 0)
            throw new ModelLoadException($"{source}: hyena: emb_dim = {EmbeddingDim} must be odd and ≥ 3 (time, then cosine and sine bands)");
        if (InnerMlps < 0)
            throw new ModelLoadException($"{source}: hyena: num_inner_mlps = {InnerMlps} must not be negative");
        if (Order != 2)
            throw new ModelLoadException($"{source}: hyena: hyena_order = {Order} is not supported (only 2: the HF remote code's filter has d_model outputs, one long filter)");
        if (ShortFilterWidth != 3)
            throw new ModelLoadException($"{source}: hyena: short_filter_order = {ShortFilterWidth} is not supported: the HF remote code pads the short filter by 2 whatever its width, which is causal only for width 3");
    }
}

/// <summary>
/// Tensor names of one HyenaDNA mixer, relative to its prefix <see cref="MixerPrefix"/>
/// (<c>hyena.backbone.layers.{layer}.mixer.</c> in <c>HyenaDNAForCausalLM</c> checkpoints).
/// </summary>
public static class HyenaTensorNames
{
    public const string InProjWeight = "in_proj.weight";                   // [3D, D]
    public const string InProjBias = "in_proj.bias";                       // [3D]
    public const string ShortFilterWeight = "short_filter.weight";         // [3D, 1, 3] depthwise Conv1d
    public const string ShortFilterBias = "short_filter.bias";             // [3D]
    public const string OutProjWeight = "out_proj.weight";                 // [D, D]
    public const string OutProjBias = "out_proj.bias";                     // [D]
    public const string FilterBias = "filter_fn.bias";                     // [D], the skip term D of y = h∗u + D⊙u
    public const string PositionalEmbedding = "filter_fn.pos_emb.z";       // [1, max_seq_len, emb_dim]
    public const string Time = "filter_fn.pos_emb.t";                      // [1, max_seq_len, 1]
    public const string Deltas = "filter_fn.modulation.deltas";            // [1, 1, D]

    public static string MixerPrefix(int layer) => $"hyena.backbone.layers.{layer.ToString(CultureInfo.InvariantCulture)}.mixer.";

    /// <summary>The i-th Linear of the implicit filter network (Sequential index 2i): i = 0 … num_inner_mlps + 1.</summary>
    public static string ImplicitLinearWeight(int i) => $"filter_fn.implicit_filter.{(2 * i).ToString(CultureInfo.InvariantCulture)}.weight";

    public static string ImplicitLinearBias(int i) => $"filter_fn.implicit_filter.{(2 * i).ToString(CultureInfo.InvariantCulture)}.bias";

    /// <summary>The Sin activation after Linear i (Sequential index 2i + 1). One module is shared by every
    /// position of the Sequential, so all these names are one tensor; a safetensors file keeps only one of them.</summary>
    public static string Frequency(int i) => $"filter_fn.implicit_filter.{(2 * i + 1).ToString(CultureInfo.InvariantCulture)}.freq";
}

/// <summary>
/// Weights of the implicit long filter h (HyenaDNA's <c>filter_fn</c>), as stored.
/// PositionalEmbedding is z (max_seq_len, emb_dim) = [t, cos(−f·ω), sin(−f·ω)] (a trained tensor in the HF
/// checkpoints: loaded, not recomputed; null: the formula's initial value). Time is t (max_seq_len), null: t_s =
/// s/(max_seq_len − 1). Linears are the filter network's layers [order, emb_dim], [order, order]×num_inner_mlps,
/// [D, order]; LinearBiases the biases of all but the last (which has none). Frequency [order] is the Sin
/// activations' shared <c>freq</c>. Deltas [D] are the decay rates of the window (null: the HF initial
/// linspace(ln(0.01)/1.5, ln(0.01)/0.3, D), stored as a buffer). Bias [D] is <c>filter_fn.bias</c>, the skip term.
/// </summary>
public sealed record HyenaFilterWeights(
    Matrix? PositionalEmbedding,
    float[]? Time,
    Matrix[] Linears,
    float[][] LinearBiases,
    float[] Frequency,
    float[]? Deltas,
    float[] Bias);

/// <summary>
/// The implicit long filter h, materialised: h[c, s] = (W_out · a_s)_c · (exp(−t_s·|δ_c|) + shift), where a_s
/// is the Sin network applied to z_s (Poli et al. 2023, Hyena Hierarchy §3.2: h_t = Window(t)·(FFN ∘
/// PositionalEncoding)(t); HyenaDNA's ExponentialModulation is the window). Lag s depends only on z_s and t_s,
/// so h is computed once for the first lags needed and extended (doubling, up to max_seq_len) when a longer
/// context is asked for: only the new lags are computed, the old ones are copied into the larger array, which is
/// then published. Safe to share between threads and states.
/// </summary>
public sealed class HyenaImplicitFilter
{
    private readonly object _growLock = new();
    private readonly Cpu.ImplicitFilterNetwork _network;
    private volatile Materialized _current;

    /// <param name="weights">The stored tensors.</param>
    /// <param name="options">Sizes; Hidden is the number of channels, MaxLength the longest filter.</param>
    /// <param name="initialLength">Lags to materialise now (clamped to [1, MaxLength]), typically the context the model is created for.</param>
    public HyenaImplicitFilter(HyenaFilterWeights weights, HyenaOptions options, int initialLength)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        _network = new Cpu.ImplicitFilterNetwork(weights, options);
        Channels = options.Hidden;
        MaxLength = options.MaxLength;
        Bias = weights.Bias;
        if (Bias.Length != Channels)
            throw new ModelLoadException($"hyena filter: bias has {Bias.Length} values, expected {Channels}");
        _current = new Materialized(0, []);
        EnsureLength(Math.Clamp(initialLength, 1, MaxLength));
    }

    /// <summary>D, the channels of the long convolution.</summary>
    public int Channels { get; }

    /// <summary>max_seq_len: the longest filter (the length of z).</summary>
    public int MaxLength { get; }

    /// <summary>Lags computed so far.</summary>
    public int MaterializedLength => _current.Length;

    /// <summary>filter_fn.bias [D]: y = h ∗ u + bias ⊙ u.</summary>
    public float[] Bias { get; }

    /// <summary>Makes lags [0, length) available, growing to max(length, 2 × current) capped at MaxLength.</summary>
    public void EnsureLength(int length)
    {
        if (length <= _current.Length)
            return;
        if (length > MaxLength)
            throw new HorizonException($"hyena: a context of {length} tokens exceeds max_seq_len = {MaxLength}, the length of the stored filter");
        lock (_growLock)
        {
            var old = _current;
            if (length <= old.Length)
                return;
            int grown = (int)Math.Min(MaxLength, Math.Max(length, 2L * old.Length));
            _current = Cpu.HyenaKernels.ExtendImplicitFilter(_network, old.Length, old.Reversed, grown);
        }
    }

    /// <summary>Writes h[channel, 0 … destination.Length) (lag order), materialising what is missing.</summary>
    public void CopyFilter(int channel, Span<float> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(channel);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(channel, Channels);
        EnsureLength(destination.Length);
        var m = _current;
        var block = m.Reversed.AsSpan(channel * m.Length, m.Length);
        for (int s = 0; s < destination.Length; s++)
            destination[s] = block[m.Length - 1 - s];
    }

    internal Materialized Current => _current;

    /// <summary>HyenaDNA's initial z as (maxLength, embeddingDim) row-major: z_s = [s/(L − 1), cos(−f_b·2πs/L),
    /// sin(−f_b·2πs/L)], f = linspace(10⁻⁴, B − 1, B), B = (emb_dim − 1)/2 bands. What the filter uses when a
    /// checkpoint has no <c>pos_emb.z</c>; trained checkpoints store their own.</summary>
    public static float[] InitialPositionalEmbedding(int maxLength, int embeddingDim)
    {
        var result = new float[(long)maxLength * embeddingDim];
        var row = new double[embeddingDim];
        for (int s = 0; s < maxLength; s++)
        {
            Cpu.ImplicitFilterNetwork.InitialPositionalEmbeddingRow(s, maxLength, row);
            for (int j = 0; j < embeddingDim; j++)
                result[(long)s * embeddingDim + j] = (float)row[j];
        }
        return result;
    }

    /// <summary>HyenaDNA's deltas: linspace(ln(0.01)/1.5, ln(0.01)/0.3, D), a buffer (never trained).</summary>
    public static float[] InitialDeltas(int channels) => Cpu.ImplicitFilterNetwork.InitialDeltas(channels);

    /// <summary>
    /// h for lags [0, Length), stored (D, Length) with each channel reversed: Reversed[c·Length + Length − 1 − s] =
    /// h[c, s], so y_t = Σ_{j≤t} u_j·h_(t−j) is one contiguous dot product of u[0 … t] with
    /// Reversed[c·Length + Length − 1 − t …]. Immutable once published.
    /// </summary>
    internal sealed record Materialized(int Length, float[] Reversed);
}

/// <summary>
/// Weights of a <c>hyena</c> node (HyenaDNA <c>HyenaOperator</c>, HF layout): in_proj [3D, D] (+ bias [3D]),
/// the depthwise short filter [3D, 1, K] stored as (3D, K) (+ bias [3D]), the implicit long filter, out_proj
/// [D, D] (+ bias [D]).
/// </summary>
public sealed record HyenaWeights(
    Matrix InProj,
    float[]? InProjBias,
    float[] ShortFilter,
    float[]? ShortFilterBias,
    HyenaImplicitFilter Filter,
    Matrix OutProj,
    float[]? OutProjBias)
{
    /// <summary>
    /// Binds one mixer from a checkpoint by its HF names under <paramref name="prefix"/> (e.g.
    /// <see cref="HyenaTensorNames.MixerPrefix"/>(0)), checking every shape, and materialises the filter for
    /// <paramref name="materializeLength"/> lags. The shared Sin <c>freq</c> is read from the first of
    /// implicit_filter.1/3/5/….freq present (a safetensors save keeps one of the aliases), else it is
    /// activation_freq, as the HF code initialises it when the key is missing. The name of every tensor read is
    /// added to <paramref name="boundTensors"/> when given (a generated model counts its parameters from them).
    /// </summary>
    public static HyenaWeights Load(ModelDirectory directory, string prefix, HyenaOptions options, int materializeLength, ICollection<string>? boundTensors = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(options);
        // Every name read goes through Bound, present or optional-and-present.
        string Bound(string name)
        {
            if (directory.Contains(name))
                boundTensors?.Add(name);
            return name;
        }
        int d = options.Hidden, w = options.InnerWidth, k = options.ShortFilterWidth, order = options.FilterOrder;
        int layers = options.InnerMlps + 2;

        var inProj = directory.Matrix(Bound(prefix + HyenaTensorNames.InProjWeight), w, d);
        var inBias = directory.OptionalVector(Bound(prefix + HyenaTensorNames.InProjBias), w);
        var shortFilter = Tensor(directory, Bound(prefix + HyenaTensorNames.ShortFilterWeight), [w, 1, k]);
        var shortBias = directory.OptionalVector(Bound(prefix + HyenaTensorNames.ShortFilterBias), w);
        var outProj = directory.Matrix(Bound(prefix + HyenaTensorNames.OutProjWeight), d, d);
        var outBias = directory.OptionalVector(Bound(prefix + HyenaTensorNames.OutProjBias), d);

        string zName = prefix + HyenaTensorNames.PositionalEmbedding;
        Matrix? z = null;
        if (directory.Contains(zName))
        {
            var (info, data) = directory.Get(Bound(zName));
            CheckShape(directory, info, [1, options.MaxLength, options.EmbeddingDim]);
            z = new Matrix(zName, options.MaxLength, options.EmbeddingDim, ToWeightDType(directory, info), data);
        }
        string tName = prefix + HyenaTensorNames.Time;
        float[]? t = directory.Contains(tName) ? Tensor(directory, Bound(tName), [1, options.MaxLength, 1]) : null;
        string deltaName = prefix + HyenaTensorNames.Deltas;
        float[]? deltas = directory.Contains(deltaName) ? Tensor(directory, Bound(deltaName), [1, 1, d]) : null;
        var bias = directory.Vector(Bound(prefix + HyenaTensorNames.FilterBias), d);

        var linears = new Matrix[layers];
        var biases = new float[layers - 1][];
        for (int i = 0; i < layers; i++)
        {
            int rows = i == layers - 1 ? d : order;
            int cols = i == 0 ? options.EmbeddingDim : order;
            linears[i] = directory.Matrix(Bound(prefix + HyenaTensorNames.ImplicitLinearWeight(i)), rows, cols);
            if (i < layers - 1)
                biases[i] = directory.Vector(Bound(prefix + HyenaTensorNames.ImplicitLinearBias(i)), order);
            else if (directory.Contains(prefix + HyenaTensorNames.ImplicitLinearBias(i)))
                throw new ModelLoadException($"{directory.Path}: tensor '{prefix + HyenaTensorNames.ImplicitLinearBias(i)}' is unexpected: the last filter Linear has no bias");
        }

        float[]? frequency = null;
        string? frequencyName = null;
        for (int i = 0; i < layers - 1; i++)
        {
            string name = prefix + HyenaTensorNames.Frequency(i);
            if (!directory.Contains(name))
                continue;
            var value = Tensor(directory, Bound(name), [1, order]);
            if (frequency is null)
            {
                frequency = value;
                frequencyName = name;
            }
            else if (!value.AsSpan().SequenceEqual(frequency))
            {
                throw new ModelLoadException($"{directory.Path}: '{name}' differs from '{frequencyName}': HyenaDNA shares one Sin activation, so every freq alias must be equal");
            }
        }
        frequency ??= Enumerable.Repeat((float)options.ActivationFrequency, order).ToArray();

        var filterWeights = new HyenaFilterWeights(z, t, linears, biases, frequency, deltas, bias);
        return new HyenaWeights(inProj, inBias, shortFilter, shortBias,
            new HyenaImplicitFilter(filterWeights, options, materializeLength), outProj, outBias);
    }

    /// <summary>A tensor of exactly <paramref name="shape"/>, widened to float32.</summary>
    private static float[] Tensor(ModelDirectory directory, string name, long[] shape)
    {
        var (info, data) = directory.Get(name);
        CheckShape(directory, info, shape);
        return WeightConversion.ToSingleArray(data.Span, ToWeightDType(directory, info));
    }

    private static void CheckShape(ModelDirectory directory, SafeTensorInfo info, long[] expected)
    {
        if (!info.Shape.SequenceEqual(expected))
            throw new ModelLoadException($"{directory.Path}: tensor '{info.Name}' has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", expected)}]");
    }

    private static WeightDType ToWeightDType(ModelDirectory directory, SafeTensorInfo info) => info.DType switch
    {
        SafeTensorsDType.F32 => WeightDType.F32,
        SafeTensorsDType.F16 => WeightDType.F16,
        SafeTensorsDType.BF16 => WeightDType.BF16,
        _ => throw new ModelLoadException($"{directory.Path}: tensor '{info.Name}' has dtype {info.DType}; weights must be F32, F16 or BF16"),
    };
}

/// <summary>
/// The per-session state of one <c>hyena</c> layer. Unlike a recurrence it grows with the context:
/// it keeps u = v ⊙ x1, the long convolution's input, for every token seen (D floats per token, stored
/// channel-major (D, stride) so each channel's history is contiguous), plus the last K − 1 rows of the in_proj
/// output (K − 1, 3D) that the short filter of the next token reads. History memory is allocated as the context
/// grows (doubling, up to Capacity).
/// </summary>
public sealed class HyenaState
{
    private float[] _history = [];
    private int _stride;

    public HyenaState(int capacity, int hidden, int shortFilterWidth = 3)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(hidden);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(shortFilterWidth);
        Capacity = capacity;
        Hidden = hidden;
        ShortFilterWidth = shortFilterWidth;
        ShortTail = new float[(shortFilterWidth - 1) * 3 * hidden];
    }

    /// <summary>A state sized for <paramref name="options"/>.</summary>
    public HyenaState(int capacity, HyenaOptions options) : this(capacity, options.Hidden, options.ShortFilterWidth) { }

    public int Capacity { get; }
    public int Hidden { get; }
    public int ShortFilterWidth { get; }

    /// <summary>Tokens seen.</summary>
    public int Length { get; internal set; }

    /// <summary>Bytes held now: 4·D·(allocated history) + 4·(K − 1)·3D. Grows with the context (≈ 4·D bytes per token).</summary>
    public long AllocatedBytes => 4L * (_history.Length + ShortTail.Length);

    /// <summary>u = v ⊙ x1 of channel <paramref name="channel"/> for positions 0 … Length − 1.</summary>
    public ReadOnlySpan<float> ChannelHistory(int channel)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(channel);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(channel, Hidden);
        return Length == 0 ? [] : _history.AsSpan(channel * _stride, Length);
    }

    /// <summary>Forgets every token (keeps the allocated memory).</summary>
    public void Reset()
    {
        Length = 0;
        Array.Clear(ShortTail);
    }

    /// <summary>Makes this state equal to <paramref name="source"/> (same Hidden and filter width; its Length must fit this Capacity).</summary>
    public void CopyFrom(HyenaState source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (ReferenceEquals(source, this))
            return;
        if (source.Hidden != Hidden || source.ShortFilterWidth != ShortFilterWidth)
            throw new ArgumentException($"hyena state: cannot copy a state of D = {source.Hidden}, K = {source.ShortFilterWidth} into one of D = {Hidden}, K = {ShortFilterWidth}", nameof(source));
        if (source.Length > Capacity)
            throw new ArgumentException($"hyena state: the source holds {source.Length} tokens, more than this capacity {Capacity}", nameof(source));
        EnsureHistory(source.Length);
        for (int c = 0; c < Hidden && source.Length > 0; c++)
            source._history.AsSpan(c * source._stride, source.Length).CopyTo(_history.AsSpan(c * _stride, source.Length));
        source.ShortTail.CopyTo(ShortTail.AsSpan());
        Length = source.Length;
    }

    /// <summary>The last K − 1 rows of the in_proj output, (K − 1, 3D), oldest first; rows before position 0 are zero.</summary>
    internal float[] ShortTail { get; }

    /// <summary>History laid out (D, HistoryStride).</summary>
    internal Span<float> History => _history;

    internal int HistoryStride => _stride;

    /// <summary>Grows the history so positions [0, length) fit, keeping what is there.</summary>
    internal void EnsureHistory(int length)
    {
        if (length <= _stride)
            return;
        int stride = (int)Math.Min(Capacity, Math.Max(length, Math.Max(64L, 2L * _stride)));
        var grown = new float[(long)Hidden * stride];
        for (int c = 0; c < Hidden && Length > 0; c++)
            _history.AsSpan(c * _stride, Length).CopyTo(grown.AsSpan(c * stride, Length));
        _history = grown;
        _stride = stride;
    }
}

/// <summary>
/// <c>hyena</c>: the HyenaDNA long-convolution token mixer (Poli et al. 2023, Hyena Hierarchy, the order-2
/// recurrence of §3.1 and Algorithms 1–3; Nguyen et al. 2023, HyenaDNA):
/// (x0, x1, v) = split(ShortConv(in_proj(x))), u = v ⊙ x1, y = out_proj(x0 ⊙ (h ∗ u + bias ⊙ u)) with the
/// causal long convolution (h ∗ u)_t = Σ_{s=0}^{t} h_s·u_(t−s) per channel and h the implicit filter.
/// </summary>
public static class Hyena
{
    /// <summary>
    /// x is (rows, D): the rows are the tokens at positions state.Length … state.Length + rows − 1. Appends their
    /// long-convolution inputs to <paramref name="state"/> and writes y (rows, D). y must not overlap x.
    /// Prefill of many rows uses FFT convolution; a decode step costs O(T·D) (direct form over the whole history
    /// of T tokens: Hyena has no fixed-size recurrent state).
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, HyenaWeights weights, HyenaOptions options, HyenaState state, Span<float> y) =>
        Cpu.HyenaKernels.HyenaLayer(x, rows, weights, options, state, y);
}
