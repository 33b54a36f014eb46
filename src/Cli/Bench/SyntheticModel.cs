using System.Diagnostics;
using Horizon.Cpu;
using Horizon.Ops;

namespace Horizon.Cli.Bench;

/// <summary>The sizes shared by every synthetic model of one benchmark run.</summary>
/// <param name="Width">D, the residual width.</param>
/// <param name="Layers">Blocks of RMSNorm → mixer → residual → RMSNorm → SwiGLU → residual.</param>
/// <param name="Heads">Heads of attention, sliding-window attention and GLA (Hyena has none).</param>
/// <param name="Window">w of <c>sliding_window_attention</c>.</param>
/// <param name="MaxLength">The longest context measured: the KV cache and Hyena's max_seq_len.</param>
internal sealed record ModelShape(int Width, int Layers, int Heads, int Window, int MaxLength)
{
    /// <summary>
    /// I of the SwiGLU MLP, the same for every mixer: fla's GLA default, 256·⌈int(D·4·2/3)/256⌉ (768 for D = 256).
    /// </summary>
    public int Intermediate => 256 * ((Width * 8 / 3 + 255) / 256);

    /// <summary>Attention head size D / heads.</summary>
    public int HeadDim => Width / Heads;
}

/// <summary>One token mixer of a synthetic model: its weights, and a factory for its per-session state.</summary>
internal abstract class TokenMixer
{
    /// <summary>Weights of this mixer (not counting buffers that are not parameters, such as Hyena's z).</summary>
    public abstract long ParameterCount { get; }

    /// <summary>A fresh state for a context of up to <paramref name="capacity"/> tokens.</summary>
    public abstract MixerState CreateState(int capacity);
}

/// <summary>The per-session state of one mixer layer (KV cache, ring, recurrent state or history) and its forward.</summary>
internal abstract class MixerState
{
    /// <summary>x is (rows, D), the tokens after those the state holds; writes y (rows, D) and advances the state.</summary>
    public abstract void Forward(ReadOnlySpan<float> x, int rows, Span<float> y);

    /// <summary>Bytes the state holds now (allocated, whether or not every slot is filled).</summary>
    public abstract long Bytes { get; }
}

/// <summary>
/// A small pre-norm model around one kind of token mixer, with random weights from fixed seeds: per layer
/// h ← h + mixer(RMSNorm(h)), h ← h + SwiGLU(RMSNorm(h)). No embedding and no LM head: they cost the same per
/// token whatever the mixer, so the inputs are random (tokens, D) activations.
/// </summary>
internal sealed class SyntheticModel
{
    private const float NormEps = 1e-6f;

    private readonly RmsNormWeights[] _mixerNorms;
    private readonly RmsNormWeights[] _mlpNorms;
    private readonly SwiGluMlpWeights[] _mlps;
    private readonly TokenMixer[] _mixers;

    private SyntheticModel(string mixer, ModelShape shape, RmsNormWeights[] mixerNorms, RmsNormWeights[] mlpNorms, SwiGluMlpWeights[] mlps, TokenMixer[] mixers)
    {
        Mixer = mixer;
        Shape = shape;
        _mixerNorms = mixerNorms;
        _mlpNorms = mlpNorms;
        _mlps = mlps;
        _mixers = mixers;
    }

    /// <summary>The mixers this benchmark knows, in table order; attention is the anchor the others are compared with.</summary>
    public static IReadOnlyList<string> MixerNames { get; } = ["attention", "sliding_window_attention", "gla", "hyena"];

    public string Mixer { get; }

    public ModelShape Shape { get; }

    /// <summary>Parameters of the mixers of all layers.</summary>
    public long MixerParameterCount => _mixers.Sum(m => m.ParameterCount);

    /// <summary>Parameters of the whole model: mixers, MLPs and norms.</summary>
    public long ParameterCount =>
        MixerParameterCount
        + _mlps.Sum(m => m.Gate.ElementCount + m.Up.ElementCount + m.Down.ElementCount)
        + _mixerNorms.Sum(n => (long)n.Gamma.Length) + _mlpNorms.Sum(n => (long)n.Gamma.Length);

    /// <summary>
    /// Builds the model for <paramref name="mixer"/>. The norms and MLPs use the same seeds for every mixer, so the
    /// models differ only in their token mixers.
    /// </summary>
    public static SyntheticModel Create(string mixer, ModelShape shape)
    {
        int d = shape.Width, layers = shape.Layers;
        var mixerNorms = new RmsNormWeights[layers];
        var mlpNorms = new RmsNormWeights[layers];
        var mlps = new SwiGluMlpWeights[layers];
        var mixers = new TokenMixer[layers];
        for (int layer = 0; layer < layers; layer++)
        {
            var shared = new SyntheticWeights(1000 + layer);
            mixerNorms[layer] = new RmsNormWeights(SyntheticWeights.Ones(d));
            mlpNorms[layer] = new RmsNormWeights(SyntheticWeights.Ones(d));
            int inner = shape.Intermediate;
            mlps[layer] = new SwiGluMlpWeights(shared.Linear("mlp.gate", inner, d), shared.Linear("mlp.up", inner, d), shared.Linear("mlp.down", d, inner));

            var own = new SyntheticWeights(2000 + 100 * MixerIndex(mixer) + layer);
            mixers[layer] = mixer switch
            {
                "attention" => new AttentionMixer(own, shape),
                "sliding_window_attention" => new SlidingWindowMixer(own, shape),
                "gla" => new GlaMixer(own, shape),
                "hyena" => new HyenaMixer(own, shape),
                _ => throw new HorizonException($"unknown mixer '{mixer}' (known: {string.Join(", ", MixerNames)})"),
            };
        }
        return new SyntheticModel(mixer, shape, mixerNorms, mlpNorms, mlps, mixers);
    }

    private static int MixerIndex(string mixer)
    {
        for (int i = 0; i < MixerNames.Count; i++)
            if (MixerNames[i] == mixer)
                return i;
        throw new HorizonException($"unknown mixer '{mixer}' (known: {string.Join(", ", MixerNames)})");
    }

    /// <summary>A fresh session for up to <paramref name="capacity"/> tokens fed <paramref name="chunk"/> at a time.</summary>
    public Session CreateSession(int capacity, int chunk) =>
        new([.. _mixers.Select(m => m.CreateState(capacity))], Math.Min(chunk, capacity), Shape.Width);

    /// <summary>
    /// Prefill: x is (tokens, D); the tokens go through the model <see cref="Session.Chunk"/> rows at a time, each
    /// chunk through every layer before the next one, the mixers' states carrying the context between chunks (as
    /// a runtime prefills a long prompt). Returns the Stopwatch ticks spent inside the mixers.
    /// </summary>
    public long Prefill(Session session, ReadOnlySpan<float> x, int tokens)
    {
        int d = Shape.Width;
        long mixerTicks = 0;
        for (int start = 0; start < tokens; start += session.Chunk)
        {
            int rows = Math.Min(session.Chunk, tokens - start);
            Span<float> h = session.Residual.AsSpan(0, rows * d);      // (rows, D): the residual stream
            Span<float> normed = session.Normed.AsSpan(0, rows * d);   // (rows, D)
            Span<float> mixed = session.Mixed.AsSpan(0, rows * d);     // (rows, D)
            x.Slice(start * d, rows * d).CopyTo(h);
            long chunkTicks = 0;
            for (int layer = 0; layer < _mixers.Length; layer++)
            {
                RmsNorm.Forward(h, rows, _mixerNorms[layer], NormEps, normed);
                long before = Stopwatch.GetTimestamp();
                session.States[layer].Forward(normed, rows, mixed);
                chunkTicks += Stopwatch.GetTimestamp() - before;
                CpuKernels.Add(h, mixed);
                RmsNorm.Forward(h, rows, _mlpNorms[layer], NormEps, normed);
                SwiGluMlp.Forward(normed, rows, _mlps[layer], mixed);
                CpuKernels.Add(h, mixed);
            }
            session.LastRows = rows;
            session.ChunkMixerTicks.Add(chunkTicks);
            mixerTicks += chunkTicks;
        }
        return mixerTicks;
    }

    /// <summary>One prefill's mixer states and its (chunk, D) working buffers.</summary>
    internal sealed class Session(MixerState[] states, int chunk, int width)
    {
        public MixerState[] States { get; } = states;

        public int Chunk { get; } = chunk;

        public float[] Residual { get; } = new float[(long)chunk * width];

        public float[] Normed { get; } = new float[(long)chunk * width];

        public float[] Mixed { get; } = new float[(long)chunk * width];

        /// <summary>Stopwatch ticks spent in the mixers (all layers) for each chunk, in order.</summary>
        public List<long> ChunkMixerTicks { get; } = [];

        /// <summary>Rows of the last chunk, whose output is in <see cref="Residual"/>.</summary>
        public int LastRows { get; set; }

        /// <summary>Bytes held by the mixer states of all layers after the prefill.</summary>
        public long StateBytes => States.Sum(s => s.Bytes);

        /// <summary>Whether the last chunk's output is finite (a check that the synthetic weights keep the model sane).</summary>
        public bool OutputIsFinite()
        {
            foreach (float value in Residual.AsSpan(0, LastRows * (Residual.Length / Chunk)))
                if (!float.IsFinite(value))
                    return false;
            return true;
        }
    }
}

/// <summary>
/// <c>attention</c>: heads H, head_dim D/H, no grouping, RoPE θ = 10000; 4·D² parameters. The state is a
/// <see cref="KvCache"/> of exactly the context length (8·D bytes per token and layer).
/// </summary>
internal sealed class AttentionMixer(SyntheticWeights random, ModelShape shape) : TokenMixer
{
    private readonly AttentionWeights _weights = random.Attention(shape.Width);
    private readonly AttentionOptions _options = new(shape.Width, shape.Heads, shape.Heads, shape.HeadDim, new RopeTable(shape.HeadDim, 10000.0, RopeScaling.None));

    public override long ParameterCount => SyntheticWeights.Count(_weights);

    public override MixerState CreateState(int capacity) => new State(this, new KvCache(capacity, _options.KvHeads, _options.HeadDim));

    private sealed class State(AttentionMixer mixer, KvCache cache) : MixerState
    {
        public override void Forward(ReadOnlySpan<float> x, int rows, Span<float> y) => Attention.Forward(x, rows, mixer._weights, mixer._options, cache, y);

        public override long Bytes => cache.ByteSize; // the pages held (the cache is paged: memory follows the length)
    }
}

/// <summary>
/// <c>sliding_window_attention</c>: the projections and RoPE of <see cref="AttentionMixer"/> (4·D² parameters),
/// window w, one global token at position 0. The state is a ring of w keys/values plus the global one.
/// </summary>
internal sealed class SlidingWindowMixer(SyntheticWeights random, ModelShape shape) : TokenMixer
{
    private readonly AttentionWeights _weights = random.Attention(shape.Width);
    private readonly SlidingWindowAttentionOptions _options = new(
        new AttentionOptions(shape.Width, shape.Heads, shape.Heads, shape.HeadDim, new RopeTable(shape.HeadDim, 10000.0, RopeScaling.None)),
        shape.Window, [0]);

    public override long ParameterCount => SyntheticWeights.Count(_weights);

    public override MixerState CreateState(int capacity) => new State(this, new SlidingWindowCache(_options));

    private sealed class State(SlidingWindowMixer mixer, SlidingWindowCache cache) : MixerState
    {
        public override void Forward(ReadOnlySpan<float> x, int rows, Span<float> y) => SlidingWindowAttention.Forward(x, rows, mixer._weights, mixer._options, cache, y);

        public override long Bytes => 4L * cache.Floats;
    }
}

/// <summary>
/// <c>gla</c> with fla's defaults expand_k = 0.5, expand_v = 1 (d_k = D/(2H), d_v = D/H), the output gate, no short
/// convolutions, gate rank 16: q, k [D/2, D], v, g, o [D, D] make 4·D² parameters, as attention, plus the low-rank
/// gate (16·D + 16·D/2 + D/2) and the head norm (d_v). The state is (H, d_k, d_v) floats per layer.
/// </summary>
internal sealed class GlaMixer : TokenMixer
{
    private const int GateRank = 16;
    private readonly GlaWeights _weights;
    private readonly GlaOptions _options;

    public GlaMixer(SyntheticWeights random, ModelShape shape)
    {
        int d = shape.Width, heads = shape.Heads;
        _options = new GlaOptions(d, heads, heads, d / 2 / heads, d / heads);
        _weights = new GlaWeights(
            Query: random.Linear("gla.q_proj", _options.KeyDim, d),
            Key: random.Linear("gla.k_proj", _options.KvKeyDim, d),
            Value: random.Linear("gla.v_proj", _options.KvValueDim, d),
            GateDown: random.Linear("gla.gk_proj.0", GateRank, d),
            GateUp: random.Linear("gla.gk_proj.1", _options.KvKeyDim, GateRank),
            GateBias: random.Vector(_options.KvKeyDim, 0.1),
            Output: random.Linear("gla.o_proj", d, _options.ValueDim),
            OutputGate: random.Linear("gla.g_proj", _options.ValueDim, d),
            NormWeight: SyntheticWeights.Ones(_options.HeadVDim));
    }

    public override long ParameterCount =>
        _weights.Query.ElementCount + _weights.Key.ElementCount + _weights.Value.ElementCount
        + _weights.GateDown.ElementCount + _weights.GateUp.ElementCount + (_weights.GateBias?.Length ?? 0)
        + _weights.Output.ElementCount + (_weights.OutputGate?.ElementCount ?? 0) + (_weights.NormWeight?.Length ?? 0);

    public override MixerState CreateState(int capacity) => new State(this, new GlaState(_options));

    private sealed class State(GlaMixer mixer, GlaState state) : MixerState
    {
        public override void Forward(ReadOnlySpan<float> x, int rows, Span<float> y) => Gla.Forward(x, rows, mixer._weights, mixer._options, state, y);

        public override long Bytes => state.ByteSize;
    }
}

/// <summary>
/// <c>hyena</c> (HyenaDNA order 2): in_proj [3D, D] and out_proj [D, D] make 4·D² parameters, as attention, plus
/// biases, the short filter (3D, 3) and the implicit filter network (emb_dim 3, filter_order 64, 2 inner layers).
/// max_seq_len is the longest measured context; the positional embedding z is HyenaDNA's initial formula (a buffer
/// here, not counted as parameters). The filter is materialised for max_seq_len lags when the model is built (a
/// load-time cost, D·max_seq_len floats per layer, shared by sessions). The state keeps u for every token (4·D bytes
/// per token and layer).
/// </summary>
internal sealed class HyenaMixer : TokenMixer
{
    private const int FilterOrder = 64;
    private const int EmbeddingDim = 3;
    private const int InnerMlps = 2;
    private readonly HyenaWeights _weights;
    private readonly HyenaOptions _options;
    private readonly long _filterParameters;

    public HyenaMixer(SyntheticWeights random, ModelShape shape)
    {
        int d = shape.Width;
        _options = new HyenaOptions(d, shape.MaxLength, EmbeddingDim, FilterOrder, InnerMlps, ShortFilterWidth: 3, ActivationFrequency: 10.0);
        var linears = new Matrix[InnerMlps + 2];
        var biases = new float[InnerMlps + 1][];
        for (int i = 0; i < linears.Length; i++)
        {
            int rows = i == linears.Length - 1 ? d : FilterOrder, cols = i == 0 ? EmbeddingDim : FilterOrder;
            linears[i] = random.Linear($"hyena.implicit_filter.{2 * i}", rows, cols);
            if (i < biases.Length)
                biases[i] = random.Vector(FilterOrder, 0.1);
        }
        float[] frequency = Enumerable.Repeat((float)_options.ActivationFrequency, FilterOrder).ToArray();
        float[] skipBias = random.Vector(d, 0.1);
        var filter = new HyenaFilterWeights(PositionalEmbedding: null, Time: null, linears, biases, frequency, Deltas: null, skipBias);
        _filterParameters = linears.Sum(m => m.ElementCount) + biases.Sum(b => (long)b.Length) + frequency.Length + skipBias.Length;
        _weights = new HyenaWeights(
            random.Linear("hyena.in_proj", 3 * d, d), random.Vector(3 * d, 0.1),
            random.Vector(3 * d * 3, 0.5), random.Vector(3 * d, 0.1),
            new HyenaImplicitFilter(filter, _options, shape.MaxLength),
            random.Linear("hyena.out_proj", d, d), random.Vector(d, 0.1));
    }

    public override long ParameterCount =>
        _weights.InProj.ElementCount + (_weights.InProjBias?.Length ?? 0) + _weights.ShortFilter.Length + (_weights.ShortFilterBias?.Length ?? 0)
        + _weights.OutProj.ElementCount + (_weights.OutProjBias?.Length ?? 0) + _filterParameters;

    public override MixerState CreateState(int capacity) => new State(this, new HyenaState(capacity, _options));

    private sealed class State(HyenaMixer mixer, HyenaState state) : MixerState
    {
        public override void Forward(ReadOnlySpan<float> x, int rows, Span<float> y) => Hyena.Forward(x, rows, mixer._weights, mixer._options, state, y);

        public override long Bytes => state.AllocatedBytes;
    }
}

/// <summary>
/// Random weights from one fixed seed: Gaussian, standard deviation 1/√fan_in for matrices (so activations keep
/// their scale), a given scale for vectors. <see cref="Random"/> with a seed is deterministic across runs.
/// </summary>
internal sealed class SyntheticWeights(int seed)
{
    private readonly Random _random = new(seed);

    /// <summary>A Linear weight [rows, cols] (Hugging Face [out, in]), F32, N(0, 1/cols).</summary>
    public Matrix Linear(string name, int rows, int cols) =>
        Matrix.FromFloats(name, rows, cols, Gaussian((long)rows * cols, 1.0 / Math.Sqrt(cols)));

    /// <summary>A vector of <paramref name="length"/> values N(0, scale²).</summary>
    public float[] Vector(int length, double scale) => Gaussian(length, scale);

    /// <summary>q, k, v, o of a D-wide attention layer, no biases.</summary>
    public AttentionWeights Attention(int d) =>
        new(Linear("attn.q_proj", d, d), Linear("attn.k_proj", d, d), Linear("attn.v_proj", d, d), Linear("attn.o_proj", d, d));

    public static float[] Ones(int length) => Enumerable.Repeat(1f, length).ToArray();

    public static long Count(AttentionWeights w) =>
        w.Query.ElementCount + w.Key.ElementCount + w.Value.ElementCount + w.Output.ElementCount
        + (w.QueryBias?.Length ?? 0) + (w.KeyBias?.Length ?? 0) + (w.ValueBias?.Length ?? 0) + (w.OutputBias?.Length ?? 0);

    /// <summary>(tokens, D) random activations, N(0, 1), the stand-in for embedded tokens.</summary>
    public float[] Activations(int tokens, int d) => Gaussian((long)tokens * d, 1.0);

    private float[] Gaussian(long count, double scale)
    {
        var values = new float[count];
        for (long i = 0; i < count; i += 2)
        {
            // Box–Muller: two independent N(0, 1) from two uniforms on (0, 1].
            double radius = Math.Sqrt(-2.0 * Math.Log(1.0 - _random.NextDouble()));
            double angle = 2.0 * Math.PI * _random.NextDouble();
            values[i] = (float)(scale * radius * Math.Cos(angle));
            if (i + 1 < count)
                values[i + 1] = (float)(scale * radius * Math.Sin(angle));
        }
        return values;
    }
}
