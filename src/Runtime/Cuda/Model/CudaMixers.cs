using Horizon.Ops;

namespace Horizon.Cuda;

/// <summary><c>rms_norm</c> on CUDA: y = x / sqrt(mean(x²) + ε) ⊙ γ (Zhang &amp; Sennrich 2019), float32 in, bf16 out.</summary>
public sealed class CudaRmsNorm : CudaNorm
{
    private readonly CudaDeviceVariable<float> _gamma;
    private readonly int _width;
    private readonly float _eps;

    public CudaRmsNorm(CudaDeviceVariable<float> gamma, int width, float eps)
    {
        _gamma = gamma;
        _width = width;
        _eps = eps;
    }

    public override void Forward(CudaStep step, CudaDeviceVariable<float> input, CudaDeviceVariable<BFloat16> output) =>
        step.Ops.RmsNorm(input, _gamma, output, step.Rows, _width, _eps, step.Stream);
}

/// <summary><c>swiglu_mlp</c> on CUDA: y = W_down (silu(W_gate x) ⊙ W_up x) (Shazeer 2020, FFN_SwiGLU).</summary>
public sealed class CudaSwiGluMlp : CudaLayer
{
    private readonly CudaLinear _gate, _up, _down;

    public CudaSwiGluMlp(CudaLinear gate, CudaLinear up, CudaLinear down)
    {
        _gate = gate;
        _up = up;
        _down = down;
    }

    public override void Forward(CudaStep step, CudaDeviceVariable<BFloat16> input, CudaDeviceVariable<float> output, CudaLayerState? state)
    {
        int rows = step.Rows, intermediate = _gate.OutFeatures;
        long n = (long)rows * intermediate;
        var gate = step.Allocate<float>(n);
        var up = step.Allocate<float>(n);
        var hidden = step.Allocate<BFloat16>(n);
        _gate.Forward(step, input, gate);
        _up.Forward(step, input, up);
        step.Ops.SwiGlu(gate, up, hidden, n, step.Stream);
        _down.Forward(step, hidden, output);
    }
}

/// <summary>
/// The keys and values of one attention layer on the device: K and V (capacity, kv_heads, padded head dim) bf16, the
/// layout the flash kernels read, rows 0 … tokens − 1 valid. Allocated whole for the session's capacity.
/// </summary>
public sealed class CudaKvCache : CudaLayerState
{
    public CudaKvCache(CudaArena arena, int capacity, int kvHeads, int paddedHeadDim)
    {
        Capacity = capacity;
        KvHeads = kvHeads;
        PaddedHeadDim = paddedHeadDim;
        long elements = (long)capacity * kvHeads * paddedHeadDim;
        Keys = arena.Allocate<BFloat16>(elements);
        Values = arena.Allocate<BFloat16>(elements);
    }

    public int Capacity { get; }
    public int KvHeads { get; }
    public int PaddedHeadDim { get; }
    public CudaDeviceVariable<BFloat16> Keys { get; }
    public CudaDeviceVariable<BFloat16> Values { get; }

    /// <summary>Bytes of row <paramref name="row"/>'s start in K or V.</summary>
    public unsafe long RowOffsetBytes(int row) => (long)row * KvHeads * PaddedHeadDim * sizeof(BFloat16);

    /// <summary>Nothing to clear: rows past the model state's length are never read, and each is written before it is.</summary>
    public override void Reset()
    {
    }

    public override unsafe void CopyFrom(CudaLayerState source, int tokens)
    {
        if (source is not CudaKvCache other || other.KvHeads != KvHeads || other.PaddedHeadDim != PaddedHeadDim || tokens > Capacity)
            throw new ArgumentException("CUDA KV cache: the source is not a cache of the same layer shape, or holds more tokens than this one has room for", nameof(source));
        if (ReferenceEquals(other, this) || tokens == 0)
            return;
        long count = (long)tokens * KvHeads * PaddedHeadDim;
        Keys.View<BFloat16>(0, count).CopyToDevice(other.Keys.View<BFloat16>(0, count));
        Values.View<BFloat16>(0, count).CopyToDevice(other.Values.View<BFloat16>(0, count));
    }
}

/// <summary>
/// <c>attention</c> on CUDA: q, k, v projections (+ biases) in float32, RoPE at the tokens' positions, keys and values
/// appended to the <see cref="CudaKvCache"/> as bf16, then causal flash attention over the cache (prefill: the
/// tiled kernel with the call's rows as queries after the cached keys; one row: Flash-Decoding split over the keys),
/// and the output projection. Heads smaller than 64 (or between 64 and 128) run zero-padded to the kernel's size.
/// </summary>
public sealed class CudaAttention : CudaLayer
{
    private readonly CudaLinear _query, _key, _value, _output;
    private readonly AttentionOptions _options;
    private readonly CudaDeviceVariable<double>? _inverseFrequencies;
    private readonly int _paddedHeadDim;

    public CudaAttention(CudaLinear query, CudaLinear key, CudaLinear value, CudaLinear output, AttentionOptions options, CudaDeviceVariable<double>? inverseFrequencies)
    {
        _query = query;
        _key = key;
        _value = value;
        _output = output;
        _options = options;
        _inverseFrequencies = inverseFrequencies;
        _paddedHeadDim = PaddedHeadDim(options.HeadDim);
    }

    /// <summary>The head size the flash kernels run a head of <paramref name="headDim"/> at: 64 or 128.</summary>
    public static int PaddedHeadDim(int headDim) => headDim switch
    {
        <= 64 => 64,
        <= 128 => 128,
        _ => throw new HorizonException($"attention: head_dim {headDim} has no CUDA kernel (at most 128)"),
    };

    public override CudaLayerState CreateState(int capacity, CudaArena arena) => new CudaKvCache(arena, capacity, _options.KvHeads, _paddedHeadDim);

    public override void Forward(CudaStep step, CudaDeviceVariable<BFloat16> input, CudaDeviceVariable<float> output, CudaLayerState? state)
    {
        var cache = (CudaKvCache)state!;
        int rows = step.Rows, position = step.Position, heads = _options.Heads, kvHeads = _options.KvHeads;
        int headDim = _options.HeadDim, padded = _paddedHeadDim;
        var ops = step.Ops;
        var stream = step.Stream;

        var q = step.Allocate<float>((long)rows * heads * headDim);
        var k = step.Allocate<float>((long)rows * kvHeads * headDim);
        var v = step.Allocate<float>((long)rows * kvHeads * headDim);
        _query.Forward(step, input, q);
        _key.Forward(step, input, k);
        _value.Forward(step, input, v);
        if (_options.Rope is RopeTable rope)
        {
            ops.Rope(q, rows, heads, headDim, rope.RotaryDim, position, _inverseFrequencies!, stream);
            ops.Rope(k, rows, kvHeads, headDim, rope.RotaryDim, position, _inverseFrequencies!, stream);
        }

        // The new keys and values go straight into the cache at rows position … position + rows − 1.
        long newElements = (long)rows * kvHeads * padded;
        ops.PackHeads(k, cache.Keys.View<BFloat16>(cache.RowOffsetBytes(position), newElements), rows, kvHeads, headDim, padded, stream);
        ops.PackHeads(v, cache.Values.View<BFloat16>(cache.RowOffsetBytes(position), newElements), rows, kvHeads, headDim, padded, stream);
        var queries = step.Allocate<BFloat16>((long)rows * heads * padded);
        ops.PackHeads(q, queries, rows, heads, headDim, padded, stream);

        var attended = step.Allocate<BFloat16>((long)rows * heads * padded);
        int keys = position + rows;
        float scale = 1f / MathF.Sqrt(headDim);
        if (rows == 1)
        {
            var plan = ops.PlanAttentionDecode(1, heads, kvHeads, padded, keys);
            var workspace = step.Allocate<float>(plan.WorkspaceFloats);
            ops.AttentionDecode(queries, cache.Keys, cache.Values, attended, 1, heads, kvHeads, padded, keys, cache.Capacity, workspace, scale, stream);
        }
        else
        {
            ops.AttentionPrefill(queries, cache.Keys, cache.Values, attended, 1, rows, keys, heads, kvHeads, padded, position, scale, stream);
        }

        var merged = attended;
        if (padded != headDim)
        {
            merged = step.Allocate<BFloat16>((long)rows * heads * headDim);
            ops.UnpackHeads(attended, merged, rows, heads, padded, headDim, stream);
        }
        _output.Forward(step, merged, output);
    }
}

/// <summary>A <c>gla</c> layer's recurrent state on the device: S (kv_heads, d_k, d_v) float32 (GlaState.S's layout) and the short-convolution tails.</summary>
public sealed class CudaGlaState : CudaLayerState
{
    public CudaGlaState(CudaArena arena, GlaOptions options)
    {
        State = arena.AllocateZeroed<float>((long)options.KvHeads * options.HeadKDim * options.HeadVDim);
        int tail = Math.Max(options.ConvSize - 1, 0);
        QueryTail = arena.AllocateZeroed<float>((long)tail * options.KeyDim);
        KeyTail = arena.AllocateZeroed<float>((long)tail * options.KvKeyDim);
        ValueTail = arena.AllocateZeroed<float>((long)tail * options.KvValueDim);
    }

    public CudaDeviceVariable<float> State { get; }
    public CudaDeviceVariable<float> QueryTail { get; }
    public CudaDeviceVariable<float> KeyTail { get; }
    public CudaDeviceVariable<float> ValueTail { get; }

    public override void Reset()
    {
        State.Fill(0);
        QueryTail.Fill(0);
        KeyTail.Fill(0);
        ValueTail.Fill(0);
    }

    public override void CopyFrom(CudaLayerState source, int tokens)
    {
        if (source is not CudaGlaState other || other.State.Size != State.Size || other.QueryTail.Size != QueryTail.Size)
            throw new ArgumentException("CUDA GLA state: the source is not a state of the same layer shape", nameof(source));
        if (ReferenceEquals(other, this))
            return;
        State.CopyToDevice(other.State);
        QueryTail.CopyToDevice(other.QueryTail);
        KeyTail.CopyToDevice(other.KeyTail);
        ValueTail.CopyToDevice(other.ValueTail);
    }
}

/// <summary>
/// <c>gla</c> on CUDA (Yang et al. 2024 §4.4; the CPU's GlaKernels.GlaLayer step for step): q, k, v projections (and
/// the short convolutions), the low-rank forget gate log α = logsigmoid(W₂W₁x + b)/τ, the recurrence in float32
/// (chunkwise parallel prefill, §4.2; recurrent decode for one row, §4.1), the per-head RMSNorm with the swish output
/// gate, and W_o.
/// </summary>
public sealed class CudaGla : CudaLayer
{
    private readonly CudaLinear _query, _key, _value, _gateDown, _gateUp, _output;
    private readonly CudaLinear? _outputGate;
    private readonly CudaDeviceVariable<float>? _gateBias, _normWeight;
    private readonly (CudaDeviceVariable<float> Weight, CudaDeviceVariable<float>? Bias)? _queryConv, _keyConv, _valueConv;
    private readonly GlaOptions _options;

    public CudaGla(CudaWeightUploader upload, GlaWeights weights, GlaOptions options)
    {
        _options = options;
        _query = upload.Linear(weights.Query);
        _key = upload.Linear(weights.Key);
        _value = upload.Linear(weights.Value);
        _gateDown = upload.Linear(weights.GateDown);
        _gateUp = upload.Linear(weights.GateUp);
        _gateBias = upload.OptionalVector(weights.GateBias);
        _output = upload.Linear(weights.Output);
        _outputGate = options.UseOutputGate && weights.OutputGate is Matrix gate ? upload.Linear(gate) : null;
        _normWeight = upload.OptionalVector(weights.NormWeight);
        if (options.ConvSize > 0)
        {
            if (options.ConvSize > 8)
                throw new HorizonException($"gla: short convolution of width {options.ConvSize} has no CUDA kernel (at most 8)");
            _queryConv = Conv(upload, weights.QueryConv!);
            _keyConv = Conv(upload, weights.KeyConv!);
            _valueConv = Conv(upload, weights.ValueConv!);
        }
        if (options.HeadKDim > CudaOps.MaxGlaHeadKDim)
            throw new HorizonException($"gla: head_k_dim {options.HeadKDim} has no CUDA kernel (at most {CudaOps.MaxGlaHeadKDim})");
    }

    private static (CudaDeviceVariable<float>, CudaDeviceVariable<float>?) Conv(CudaWeightUploader upload, ShortConvWeights conv) =>
        (upload.Vector(conv.Weight), upload.OptionalVector(conv.Bias));

    public override CudaLayerState CreateState(int capacity, CudaArena arena) => new CudaGlaState(arena, _options);

    public override void Forward(CudaStep step, CudaDeviceVariable<BFloat16> input, CudaDeviceVariable<float> output, CudaLayerState? state)
    {
        var s = (CudaGlaState)state!;
        var o = _options;
        int rows = step.Rows, rank = _gateDown.OutFeatures;
        var ops = step.Ops;
        var stream = step.Stream;

        var q = step.Allocate<float>((long)rows * o.KeyDim);
        var k = step.Allocate<float>((long)rows * o.KvKeyDim);
        var v = step.Allocate<float>((long)rows * o.KvValueDim);
        _query.Forward(step, input, q);
        _key.Forward(step, input, k);
        _value.Forward(step, input, v);
        if (_queryConv is { } qc && _keyConv is { } kc && _valueConv is { } vc)
        {
            ops.GlaShortConvSilu(q, s.QueryTail, qc.Weight, qc.Bias, rows, o.KeyDim, o.ConvSize, stream);
            ops.GlaShortConvSilu(k, s.KeyTail, kc.Weight, kc.Bias, rows, o.KvKeyDim, o.ConvSize, stream);
            ops.GlaShortConvSilu(v, s.ValueTail, vc.Weight, vc.Bias, rows, o.KvValueDim, o.ConvSize, stream);
        }

        // log α = logsigmoid(W₂ (W₁ x) + b) / τ: the rank-r product goes through bf16 like every GEMM input.
        var low = step.Allocate<float>((long)rows * rank);
        _gateDown.Forward(step, input, low);
        var lowBf16 = step.Allocate<BFloat16>((long)rows * rank);
        ops.ConvertToBf16(low, lowBf16, (long)rows * rank, stream);
        var logGates = step.Allocate<float>((long)rows * o.KvKeyDim);
        _gateUp.Forward(step, lowBf16, logGates);
        ops.GlaLogGates(logGates, _gateBias, rows, o.KvKeyDim, o.GateLogitNormalizer, o.ClampMin, stream);

        CudaDeviceVariable<float>? gate = null;
        if (_outputGate is not null)
        {
            gate = step.Allocate<float>((long)rows * o.ValueDim);
            _outputGate.Forward(step, input, gate);
        }

        var mixed = step.Allocate<float>((long)rows * o.ValueDim);
        float scale = (float)(1.0 / Math.Sqrt(o.HeadKDim));
        if (rows == 1)
        {
            ops.GlaRecurrentDecode(q, k, v, logGates, s.State, mixed, 1, 1, o.Heads, o.KvHeads, o.HeadKDim, o.HeadVDim, scale, stream);
        }
        else
        {
            var plan = CudaOps.PlanGlaPrefill(1, rows, o.KvHeads, o.HeadKDim, o.HeadVDim);
            var workspace = step.Allocate<float>(plan.WorkspaceFloats);
            ops.GlaChunkPrefill(q, k, v, logGates, s.State, mixed, 1, rows, o.Heads, o.KvHeads, o.HeadKDim, o.HeadVDim, workspace, scale, stream);
        }

        var normed = step.Allocate<BFloat16>((long)rows * o.ValueDim);
        ops.GlaNormGate(mixed, gate, _normWeight, normed, rows * o.Heads, o.HeadVDim, o.NormEps, stream);
        _output.Forward(step, normed, output);
    }
}
