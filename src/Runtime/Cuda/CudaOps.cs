namespace Horizon.Cuda;

/// <summary>
/// Horizon's CUDA ops (native/*.cu), one method per op, the same names and shapes as the CPU backend
/// (<see cref="Cpu.CpuKernels"/>). Generic ops run in float32 for <c>float</c> and store bf16 for
/// <see cref="BFloat16"/> (kernel <c>{op}_f32</c> / <c>{op}_bf16</c>).
/// </summary>
/// <remarks>
/// Each op checks the sizes against the variables, computes the grid with CeilDiv and queues its kernels through
/// the typed launchers that the kernel generator emits from the kernels' C signatures
/// (<see cref="CudaElementwiseKernels"/>, <see cref="CudaAttentionKernels"/>, <see cref="CudaGlaKernels"/>;
/// docs/cuda.md, "Typed launchers"): the arguments are checked by the compiler, and no C# code here spells a kernel
/// name. Nothing synchronises: work is queued on <c>stream</c> (null: the legacy default stream), and a fault of the
/// running kernel surfaces at the next synchronising call. Modules are loaded on first use, kernels looked up once.
/// </remarks>
public sealed unsafe partial class CudaOps : IDisposable
{
    /// <summary>Threads per block of the row-wise and elementwise kernels.</summary>
    private const int BlockThreads = 256;

    /// <summary>Query rows per block of attention_prefill (prefill::BM in native/attention.cu: 4 warps of 32 rows).</summary>
    public const int PrefillQueryTile = 128;

    /// <summary>Keys per step of attention_prefill (prefill::BN).</summary>
    public const int PrefillKeyTile = 64;

    /// <summary>Query heads of one key/value head that one attention_decode block serves (decode::ROWS: the 16 rows of its mma tiles).</summary>
    public const int DecodeHeadsPerBlock = 16;

    /// <summary>Keys per pipeline stage of attention_decode (decode::BN); the automatic split is a multiple of it.</summary>
    public const int DecodeKeyTile = 64;

    /// <summary>K and V tiles attention_decode keeps in shared memory (decode::STAGES).</summary>
    private const int DecodeStages = 3;

    /// <summary>
    /// K and V bytes (summed over the pairs) that one group of attention_prefill's block order may touch: the
    /// (batch, head) pairs of a group run their query tiles longest first, together, so their K and V should stay in
    /// the L2 (60 MB on the H200) while they are read (<see cref="PrefillHeadGroup"/>).
    /// </summary>
    private const long PrefillGroupBytes = 64L << 20;

    /// <summary>Threads per block of attention_decode_combine_{bf16,f16}.</summary>
    private const int DecodeCombineThreads = 256;

    private const int AttentionThreads = 128;
    private const int DefaultSharedLimit = 48 * 1024;

    /// <summary>Every kernel symbol the launchers can launch, by module (the generated <see cref="CudaKernelCatalog"/>).</summary>
    public static IReadOnlyList<(string Module, string Name)> Kernels => CudaKernelCatalog.All;

    private readonly CudaContext _context;
    private readonly object _gate = new();
    private CudaElementwiseKernels? _elementwise;
    private CudaAttentionKernels? _attention;
    private CudaGlaKernels? _gla;
    private int _decodeBlocksPerMultiprocessor64, _decodeBlocksPerMultiprocessor128;

    public CudaOps(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        _context = context;
    }

    public CudaContext Context => _context;

    /// <summary>Loads every module and looks up every kernel now (otherwise on first use), so JIT compilation stays out of timings.</summary>
    public void Preload()
    {
        Elementwise.LoadAll();
        Attention.LoadAll();
        Gla.LoadAll();
        Sampling.LoadAll();
        Gemm.LoadAll();
    }

    /// <summary>The kernel <paramref name="name"/> (one of <see cref="Kernels"/>), loaded as the launchers load it (for its resource figures).</summary>
    public CudaKernel GetKernel(string name)
    {
        foreach (var (module, symbol) in CudaKernelCatalog.All)
        {
            if (symbol != name)
                continue;
            return ModuleOf(module).GetKernel(name);
        }
        throw new ArgumentException($"'{name}' is not a kernel of the CUDA backend", nameof(name));
    }

    private CudaModule ModuleOf(string module) =>
        module == CudaElementwiseKernels.ModuleName ? Elementwise.Module
        : module == CudaAttentionKernels.ModuleName ? Attention.Module
        : module == CudaGlaKernels.ModuleName ? Gla.Module
        : module == CudaSamplingKernels.ModuleName ? Sampling.Module
        : module == CudaGemmKernels.ModuleName ? Gemm.Module
        : throw new InvalidOperationException($"CudaOps does not load the kernel module '{module}'");

    /// <summary>The launchers of native/elementwise.cu, loaded on first use.</summary>
    public CudaElementwiseKernels Elementwise => _elementwise ?? Load(ref _elementwise, CudaElementwiseKernels.Load, null);

    /// <summary>The launchers of native/attention.cu, loaded on first use (the prefill and decode kernels opted in to their shared memory).</summary>
    public CudaAttentionKernels Attention => _attention ?? Load(ref _attention, CudaAttentionKernels.Load, kernels =>
    {
        AllowSharedMemory(kernels.AttentionPrefillD64Bf16Kernel, PrefillSharedBytes(64));
        AllowSharedMemory(kernels.AttentionPrefillD128Bf16Kernel, PrefillSharedBytes(128));
        AllowSharedMemory(kernels.AttentionPrefillD64F16Kernel, PrefillSharedBytes(64));
        AllowSharedMemory(kernels.AttentionPrefillD128F16Kernel, PrefillSharedBytes(128));
        AllowSharedMemory(kernels.AttentionDecodeD64Bf16Kernel, DecodeSharedBytes(64));
        AllowSharedMemory(kernels.AttentionDecodeD128Bf16Kernel, DecodeSharedBytes(128));
        AllowSharedMemory(kernels.AttentionDecodeD64F16Kernel, DecodeSharedBytes(64));
        AllowSharedMemory(kernels.AttentionDecodeD128F16Kernel, DecodeSharedBytes(128));
    });

    /// <summary>The launchers of native/gla.cu, loaded on first use (the state and output kernels opted in to their shared memory).</summary>
    public CudaGlaKernels Gla => _gla ?? Load(ref _gla, CudaGlaKernels.Load, kernels =>
    {
        AllowSharedMemory(kernels.GlaChunkOutputF32Kernel, GlaOutputSharedBytes(MaxGlaHeadKDim));
        AllowSharedMemory(kernels.GlaChunkOutputBf16Kernel, GlaOutputSharedBytes(MaxGlaHeadKDim));
        AllowSharedMemory(kernels.GlaChunkStateF32Kernel, GlaStateSharedBytes);
        AllowSharedMemory(kernels.GlaChunkStateBf16Kernel, GlaStateSharedBytes);
    });

    private TKernels Load<TKernels>(ref TKernels? field, Func<CudaContext, TKernels> load, Action<TKernels>? configure) where TKernels : class
    {
        lock (_gate)
        {
            if (field is null)
            {
                var kernels = load(_context);
                configure?.Invoke(kernels);
                field = kernels;
            }
            return field;
        }
    }

    /// <summary>Opts a kernel in to more than 48 KiB of dynamic shared memory, up to what the device allows.</summary>
    private void AllowSharedMemory(CudaKernel kernel, int bytes)
    {
        if (bytes <= DefaultSharedLimit)
            return;
        if (bytes > _context.MaxSharedMemoryPerBlockOptIn)
            throw new HorizonException($"{kernel.Name} needs {bytes} bytes of shared memory per block; {_context.DeviceName} allows {_context.MaxSharedMemoryPerBlockOptIn}");
        kernel.SetMaxDynamicSharedMemory(bytes);
    }

    private static bool IsFloat<T>(string op) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            return true;
        if (typeof(T) == typeof(BFloat16))
            return false;
        throw new NotSupportedException($"{op}: element type {typeof(T).Name} is not supported on CUDA (float, BFloat16)");
    }

    /// <summary>The variable as a float pointer (T is float: checked by <see cref="IsFloat{T}"/>).</summary>
    private static DevicePointer<float> F32<T>(CudaDeviceVariable<T> variable) where T : unmanaged => new(variable.DevicePointer);

    /// <summary>The variable as a bf16 pointer (T is BFloat16: checked by <see cref="IsFloat{T}"/>).</summary>
    private static DevicePointer<BFloat16> Bf16<T>(CudaDeviceVariable<T> variable) where T : unmanaged => new(variable.DevicePointer);

    private static void Require<T>(CudaDeviceVariable<T> variable, long elements, string op, string role) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(variable, role);
        if (variable.Size < elements)
            throw new ArgumentException($"{op}: {role} holds {variable.Size} elements, needs {elements}", role);
    }

    private static uint CeilDiv(long a, long b) => checked((uint)((a + b - 1) / b));

    /// <summary>Blocks for a grid-stride loop over <paramref name="n"/> elements: enough to fill the device, no more.</summary>
    private uint StrideGrid(long n) => (uint)Math.Max(1, Math.Min(CeilDiv(n, BlockThreads), (long)_context.MultiprocessorCount * 16));

    // ---------------------------------------------------------------- embedding

    /// <summary>
    /// Token embedding lookup: y row t = table row tokens[t]. table is (vocab, dim), tokens (count) int32 ids,
    /// y (count, dim). An id outside [0, vocab) yields a row of NaN (a kernel cannot raise).
    /// </summary>
    public void Embedding<T>(CudaDeviceVariable<T> table, int vocab, int dim, CudaDeviceVariable<int> tokens, int count,
        CudaDeviceVariable<T> y, CudaStream? stream = null) where T : unmanaged
    {
        const string op = "embedding";
        bool f32 = IsFloat<T>(op);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocab);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        Require(table, (long)vocab * dim, op, nameof(table));
        Require(tokens, count, op, nameof(tokens));
        Require(y, (long)count * dim, op, nameof(y));
        if (count == 0)
            return;
        // table, tokens and y hold vocab·dim, count and count·dim elements (checked above); one block per token row.
        var grid = new Dim3((uint)count);
        if (f32)
            Elementwise.EmbeddingF32(grid, BlockThreads, 0, stream, F32(table), tokens, F32(y), count, dim, vocab);
        else
            Elementwise.EmbeddingBf16(grid, BlockThreads, 0, stream, Bf16(table), tokens, Bf16(y), count, dim, vocab);
    }

    // ---------------------------------------------------------------- rms_norm

    /// <summary>y = x / sqrt(mean(x²) + eps) ⊙ γ per row. x, y (rows, dim); gamma (dim). y may be x.</summary>
    public void RmsNorm<T>(CudaDeviceVariable<T> x, CudaDeviceVariable<T> gamma, CudaDeviceVariable<T> y, int rows, int dim, float eps,
        CudaStream? stream = null) where T : unmanaged
    {
        const string op = "rms_norm";
        bool f32 = IsFloat<T>(op);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        Require(x, (long)rows * dim, op, nameof(x));
        Require(gamma, dim, op, nameof(gamma));
        Require(y, (long)rows * dim, op, nameof(y));
        if (rows == 0)
            return;
        // One block of 256 threads (a multiple of 32, as block_sum needs) per row.
        var grid = new Dim3((uint)rows);
        if (f32)
            Elementwise.RmsNormF32(grid, BlockThreads, 0, stream, F32(x), F32(gamma), F32(y), rows, dim, eps);
        else
            Elementwise.RmsNormBf16(grid, BlockThreads, 0, stream, Bf16(x), Bf16(gamma), Bf16(y), rows, dim, eps);
    }

    // ---------------------------------------------------------------- rope

    /// <summary>
    /// Rotary position embedding in place, Hugging Face rotate-half layout. x is (rows, heads, headDim), row r at
    /// position startPosition + r; the first rotaryDim dimensions of each head rotate and the rest pass through
    /// (rotaryDim = headDim except for GPT-NeoX partial rotary). inverseFrequencies is θ (rotaryDim/2) in float64:
    /// <see cref="Ops.RopeTable.InverseFrequencies"/>, with <see cref="Ops.RopeTable.RotaryDim"/>.
    /// </summary>
    public void Rope<T>(CudaDeviceVariable<T> x, int rows, int heads, int headDim, int rotaryDim, int startPosition,
        CudaDeviceVariable<double> inverseFrequencies, CudaStream? stream = null) where T : unmanaged
    {
        const string op = "rope";
        bool f32 = IsFloat<T>(op);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegative(startPosition);
        if (rotaryDim % 2 != 0 || rotaryDim < 2 || rotaryDim > headDim)
            throw new ArgumentException($"{op}: rotary_dim {rotaryDim} must be even and in [2, head_dim {headDim}]", nameof(rotaryDim));
        Require(x, (long)rows * heads * headDim, op, nameof(x));
        Require(inverseFrequencies, rotaryDim / 2, op, nameof(inverseFrequencies));
        if (rows == 0)
            return;
        const int threads = 64;
        // Grid (rows, CeilDiv(rotary_dim/2, 64)).
        var grid = new Dim3((uint)rows, CeilDiv(rotaryDim / 2, threads));
        if (f32)
            Elementwise.RopeF32(grid, threads, 0, stream, F32(x), inverseFrequencies, rows, heads, headDim, rotaryDim, startPosition);
        else
            Elementwise.RopeBf16(grid, threads, 0, stream, Bf16(x), inverseFrequencies, rows, heads, headDim, rotaryDim, startPosition);
    }

    // ---------------------------------------------------------------- swiglu

    /// <summary>h = silu(gate) ⊙ up elementwise over n elements; h may be gate or up.</summary>
    public void SwiGlu<T>(CudaDeviceVariable<T> gate, CudaDeviceVariable<T> up, CudaDeviceVariable<T> h, long n,
        CudaStream? stream = null) where T : unmanaged
    {
        const string op = "swiglu";
        bool f32 = IsFloat<T>(op);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        Require(gate, n, op, nameof(gate));
        Require(up, n, op, nameof(up));
        Require(h, n, op, nameof(h));
        if (n == 0)
            return;
        if (f32)
            Elementwise.SwigluF32(StrideGrid(n), BlockThreads, 0, stream, F32(gate), F32(up), F32(h), n);
        else
            Elementwise.SwigluBf16(StrideGrid(n), BlockThreads, 0, stream, Bf16(gate), Bf16(up), Bf16(h), n);
    }

    // ---------------------------------------------------------------- add

    /// <summary>Residual add acc += x over n elements.</summary>
    public void Add<T>(CudaDeviceVariable<T> acc, CudaDeviceVariable<T> x, long n, CudaStream? stream = null) where T : unmanaged
    {
        const string op = "add";
        bool f32 = IsFloat<T>(op);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        Require(acc, n, op, nameof(acc));
        Require(x, n, op, nameof(x));
        if (n == 0)
            return;
        if (f32)
            Elementwise.AddF32(StrideGrid(n), BlockThreads, 0, stream, F32(acc), F32(x), n);
        else
            Elementwise.AddBf16(StrideGrid(n), BlockThreads, 0, stream, Bf16(acc), Bf16(x), n);
    }

    // ---------------------------------------------------------------- log_softmax

    /// <summary>Row-wise log-softmax: x (rows, cols) of T, y (rows, cols) float32 log-probabilities.</summary>
    public void LogSoftmax<T>(CudaDeviceVariable<T> x, CudaDeviceVariable<float> y, int rows, int cols, CudaStream? stream = null)
        where T : unmanaged
    {
        const string op = "log_softmax";
        bool f32 = IsFloat<T>(op);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        Require(x, (long)rows * cols, op, nameof(x));
        Require(y, (long)rows * cols, op, nameof(y));
        if (rows == 0)
            return;
        // A vocabulary row (32K-150K logits) is read three times: give it a whole block of 1024 threads.
        uint threads = cols >= 8192 ? 1024u : BlockThreads;
        // One block (a multiple of 32 threads) per row.
        var grid = new Dim3((uint)rows);
        if (f32)
            Elementwise.LogSoftmaxF32(grid, threads, 0, stream, F32(x), y, rows, cols);
        else
            Elementwise.LogSoftmaxBf16(grid, threads, 0, stream, Bf16(x), y, rows, cols);
    }

    // ---------------------------------------------------------------- attention

    /// <summary>
    /// Dynamic shared memory of attention_prefill for a head dimension: the 128-row Q tile and two 64-key K and V tiles,
    /// rows padded by 8 (102 KiB for 128: two blocks per H200 multiprocessor).
    /// </summary>
    public static int PrefillSharedBytes(int headDim) => (PrefillQueryTile + 4 * PrefillKeyTile) * (headDim + 8) * sizeof(ushort);

    /// <summary>
    /// Dynamic shared memory of attention_decode for a head dimension: the 16-row Q tile and <c>decode::STAGES</c> (3)
    /// pairs of 64-key K and V tiles, rows padded by 8 (106.25 KiB for 128: two blocks per H200 multiprocessor).
    /// </summary>
    public static int DecodeSharedBytes(int headDim) => (DecodeHeadsPerBlock + 2 * DecodeStages * DecodeKeyTile) * (headDim + 8) * sizeof(ushort);

    private static void CheckAttention(string op, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        ArgumentOutOfRangeException.ThrowIfNegative(queries);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(keyCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        ArgumentOutOfRangeException.ThrowIfNegative(queryStart);
        if (heads % kvHeads != 0)
            throw new ArgumentException($"{op}: heads {heads} is not a multiple of kv_heads {kvHeads}", nameof(kvHeads));
        if ((long)queryStart + queries > keyCount)
            throw new ArgumentException($"{op}: the last query (position {(long)queryStart + queries - 1}) needs {(long)queryStart + queries} keys, only {keyCount} given", nameof(keyCount));
        if (heads > 65535 || batch > 65535)
            throw new ArgumentException($"{op}: heads {heads} and batch {batch} must be at most 65535 (grid y and z)");
    }

    /// <summary>
    /// Causal attention over bf16 tensors on tensor cores (FlashAttention-2): q, o (batch, queries, heads, headDim);
    /// k, v (batch, keyCount, kvHeads, headDim). Query r sits at position queryStart + r and sees keys 0 … queryStart + r;
    /// query head h reads key/value head h / (heads / kvHeads). headDim is 64 or 128; scores are scaled by
    /// <paramref name="scale"/> (default 1/√headDim, must be positive).
    /// </summary>
    public void AttentionPrefill(CudaDeviceVariable<BFloat16> q, CudaDeviceVariable<BFloat16> k, CudaDeviceVariable<BFloat16> v,
        CudaDeviceVariable<BFloat16> o, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart,
        float? scale = null, CudaStream? stream = null) =>
        Prefill("attention_prefill", q, k, v, o, batch, queries, keyCount, heads, kvHeads, headDim, queryStart, 0, scale, stream);

    /// <summary>As <see cref="AttentionPrefill(CudaDeviceVariable{BFloat16}, CudaDeviceVariable{BFloat16}, CudaDeviceVariable{BFloat16}, CudaDeviceVariable{BFloat16}, int, int, int, int, int, int, int, float?, CudaStream?)"/>, over fp16 tensors (fp16 operands on the tensor cores, float32 accumulation).</summary>
    public void AttentionPrefill(CudaDeviceVariable<Half> q, CudaDeviceVariable<Half> k, CudaDeviceVariable<Half> v,
        CudaDeviceVariable<Half> o, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart,
        float? scale = null, CudaStream? stream = null) =>
        Prefill("attention_prefill", q, k, v, o, batch, queries, keyCount, heads, kvHeads, headDim, queryStart, 0, scale, stream);

    /// <summary>
    /// Sliding-window causal attention (Mistral's, <see cref="Ops.SlidingWindowAttention"/> without global positions):
    /// as <see cref="AttentionPrefill(CudaDeviceVariable{BFloat16}, CudaDeviceVariable{BFloat16}, CudaDeviceVariable{BFloat16}, CudaDeviceVariable{BFloat16}, int, int, int, int, int, int, int, float?, CudaStream?)"/>,
    /// but the query at position p = queryStart + r sees only the keys p − window &lt; j ≤ p. Key tiles outside every
    /// row's window are skipped, so the work grows with queries × window. keyCount counts from position 0 (k, v hold
    /// keys 0 … keyCount − 1).
    /// </summary>
    public void SlidingWindowAttentionPrefill(CudaDeviceVariable<BFloat16> q, CudaDeviceVariable<BFloat16> k, CudaDeviceVariable<BFloat16> v,
        CudaDeviceVariable<BFloat16> o, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart,
        int window, float? scale = null, CudaStream? stream = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(window);
        Prefill("sliding_window_attention_prefill", q, k, v, o, batch, queries, keyCount, heads, kvHeads, headDim, queryStart, window, scale, stream);
    }

    /// <summary>As the bf16 <c>SlidingWindowAttentionPrefill</c>, over fp16 tensors.</summary>
    public void SlidingWindowAttentionPrefill(CudaDeviceVariable<Half> q, CudaDeviceVariable<Half> k, CudaDeviceVariable<Half> v,
        CudaDeviceVariable<Half> o, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart,
        int window, float? scale = null, CudaStream? stream = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(window);
        Prefill("sliding_window_attention_prefill", q, k, v, o, batch, queries, keyCount, heads, kvHeads, headDim, queryStart, window, scale, stream);
    }

    /// <summary>
    /// How many (batch, head) pairs one group of attention_prefill's block order spans (the kernel's head_group): the
    /// pairs of a group run their query tiles longest first, all of the group's pairs at one tile before the next
    /// shorter one, so the long tiles start early and the short ones fill the tail. As many pairs as keep the group's
    /// K and V within <see cref="PrefillGroupBytes"/> (pairs of one key/value head share theirs), at least one.
    /// </summary>
    internal static int PrefillHeadGroup(int batch, int heads, int kvHeads, int keyCount, int headDim)
    {
        int pairs = batch * heads;
        // K and V bytes per pair: keyCount·headDim·2 elements of 2 bytes, shared by the heads / kvHeads query heads of a group.
        double bytesPerPair = (double)keyCount * headDim * 4 * kvHeads / heads;
        return (int)Math.Clamp(Math.Floor(PrefillGroupBytes / bytesPerPair), 1, pairs);
    }

    private void Prefill<T>(string op, CudaDeviceVariable<T> q, CudaDeviceVariable<T> k, CudaDeviceVariable<T> v,
        CudaDeviceVariable<T> o, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart,
        int window, float? scale, CudaStream? stream) where T : unmanaged
    {
        CheckAttention(op, batch, queries, keyCount, heads, kvHeads, headDim, queryStart);
        if (headDim is not (64 or 128))
            throw new NotSupportedException($"{op}: head_dim {headDim} has no CUDA kernel (64, 128)");
        Require(q, (long)batch * queries * heads * headDim, op, nameof(q));
        Require(o, (long)batch * queries * heads * headDim, op, nameof(o));
        Require(k, (long)batch * keyCount * kvHeads * headDim, op, nameof(k));
        Require(v, (long)batch * keyCount * kvHeads * headDim, op, nameof(v));
        float s = scale ?? 1f / MathF.Sqrt(headDim);
        // The kernel keeps row maxima of the raw scores and folds the scale into the exponent: a positive scale only.
        if (!(s > 0f) || float.IsInfinity(s))
            throw new ArgumentOutOfRangeException(nameof(scale), s, $"{op}: the scale must be positive and finite");
        if (queries == 0)
            return;
        // A 1-D grid of CeilDiv(queries, 128) · heads · batch blocks of 128 threads (the kernel derives (tile, head, batch)
        // from the block index and head_group), with the dynamic shared memory the kernel was opted in for at load.
        long blocks = (long)CeilDiv(queries, PrefillQueryTile) * heads * batch;
        if (blocks > int.MaxValue)
            throw new ArgumentException($"{op}: {blocks} blocks (CeilDiv(queries, {PrefillQueryTile})·heads·batch) exceed the grid's {int.MaxValue}");
        var grid = new Dim3((uint)blocks);
        int headGroup = PrefillHeadGroup(batch, heads, kvHeads, keyCount, headDim);
        if (typeof(T) == typeof(Half))
        {
            DevicePointer<Half> hq = F16(q), hk = F16(k), hv = F16(v), ho = F16(o);
            if (headDim == 64)
                Attention.AttentionPrefillD64F16(grid, AttentionThreads, PrefillSharedBytes(64), stream, hq, hk, hv, ho, queries, keyCount, heads, kvHeads, queryStart, window, headGroup, s);
            else
                Attention.AttentionPrefillD128F16(grid, AttentionThreads, PrefillSharedBytes(128), stream, hq, hk, hv, ho, queries, keyCount, heads, kvHeads, queryStart, window, headGroup, s);
        }
        else
        {
            DevicePointer<BFloat16> bq = Bf16(q), bk = Bf16(k), bv = Bf16(v), bo = Bf16(o);
            if (headDim == 64)
                Attention.AttentionPrefillD64Bf16(grid, AttentionThreads, PrefillSharedBytes(64), stream, bq, bk, bv, bo, queries, keyCount, heads, kvHeads, queryStart, window, headGroup, s);
            else
                Attention.AttentionPrefillD128Bf16(grid, AttentionThreads, PrefillSharedBytes(128), stream, bq, bk, bv, bo, queries, keyCount, heads, kvHeads, queryStart, window, headGroup, s);
        }
    }

    /// <summary>The variable as an fp16 pointer (T is Half: the public overloads fix it).</summary>
    private static DevicePointer<Half> F16<T>(CudaDeviceVariable<T> variable) where T : unmanaged => new(variable.DevicePointer);

    /// <summary>
    /// How attention_decode splits the keys: <c>Splits</c> blocks per (batch, key/value head, group of up to 16 query
    /// heads), each over <c>KeysPerSplit</c> keys (the last split may be shorter). <c>WorkspaceFloats</c> is the scratch
    /// <c>AttentionDecode</c> needs: batch·heads·splits·(headDim + 1).
    /// </summary>
    public readonly record struct DecodePlan(int Splits, int KeysPerSplit, long WorkspaceFloats);

    /// <summary>
    /// The split plan for one decode step (see <see cref="DecodePlan"/>). Automatic (<paramref name="splits"/> 0): one
    /// full wave, as many blocks as the device holds at once (multiprocessors × the blocks of attention_decode one
    /// multiprocessor holds, from the driver's occupancy calculator), each split a whole number of 64-key tiles and at
    /// least one; every block then streams the same number of keys from start to end, with no second, partial wave.
    /// <paramref name="splits"/> &gt; 0 asks for that many splits of CeilDiv(keyCount, splits) keys (any length: for
    /// tests and tuning).
    /// </summary>
    public DecodePlan PlanAttentionDecode(int batch, int heads, int kvHeads, int headDim, int keyCount, int splits = 0)
    {
        const string op = "attention_decode";
        CheckAttention(op, batch, 1, keyCount, heads, kvHeads, headDim, keyCount - 1);
        ArgumentOutOfRangeException.ThrowIfNegative(splits);
        if (headDim is not (64 or 128))
            throw new NotSupportedException($"{op}: head_dim {headDim} has no CUDA kernel (64, 128)");
        int keysPerSplit;
        if (splits == 0)
        {
            long chunks = (heads / kvHeads + DecodeHeadsPerBlock - 1) / DecodeHeadsPerBlock;
            long blocksPerSplit = (long)batch * kvHeads * chunks;
            long resident = (long)_context.MultiprocessorCount * DecodeBlocksPerMultiprocessor(headDim);
            long tiles = (keyCount + DecodeKeyTile - 1) / DecodeKeyTile;
            long wanted = Math.Clamp(resident / blocksPerSplit, 1, tiles);
            keysPerSplit = (int)((tiles + wanted - 1) / wanted * DecodeKeyTile);
        }
        else
        {
            keysPerSplit = (int)(((long)keyCount + splits - 1) / splits);
        }
        int actual = (int)(((long)keyCount + keysPerSplit - 1) / keysPerSplit);
        return new DecodePlan(actual, keysPerSplit, (long)batch * heads * actual * (headDim + 1));
    }

    /// <summary>Blocks of attention_decode one multiprocessor holds at once (registers and shared memory), asked of the driver once per head dim.</summary>
    private int DecodeBlocksPerMultiprocessor(int headDim)
    {
        ref int cached = ref headDim == 64 ? ref _decodeBlocksPerMultiprocessor64 : ref _decodeBlocksPerMultiprocessor128;
        if (cached == 0)
        {
            var kernel = headDim == 64 ? Attention.AttentionDecodeD64Bf16Kernel : Attention.AttentionDecodeD128Bf16Kernel;
            cached = Math.Max(1, kernel.MaxActiveBlocksPerMultiprocessor(AttentionThreads, DecodeSharedBytes(headDim)));
        }
        return cached;
    }

    /// <summary>
    /// One decode step of causal attention: each sequence's single query against its cache (Flash-Decoding: split over
    /// the keys, merged by log-sum-exp). q, o are (batch, heads, headDim) bf16; k, v (batch, capacity, kvHeads, headDim)
    /// bf16 with the first keyCount rows valid (the new token's key included). headDim is 64 or 128. workspace holds at
    /// least <see cref="DecodePlan.WorkspaceFloats"/> floats of <see cref="PlanAttentionDecode"/> with the same
    /// <paramref name="splits"/> (0: the automatic plan).
    /// </summary>
    public void AttentionDecode(CudaDeviceVariable<BFloat16> q, CudaDeviceVariable<BFloat16> k, CudaDeviceVariable<BFloat16> v,
        CudaDeviceVariable<BFloat16> o, int batch, int heads, int kvHeads, int headDim, int keyCount, int capacity,
        CudaDeviceVariable<float> workspace, float? scale = null, CudaStream? stream = null, int splits = 0) =>
        Decode(q, k, v, o, batch, heads, kvHeads, headDim, keyCount, capacity, workspace, scale, stream, splits);

    /// <summary>As the bf16 <c>AttentionDecode</c>, over fp16 q, k, v and o (the same plan and workspace).</summary>
    public void AttentionDecode(CudaDeviceVariable<Half> q, CudaDeviceVariable<Half> k, CudaDeviceVariable<Half> v,
        CudaDeviceVariable<Half> o, int batch, int heads, int kvHeads, int headDim, int keyCount, int capacity,
        CudaDeviceVariable<float> workspace, float? scale = null, CudaStream? stream = null, int splits = 0) =>
        Decode(q, k, v, o, batch, heads, kvHeads, headDim, keyCount, capacity, workspace, scale, stream, splits);

    private void Decode<T>(CudaDeviceVariable<T> q, CudaDeviceVariable<T> k, CudaDeviceVariable<T> v,
        CudaDeviceVariable<T> o, int batch, int heads, int kvHeads, int headDim, int keyCount, int capacity,
        CudaDeviceVariable<float> workspace, float? scale, CudaStream? stream, int splits) where T : unmanaged
    {
        const string op = "attention_decode";
        CheckAttention(op, batch, 1, keyCount, heads, kvHeads, headDim, keyCount - 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, keyCount);
        if (headDim is not (64 or 128))
            throw new NotSupportedException($"{op}: head_dim {headDim} has no CUDA kernel (64, 128)");
        var plan = PlanAttentionDecode(batch, heads, kvHeads, headDim, keyCount, splits);
        Require(q, (long)batch * heads * headDim, op, nameof(q));
        Require(o, (long)batch * heads * headDim, op, nameof(o));
        Require(k, (long)batch * capacity * kvHeads * headDim, op, nameof(k));
        Require(v, (long)batch * capacity * kvHeads * headDim, op, nameof(v));
        Require(workspace, plan.WorkspaceFloats, op, nameof(workspace));

        float s = scale ?? 1f / MathF.Sqrt(headDim);
        int keysPerSplit = plan.KeysPerSplit, rows = batch * heads;
        uint chunks = CeilDiv(heads / kvHeads, DecodeHeadsPerBlock);
        // o_part and lse_part are the two parts of the workspace (rows·splits·head_dim, then rows·splits floats).
        DevicePointer<float> part = workspace, lse = workspace.At((long)rows * plan.Splits * headDim);
        var grid = new Dim3((uint)plan.Splits, (uint)kvHeads * chunks, (uint)batch);
        if (typeof(T) == typeof(Half))
        {
            DevicePointer<Half> hq = F16(q), hk = F16(k), hv = F16(v);
            if (headDim == 64)
                Attention.AttentionDecodeD64F16(grid, AttentionThreads, DecodeSharedBytes(64), stream, hq, hk, hv, part, lse, heads, kvHeads, keyCount, capacity, keysPerSplit, s);
            else
                Attention.AttentionDecodeD128F16(grid, AttentionThreads, DecodeSharedBytes(128), stream, hq, hk, hv, part, lse, heads, kvHeads, keyCount, capacity, keysPerSplit, s);
            // One block per output row merges its splits.
            Attention.AttentionDecodeCombineF16((uint)rows, DecodeCombineThreads, 0, stream, part, lse, F16(o), rows, plan.Splits, headDim);
        }
        else
        {
            DevicePointer<BFloat16> bq = Bf16(q), bk = Bf16(k), bv = Bf16(v);
            if (headDim == 64)
                Attention.AttentionDecodeD64Bf16(grid, AttentionThreads, DecodeSharedBytes(64), stream, bq, bk, bv, part, lse, heads, kvHeads, keyCount, capacity, keysPerSplit, s);
            else
                Attention.AttentionDecodeD128Bf16(grid, AttentionThreads, DecodeSharedBytes(128), stream, bq, bk, bv, part, lse, heads, kvHeads, keyCount, capacity, keysPerSplit, s);
            Attention.AttentionDecodeCombineBf16((uint)rows, DecodeCombineThreads, 0, stream, part, lse, Bf16(o), rows, plan.Splits, headDim);
        }
    }

    /// <summary>
    /// The test reference of the flash-attention error rule: the same attention as <c>AttentionPrefill</c>
    /// computed plainly in bf16 (scores and probabilities rounded to bf16, float32 sums), one block per (query, head).
    /// Slow; headDim at most 128. <paramref name="window"/> &gt; 0 makes it the reference of
    /// <c>SlidingWindowAttentionPrefill</c>.
    /// </summary>
    public void AttentionNaive(CudaDeviceVariable<BFloat16> q, CudaDeviceVariable<BFloat16> k, CudaDeviceVariable<BFloat16> v,
        CudaDeviceVariable<BFloat16> o, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart,
        float? scale = null, CudaStream? stream = null, int window = 0) =>
        Naive(q, k, v, o, batch, queries, keyCount, heads, kvHeads, headDim, queryStart, scale, stream, window);

    /// <summary>As the bf16 <c>AttentionNaive</c>, in fp16 (scores and probabilities rounded to fp16): the fp16 kernels' reference.</summary>
    public void AttentionNaive(CudaDeviceVariable<Half> q, CudaDeviceVariable<Half> k, CudaDeviceVariable<Half> v,
        CudaDeviceVariable<Half> o, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart,
        float? scale = null, CudaStream? stream = null, int window = 0) =>
        Naive(q, k, v, o, batch, queries, keyCount, heads, kvHeads, headDim, queryStart, scale, stream, window);

    private void Naive<T>(CudaDeviceVariable<T> q, CudaDeviceVariable<T> k, CudaDeviceVariable<T> v,
        CudaDeviceVariable<T> o, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart,
        float? scale, CudaStream? stream, int window) where T : unmanaged
    {
        const string op = "attention_naive";
        CheckAttention(op, batch, queries, keyCount, heads, kvHeads, headDim, queryStart);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(headDim, AttentionThreads);
        Require(q, (long)batch * queries * heads * headDim, op, nameof(q));
        Require(o, (long)batch * queries * heads * headDim, op, nameof(o));
        Require(k, (long)batch * keyCount * kvHeads * headDim, op, nameof(k));
        Require(v, (long)batch * keyCount * kvHeads * headDim, op, nameof(v));
        if (queries == 0)
            return;
        float s = scale ?? 1f / MathF.Sqrt(headDim);
        // One block of 128 threads (≥ head_dim) per (query, head, batch).
        var grid = new Dim3((uint)queries, (uint)heads, (uint)batch);
        if (typeof(T) == typeof(Half))
            Attention.AttentionNaiveF16(grid, AttentionThreads, 0, stream, F16(q), F16(k), F16(v), F16(o), queries, keyCount, heads, kvHeads, headDim, queryStart, window, s);
        else
            Attention.AttentionNaiveBf16(grid, AttentionThreads, 0, stream, Bf16(q), Bf16(k), Bf16(v), Bf16(o), queries, keyCount, heads, kvHeads, headDim, queryStart, window, s);
    }

    /// <summary>Unloads the modules (kernels obtained from them become unusable).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _elementwise?.Module.Dispose();
            _attention?.Module.Dispose();
            _gla?.Module.Dispose();
            _sampling?.Module.Dispose();
            _gemm?.Module.Dispose();
            _elementwise = null;
            _attention = null;
            _gla = null;
            _sampling = null;
            _gemm = null;
        }
    }
}
