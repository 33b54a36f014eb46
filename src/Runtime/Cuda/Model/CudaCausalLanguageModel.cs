using Horizon.Generation;
using Horizon.Ops;

namespace Horizon.Cuda;

/// <summary>
/// Builds a <see cref="CudaCausalLanguageModel"/> from a generated model's typed weights: what the generated
/// <c>ToCuda</c> calls, one node at a time. Every weight goes into one device arena (bf16 matrices, float32 vectors);
/// disposing the builder before <see cref="Build"/> frees it all.
/// </summary>
public sealed class CudaModelBuilder : IDisposable
{
    private readonly CudaBackend _backend;
    private readonly ModelInfo _info;
    private readonly int _vocab, _width;
    private readonly CudaArena _weights;
    private readonly CudaWeightUploader _upload;
    private readonly List<CudaDecoderLayer> _layers = new();
    private CudaDeviceVariable<BFloat16>? _embedding;
    private CudaNorm? _finalNorm;
    private CudaLinear? _head;
    private bool _built;

    public CudaModelBuilder(CudaBackend backend, ModelInfo info, int vocab, int width)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(info);
        _backend = backend;
        _info = info;
        _vocab = vocab;
        _width = width;
        _weights = new CudaArena(backend.Context, 256L << 20);
        _upload = new CudaWeightUploader(_weights);
    }

    public void Embedding(Matrix table)
    {
        Check(table, _vocab, _width, "embedding");
        _embedding = _upload.Matrix(table);
    }

    public CudaNorm RmsNorm(RmsNormWeights weights, float eps) => new CudaRmsNorm(_upload.Vector(weights.Gamma), _width, eps);

    public CudaLayer Attention(AttentionWeights weights, AttentionOptions options)
    {
        CudaAttention.PaddedHeadDim(options.HeadDim); // refuses head dims without a kernel now, not at the first forward
        return new CudaAttention(
            _upload.Linear(weights.Query, weights.QueryBias),
            _upload.Linear(weights.Key, weights.KeyBias),
            _upload.Linear(weights.Value, weights.ValueBias),
            _upload.Linear(weights.Output, weights.OutputBias),
            options,
            options.Rope is RopeTable rope ? _upload.Vector(rope.InverseFrequencies) : null);
    }

    public CudaLayer SwiGluMlp(SwiGluMlpWeights weights) =>
        new CudaSwiGluMlp(_upload.Linear(weights.Gate), _upload.Linear(weights.Up), _upload.Linear(weights.Down));

    public CudaLayer Gla(GlaWeights weights, GlaOptions options) => new CudaGla(_upload, weights, options);

    /// <summary>
    /// One decoder layer: x += mixer(mixer_norm(x)); x += mlp(mlp_norm(x)), or with <paramref name="parallelResidual"/>
    /// x += mixer(mixer_norm(x)) + mlp(mlp_norm(x)).
    /// </summary>
    public void AddLayer(CudaNorm mixerNorm, CudaLayer mixer, CudaNorm mlpNorm, CudaLayer mlp, bool parallelResidual) =>
        _layers.Add(new CudaDecoderLayer(mixerNorm, mixer, mlpNorm, mlp, parallelResidual));

    public void FinalNorm(CudaNorm norm) => _finalNorm = norm;

    public void LmHead(Matrix head)
    {
        Check(head, _vocab, _width, "lm_head");
        _head = _upload.Linear(head);
    }

    public ICausalLanguageModel Build()
    {
        if (_embedding is null || _finalNorm is null || _head is null)
            throw new InvalidOperationException("CudaModelBuilder: Embedding, FinalNorm and LmHead must be given before Build");
        _built = true;
        return new CudaCausalLanguageModel(_backend, _info, _vocab, _width, _weights, _upload.Bytes, _embedding, _layers.ToArray(), _finalNorm, _head);
    }

    private static void Check(Matrix matrix, int rows, int cols, string what)
    {
        if (matrix.Rows != rows || matrix.Cols != cols)
            throw new HorizonException($"{what}: [{matrix.Rows}, {matrix.Cols}] where [{rows}, {cols}] was expected");
    }

    public void Dispose()
    {
        if (!_built)
            _weights.Dispose();
    }
}

/// <summary>One decoder layer of a <see cref="CudaCausalLanguageModel"/>.</summary>
internal sealed record CudaDecoderLayer(CudaNorm MixerNorm, CudaLayer Mixer, CudaNorm MlpNorm, CudaLayer Mlp, bool ParallelResidual);

/// <summary>
/// A generated model on a CUDA device (made by the model's <c>ToCuda</c>): the same <see cref="ICausalLanguageModel"/>
/// as on the CPU, so scoring, sessions, sampling and chat run unchanged. Weights bf16 in one device arena; the
/// residual stream float32; each call's activations from a scratch arena that is reused from call to call, so device
/// memory stops growing after the largest call. Calls on one model are serialised (one stream).
/// </summary>
public sealed class CudaCausalLanguageModel : IDeviceSamplingModel
{
    private readonly CudaBackend _backend;
    private readonly int _width;
    private readonly CudaArena _weights;
    private readonly CudaArena _scratch;
    private readonly CudaDeviceVariable<BFloat16> _embedding;
    private readonly CudaDecoderLayer[] _layers;
    private readonly CudaNorm _finalNorm;
    private readonly CudaLinear _head;
    private readonly bool _anyParallelResidual;
    private readonly object _gate = new();
    private CudaBackend? _ownedBackend;
    private bool _disposed;

    internal CudaCausalLanguageModel(CudaBackend backend, ModelInfo info, int vocab, int width, CudaArena weights, long weightBytes,
        CudaDeviceVariable<BFloat16> embedding, CudaDecoderLayer[] layers, CudaNorm finalNorm, CudaLinear head)
    {
        _backend = backend;
        Info = info;
        VocabSize = vocab;
        _width = width;
        _weights = weights;
        WeightBytes = weightBytes;
        _embedding = embedding;
        _layers = layers;
        _finalNorm = finalNorm;
        _head = head;
        _anyParallelResidual = layers.Any(l => l.ParallelResidual);
        _scratch = new CudaArena(backend.Context, 64L << 20);
    }

    public ModelInfo Info { get; }

    public int VocabSize { get; }

    public CudaBackend Backend => _backend;

    /// <summary>Device bytes of the uploaded weights.</summary>
    public long WeightBytes { get; }

    /// <summary>Device bytes held for activations (the largest call's, kept for the next).</summary>
    public long ScratchBytes => _scratch.ReservedBytes;

    public int LayerCount => _layers.Length;

    IModelState ICausalLanguageModel.CreateState(int capacity) => CreateState(capacity);

    /// <summary>A session of at most <paramref name="capacity"/> tokens: every KV cache and recurrent state allocated on the device now.</summary>
    public CudaModelState CreateState(int capacity)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        // Small blocks: a KV cache larger than one gets a block of its own size, and a short session wastes little.
        var arena = new CudaArena(_backend.Context, 4L << 20);
        try
        {
            var states = new CudaLayerState?[_layers.Length, 2];
            for (int i = 0; i < _layers.Length; i++)
            {
                states[i, 0] = _layers[i].Mixer.CreateState(capacity, arena);
                states[i, 1] = _layers[i].Mlp.CreateState(capacity, arena);
            }
            return new CudaModelState(this, capacity, arena, states);
        }
        catch
        {
            arena.Dispose();
            throw;
        }
    }

    void ICausalLanguageModel.Forward(ReadOnlySpan<int> tokens, IModelState state, Span<float> logits) => Forward(tokens, Own(state), logits);

    /// <summary>
    /// Runs <paramref name="tokens"/> after what <paramref name="state"/> holds and writes their logits, (tokens, vocab)
    /// row-major, to the start of <paramref name="logits"/>. Ids, room and the logits length are checked before
    /// anything is queued.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, CudaModelState state, Span<float> logits)
    {
        Check(tokens, state);
        GeneratedModelSupport.CheckLogits(logits.Length, tokens.Length, VocabSize);
        Run(tokens, state, logits, Head.AllRows, 0, 1, 0);
    }

    void ILastLogitsModel.ForwardLast(ReadOnlySpan<int> tokens, IModelState state, Span<float> lastLogits) =>
        ForwardLast(tokens, Own(state), lastLogits);

    /// <summary>As <see cref="Forward(ReadOnlySpan{int}, CudaModelState, Span{float})"/>, but the output head runs on the last token only and only its logits (vocab floats) come back.</summary>
    public void ForwardLast(ReadOnlySpan<int> tokens, CudaModelState state, Span<float> lastLogits)
    {
        Check(tokens, state);
        if (tokens.Length > 0)
            GeneratedModelSupport.CheckLogits(lastLogits.Length, 1, VocabSize);
        Run(tokens, state, lastLogits, Head.LastRow, 0, 1, 0);
    }

    /// <summary>The largest vocabulary the device sampler takes (<see cref="CudaOps.MaxSamplingVocab"/>).</summary>
    public int MaxSamplingVocab => CudaOps.MaxSamplingVocab;

    int IDeviceSamplingModel.ForwardAndSample(ReadOnlySpan<int> tokens, IModelState state, float temperature, float topP, double uniform) =>
        ForwardAndSample(tokens, Own(state), temperature, topP, uniform);

    /// <summary>
    /// Runs <paramref name="tokens"/> (at least one) and draws the next id on the device from the last row's logits
    /// (<see cref="CudaOps.SampleTopP"/>: greedy at temperature ≤ 0, else the top-p nucleus at <paramref name="uniform"/>);
    /// one int comes back.
    /// </summary>
    /// <exception cref="HorizonException">Every logit of the row is −∞ or NaN.</exception>
    public int ForwardAndSample(ReadOnlySpan<int> tokens, CudaModelState state, float temperature, float topP, double uniform)
    {
        Check(tokens, state);
        if (tokens.Length == 0)
            throw new ArgumentException("ForwardAndSample needs at least one token: the next id follows the last one", nameof(tokens));
        if (VocabSize > MaxSamplingVocab)
            throw new HorizonException($"the device sampler takes at most {MaxSamplingVocab} ids; this model has {VocabSize}");
        if (!(topP is > 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(topP), topP, "top-p must be in (0, 1]");
        if (!(uniform is >= 0 and < 1))
            throw new ArgumentOutOfRangeException(nameof(uniform), uniform, "the uniform draw must be in [0, 1)");
        int id = Run(tokens, state, default, Head.Sample, temperature, topP, uniform);
        if (id < 0)
            throw new HorizonException("every token id is masked (all logits are −∞ or NaN): nothing to pick");
        return id;
    }

    private enum Head
    {
        AllRows,
        LastRow,
        Sample,
    }

    private CudaModelState Own(IModelState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return state as CudaModelState
            ?? throw new ArgumentException($"the state is a {state.GetType().FullName}, not a CUDA model state; use this model's CreateState", nameof(state));
    }

    private void Check(ReadOnlySpan<int> tokens, CudaModelState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (state.Owner != this)
            throw new ArgumentException("the state was created by another CUDA model; use this model's CreateState", nameof(state));
        GeneratedModelSupport.CheckTokens(tokens, VocabSize);
        GeneratedModelSupport.CheckRoom(state, tokens.Length);
    }

    /// <summary>The forward pass; what comes back depends on <paramref name="head"/>: every row's logits, the last row's, or a sampled id (returned).</summary>
    private int Run(ReadOnlySpan<int> tokens, CudaModelState state, Span<float> logits, Head head, float temperature, float topP, double uniform)
    {
        int count = tokens.Length;
        if (count == 0)
            return -1;
        int sampled = -1;
        lock (_gate)
        {
            _scratch.Reset();
            var step = new CudaStep(_backend, _scratch, count, state.Length);
            var ops = _backend.Ops;
            var stream = _backend.Stream;
            long size = (long)count * _width;
            var residual = step.Allocate<float>(size);
            var normed = step.Allocate<BFloat16>(size);
            var branch = step.Allocate<float>(size);
            var parallel = _anyParallelResidual ? step.Allocate<float>(size) : null;
            var ids = _scratch.Upload(tokens);
            ops.Embedding(_embedding, VocabSize, _width, ids, count, residual, stream);

            IResidualHook? hook = state.ResidualHook;
            float[]? host = hook is null ? null : new float[size];
            for (int i = 0; i < _layers.Length; i++)
            {
                var layer = _layers[i];
                layer.MixerNorm.Forward(step, residual, normed);
                layer.Mixer.Forward(step, normed, branch, state.LayerStates[i, 0]);
                if (layer.ParallelResidual)
                {
                    // Both branches read the layer's input: the MLP's norm runs before the mixer's output is added.
                    layer.MlpNorm.Forward(step, residual, normed);
                    layer.Mlp.Forward(step, normed, parallel!, state.LayerStates[i, 1]);
                    ops.Add(residual, branch, size, stream);
                    ops.Add(residual, parallel!, size, stream);
                }
                else
                {
                    ops.Add(residual, branch, size, stream);
                    layer.MlpNorm.Forward(step, residual, normed);
                    layer.Mlp.Forward(step, normed, branch, state.LayerStates[i, 1]);
                    ops.Add(residual, branch, size, stream);
                }
                if (hook is not null)
                {
                    // A hook reads and steers the residual stream on the host: a round trip per layer, only when installed.
                    stream.Synchronize();
                    residual.CopyToHost(host);
                    hook.AfterLayer(i, state.Length, count, _width, host);
                    residual.CopyToDevice(host);
                }
            }

            _finalNorm.Forward(step, residual, normed);
            if (head == Head.AllRows)
            {
                var output = step.Allocate<float>((long)count * VocabSize);
                _head.Forward(step, normed, output);
                stream.Synchronize();
                output.CopyToHost(logits[..(count * VocabSize)]);
            }
            else
            {
                // Only the next token's distribution is wanted: the head on the last row alone.
                unsafe
                {
                    var last = normed.View<BFloat16>((long)(count - 1) * _width * sizeof(BFloat16), _width);
                    var output = step.Allocate<float>(VocabSize);
                    _head.Forward(step, last, output, rows: 1);
                    if (head == Head.LastRow)
                    {
                        stream.Synchronize();
                        output.CopyToHost(logits[..VocabSize]);
                    }
                    else
                    {
                        var chosen = step.Allocate<int>(1);
                        if (temperature <= 0)
                        {
                            ops.SampleGreedy(output, 1, VocabSize, chosen, stream);
                        }
                        else
                        {
                            var draw = _scratch.Upload<double>([uniform]);
                            var workspace = step.Allocate<float>(VocabSize);
                            ops.SampleTopP(output, 1, VocabSize, temperature, topP, draw, chosen, workspace, stream);
                        }
                        stream.Synchronize();
                        Span<int> one = stackalloc int[1];
                        chosen.CopyToHost(one);
                        sampled = one[0];
                    }
                }
            }
        }
        state.Advance(count);
        return sampled;
    }

    /// <summary>Makes this model dispose <paramref name="backend"/> with itself (a model loaded onto a device it created).</summary>
    internal void OwnBackend(CudaBackend backend) => _ownedBackend = backend;

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _scratch.Dispose();
        _weights.Dispose();
        _ownedBackend?.Dispose();
    }
}

/// <summary>
/// A session's state on the device: each layer's KV cache or recurrent state in one arena sized for the capacity at
/// creation. Forks (<see cref="Clone"/>, <see cref="CopyFrom"/>) copy device to device; a residual hook runs on the host.
/// Dispose frees the device memory (otherwise the finalizers do).
/// </summary>
public sealed class CudaModelState : IForkableModelState, ISteerableModelState, IDisposable
{
    private readonly CudaArena _arena;

    internal CudaModelState(CudaCausalLanguageModel owner, int capacity, CudaArena arena, CudaLayerState?[,] states)
    {
        Owner = owner;
        Capacity = capacity;
        _arena = arena;
        LayerStates = states;
    }

    internal CudaCausalLanguageModel Owner { get; }

    internal CudaLayerState?[,] LayerStates { get; }

    public int Length { get; private set; }

    public int Capacity { get; }

    public IResidualHook? ResidualHook { get; set; }

    public int LayerCount => Owner.LayerCount;

    /// <summary>Device bytes of the caches and states.</summary>
    public long DeviceBytes => _arena.ReservedBytes;

    internal void Advance(int count) => Length += count;

    public void Reset()
    {
        foreach (var state in LayerStates)
            state?.Reset();
        Length = 0;
    }

    public IModelState Clone()
    {
        var copy = Owner.CreateState(Capacity);
        copy.CopyFrom(this);
        return copy;
    }

    public void CopyFrom(IModelState source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source is not CudaModelState other || other.Owner != Owner)
            throw new ArgumentException("CopyFrom: the source is not a state of the same CUDA model", nameof(source));
        if (other.Length > Capacity)
            throw new ArgumentException($"CopyFrom: the source holds {other.Length} tokens, this state has room for {Capacity}", nameof(source));
        for (int i = 0; i < LayerStates.GetLength(0); i++)
        {
            for (int j = 0; j < 2; j++)
            {
                if (LayerStates[i, j] is CudaLayerState target)
                    target.CopyFrom(other.LayerStates[i, j]!, other.Length);
            }
        }
        Length = other.Length;
        ResidualHook = other.ResidualHook;
    }

    public void Dispose() => _arena.Dispose();
}
