namespace Horizon.Cuda;

/// <summary>
/// Typed launchers of Horizon's CUDA kernels (native/*.cu), one method per op, the same names and shapes as the CPU
/// backend (<see cref="Cpu.CpuKernels"/>). Generic ops run in float32 for <c>float</c> and
/// store bf16 for <see cref="BFloat16"/> (kernel <c>{op}_f32</c> / <c>{op}_bf16</c>).
/// </summary>
/// <remarks>
/// Each launcher checks the sizes against the variables, computes the grid with CeilDiv, builds the kernel's
/// argument array on its own stack and checks the launch's result right away (llm.c's launcher discipline). Nothing
/// synchronises: work is queued on <c>stream</c> (null: the legacy default stream), and a fault of the running
/// kernel surfaces at the next synchronising call. Modules are loaded on first use and kernels looked up once,
/// cached by <see cref="KernelId"/> (candle's lazily loaded PTX modules).
/// </remarks>
public sealed unsafe class CudaOps : IDisposable
{
    /// <summary>Threads per block of the row-wise and elementwise kernels.</summary>
    private const int BlockThreads = 256;

    /// <summary>Query rows per block of attention_prefill (prefill::BM in native/attention.cu).</summary>
    public const int PrefillQueryTile = 64;

    /// <summary>Keys per step of attention_prefill (prefill::BN).</summary>
    public const int PrefillKeyTile = 64;

    /// <summary>Query heads one attention_decode block serves (decode::MAX_GROUP).</summary>
    public const int DecodeHeadsPerBlock = 8;

    private const int AttentionThreads = 128;
    private const int DefaultSharedLimit = 48 * 1024;

    private enum KernelId
    {
        EmbeddingF32, EmbeddingBf16, RmsNormF32, RmsNormBf16, RopeF32, RopeBf16, SwiGluF32, SwiGluBf16,
        AddF32, AddBf16, LogSoftmaxF32, LogSoftmaxBf16,
        AttentionPrefillD64Bf16, AttentionPrefillD128Bf16, AttentionDecodeD64Bf16, AttentionDecodeD128Bf16,
        AttentionDecodeCombineBf16, AttentionNaiveBf16,
        Count,
    }

    private static readonly (string Module, string Name)[] KernelTable =
    [
        ("elementwise", "embedding_f32"), ("elementwise", "embedding_bf16"),
        ("elementwise", "rms_norm_f32"), ("elementwise", "rms_norm_bf16"),
        ("elementwise", "rope_f32"), ("elementwise", "rope_bf16"),
        ("elementwise", "swiglu_f32"), ("elementwise", "swiglu_bf16"),
        ("elementwise", "add_f32"), ("elementwise", "add_bf16"),
        ("elementwise", "log_softmax_f32"), ("elementwise", "log_softmax_bf16"),
        ("attention", "attention_prefill_d64_bf16"), ("attention", "attention_prefill_d128_bf16"),
        ("attention", "attention_decode_d64_bf16"), ("attention", "attention_decode_d128_bf16"),
        ("attention", "attention_decode_combine_bf16"), ("attention", "attention_naive_bf16"),
    ];

    /// <summary>Every kernel symbol the launchers use, by module (for docs and the PTX tests).</summary>
    public static IReadOnlyList<(string Module, string Name)> Kernels => KernelTable;

    private readonly CudaContext _context;
    private readonly Dictionary<string, CudaModule> _modules = new(StringComparer.Ordinal);
    private readonly CudaKernel?[] _kernels = new CudaKernel?[(int)KernelId.Count];

    public CudaOps(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        _context = context;
    }

    public CudaContext Context => _context;

    /// <summary>Loads every module now (otherwise on first use), so JIT compilation stays out of timings.</summary>
    public void Preload()
    {
        for (int i = 0; i < (int)KernelId.Count; i++)
            Kernel((KernelId)i);
    }

    /// <summary>The kernel <paramref name="name"/> (one of <see cref="Kernels"/>), loaded as the launchers load it.</summary>
    public CudaKernel GetKernel(string name)
    {
        int index = Array.FindIndex(KernelTable, k => k.Name == name);
        if (index < 0)
            throw new ArgumentException($"'{name}' is not a kernel of the CUDA backend", nameof(name));
        return Kernel((KernelId)index);
    }

    private CudaKernel Kernel(KernelId id)
    {
        if (_kernels[(int)id] is { } kernel)
            return kernel;
        return LoadKernel(id);
    }

    private CudaKernel LoadKernel(KernelId id)
    {
        lock (_modules)
        {
            var (moduleName, name) = KernelTable[(int)id];
            if (!_modules.TryGetValue(moduleName, out var module))
            {
                module = _context.LoadEmbeddedModule(moduleName);
                _modules.Add(moduleName, module);
            }
            var kernel = module.GetKernel(name);
            int shared = id switch
            {
                KernelId.AttentionPrefillD64Bf16 => PrefillSharedBytes(64),
                KernelId.AttentionPrefillD128Bf16 => PrefillSharedBytes(128),
                _ => 0,
            };
            if (shared > DefaultSharedLimit)
            {
                if (shared > _context.MaxSharedMemoryPerBlockOptIn)
                    throw new HorizonException($"{name} needs {shared} bytes of shared memory per block; {_context.DeviceName} allows {_context.MaxSharedMemoryPerBlockOptIn}");
                kernel.SetMaxDynamicSharedMemory(shared);
            }
            _kernels[(int)id] = kernel;
            return kernel;
        }
    }

    private static KernelId Pick<T>(KernelId f32, KernelId bf16, string op) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            return f32;
        if (typeof(T) == typeof(BFloat16))
            return bf16;
        throw new NotSupportedException($"{op}: element type {typeof(T).Name} is not supported on CUDA (float, BFloat16)");
    }

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
        var id = Pick<T>(KernelId.EmbeddingF32, KernelId.EmbeddingBf16, op);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocab);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        Require(table, (long)vocab * dim, op, nameof(table));
        Require(tokens, count, op, nameof(tokens));
        Require(y, (long)count * dim, op, nameof(y));
        if (count == 0)
            return;
        ulong tableP = table.DevicePointer, tokensP = tokens.DevicePointer, yP = y.DevicePointer;
        void** args = stackalloc void*[] { &tableP, &tokensP, &yP, &count, &dim, &vocab };
        // SAFETY: 6 arguments of embedding_{f32,bf16}(const T*, const int*, T*, int count, int dim, int vocab); table,
        // tokens and y hold vocab·dim, count and count·dim elements (checked above); one block per token row.
        Kernel(id).Launch(new Dim3((uint)count), new Dim3(BlockThreads), 0, stream, args);
    }

    // ---------------------------------------------------------------- rms_norm

    /// <summary>y = x / sqrt(mean(x²) + eps) ⊙ γ per row. x, y (rows, dim); gamma (dim). y may be x.</summary>
    public void RmsNorm<T>(CudaDeviceVariable<T> x, CudaDeviceVariable<T> gamma, CudaDeviceVariable<T> y, int rows, int dim, float eps,
        CudaStream? stream = null) where T : unmanaged
    {
        const string op = "rms_norm";
        var id = Pick<T>(KernelId.RmsNormF32, KernelId.RmsNormBf16, op);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        Require(x, (long)rows * dim, op, nameof(x));
        Require(gamma, dim, op, nameof(gamma));
        Require(y, (long)rows * dim, op, nameof(y));
        if (rows == 0)
            return;
        ulong xP = x.DevicePointer, gammaP = gamma.DevicePointer, yP = y.DevicePointer;
        void** args = stackalloc void*[] { &xP, &gammaP, &yP, &rows, &dim, &eps };
        // SAFETY: 6 arguments of rms_norm_{f32,bf16}(const T* x, const T* gamma, T* y, int rows, int dim, float eps);
        // sizes checked above; one block of 256 threads (a multiple of 32, as block_sum needs) per row.
        Kernel(id).Launch(new Dim3((uint)rows), new Dim3(BlockThreads), 0, stream, args);
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
        var id = Pick<T>(KernelId.RopeF32, KernelId.RopeBf16, op);
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
        ulong xP = x.DevicePointer, freqP = inverseFrequencies.DevicePointer;
        void** args = stackalloc void*[] { &xP, &freqP, &rows, &heads, &headDim, &rotaryDim, &startPosition };
        // SAFETY: 7 arguments of rope_{f32,bf16}(T* x, const double* inv_freq, int rows, int heads, int head_dim,
        // int rotary_dim, int start); x holds rows·heads·head_dim and inv_freq rotary_dim/2 elements; grid
        // (rows, CeilDiv(rotary_dim/2, 64)).
        Kernel(id).Launch(new Dim3((uint)rows, CeilDiv(rotaryDim / 2, threads)), new Dim3(threads), 0, stream, args);
    }

    // ---------------------------------------------------------------- swiglu

    /// <summary>h = silu(gate) ⊙ up elementwise over n elements; h may be gate or up.</summary>
    public void SwiGlu<T>(CudaDeviceVariable<T> gate, CudaDeviceVariable<T> up, CudaDeviceVariable<T> h, long n,
        CudaStream? stream = null) where T : unmanaged
    {
        const string op = "swiglu";
        var id = Pick<T>(KernelId.SwiGluF32, KernelId.SwiGluBf16, op);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        Require(gate, n, op, nameof(gate));
        Require(up, n, op, nameof(up));
        Require(h, n, op, nameof(h));
        if (n == 0)
            return;
        ulong gateP = gate.DevicePointer, upP = up.DevicePointer, hP = h.DevicePointer;
        void** args = stackalloc void*[] { &gateP, &upP, &hP, &n };
        // SAFETY: 4 arguments of swiglu_{f32,bf16}(const T* gate, const T* up, T* h, long long n); each holds n elements.
        Kernel(id).Launch(new Dim3(StrideGrid(n)), new Dim3(BlockThreads), 0, stream, args);
    }

    // ---------------------------------------------------------------- add

    /// <summary>Residual add acc += x over n elements.</summary>
    public void Add<T>(CudaDeviceVariable<T> acc, CudaDeviceVariable<T> x, long n, CudaStream? stream = null) where T : unmanaged
    {
        const string op = "add";
        var id = Pick<T>(KernelId.AddF32, KernelId.AddBf16, op);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        Require(acc, n, op, nameof(acc));
        Require(x, n, op, nameof(x));
        if (n == 0)
            return;
        ulong accP = acc.DevicePointer, xP = x.DevicePointer;
        void** args = stackalloc void*[] { &accP, &xP, &n };
        // SAFETY: 3 arguments of add_{f32,bf16}(T* acc, const T* x, long long n); both hold n elements.
        Kernel(id).Launch(new Dim3(StrideGrid(n)), new Dim3(BlockThreads), 0, stream, args);
    }

    // ---------------------------------------------------------------- log_softmax

    /// <summary>Row-wise log-softmax: x (rows, cols) of T, y (rows, cols) float32 log-probabilities.</summary>
    public void LogSoftmax<T>(CudaDeviceVariable<T> x, CudaDeviceVariable<float> y, int rows, int cols, CudaStream? stream = null)
        where T : unmanaged
    {
        const string op = "log_softmax";
        var id = Pick<T>(KernelId.LogSoftmaxF32, KernelId.LogSoftmaxBf16, op);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        Require(x, (long)rows * cols, op, nameof(x));
        Require(y, (long)rows * cols, op, nameof(y));
        if (rows == 0)
            return;
        // A vocabulary row (32K-150K logits) is read three times: give it a whole block of 1024 threads.
        uint threads = cols >= 8192 ? 1024u : BlockThreads;
        ulong xP = x.DevicePointer, yP = y.DevicePointer;
        void** args = stackalloc void*[] { &xP, &yP, &rows, &cols };
        // SAFETY: 4 arguments of log_softmax_{f32,bf16}(const T* x, float* y, int rows, int cols); both hold rows·cols
        // elements; one block (a multiple of 32 threads) per row.
        Kernel(id).Launch(new Dim3((uint)rows), new Dim3(threads), 0, stream, args);
    }

    // ---------------------------------------------------------------- attention

    /// <summary>Dynamic shared memory of attention_prefill for a head dimension: the Q tile and two K and V tiles, rows padded by 8.</summary>
    public static int PrefillSharedBytes(int headDim) => (PrefillQueryTile + 4 * PrefillKeyTile) * (headDim + 8) * sizeof(ushort);

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
    /// <paramref name="scale"/> (default 1/√headDim).
    /// </summary>
    public void AttentionPrefill(CudaDeviceVariable<BFloat16> q, CudaDeviceVariable<BFloat16> k, CudaDeviceVariable<BFloat16> v,
        CudaDeviceVariable<BFloat16> o, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart,
        float? scale = null, CudaStream? stream = null)
    {
        const string op = "attention_prefill";
        CheckAttention(op, batch, queries, keyCount, heads, kvHeads, headDim, queryStart);
        var id = headDim switch
        {
            64 => KernelId.AttentionPrefillD64Bf16,
            128 => KernelId.AttentionPrefillD128Bf16,
            _ => throw new NotSupportedException($"{op}: head_dim {headDim} has no CUDA kernel (64, 128)"),
        };
        Require(q, (long)batch * queries * heads * headDim, op, nameof(q));
        Require(o, (long)batch * queries * heads * headDim, op, nameof(o));
        Require(k, (long)batch * keyCount * kvHeads * headDim, op, nameof(k));
        Require(v, (long)batch * keyCount * kvHeads * headDim, op, nameof(v));
        if (queries == 0)
            return;
        float s = scale ?? 1f / MathF.Sqrt(headDim);
        ulong qP = q.DevicePointer, kP = k.DevicePointer, vP = v.DevicePointer, oP = o.DevicePointer;
        void** args = stackalloc void*[] { &qP, &kP, &vP, &oP, &queries, &keyCount, &heads, &kvHeads, &queryStart, &s };
        // SAFETY: 10 arguments of attention_prefill_d{64,128}_bf16(const bf16* q, k, v, bf16* o, int queries, int key_count,
        // int heads, int kv_heads, int query_start, float scale); sizes checked above; grid (CeilDiv(queries, 64), heads,
        // batch) of 128 threads with the dynamic shared memory the kernel was opted in for at load.
        Kernel(id).Launch(new Dim3(CeilDiv(queries, PrefillQueryTile), (uint)heads, (uint)batch), new Dim3(AttentionThreads),
            PrefillSharedBytes(headDim), stream, args);
    }

    /// <summary>
    /// How attention_decode splits the keys: <c>Splits</c> blocks per (batch, key/value head, group of up to 8 query
    /// heads), each over <c>KeysPerSplit</c> keys, enough blocks to fill the device about four times over.
    /// <c>WorkspaceFloats</c> is the scratch <see cref="AttentionDecode"/> needs: batch·heads·splits·(headDim + 1).
    /// </summary>
    public readonly record struct DecodePlan(int Splits, int KeysPerSplit, long WorkspaceFloats);

    /// <summary>The split plan for one decode step (see <see cref="DecodePlan"/>).</summary>
    public DecodePlan PlanAttentionDecode(int batch, int heads, int kvHeads, int headDim, int keyCount)
    {
        int chunks = (heads / kvHeads + DecodeHeadsPerBlock - 1) / DecodeHeadsPerBlock;
        long blocksPerSplit = (long)batch * kvHeads * chunks;
        long wanted = Math.Max(1, 4L * _context.MultiprocessorCount / blocksPerSplit);
        // A split below 256 keys spends more on its merge than it saves.
        long splits = Math.Clamp(wanted, 1, Math.Max(1, keyCount / 256));
        int keysPerSplit = (int)((keyCount + splits - 1) / splits);
        int actual = (keyCount + keysPerSplit - 1) / keysPerSplit;
        return new DecodePlan(actual, keysPerSplit, (long)batch * heads * actual * (headDim + 1));
    }

    /// <summary>
    /// One decode step of causal attention: each sequence's single query against its cache (Flash-Decoding: split over
    /// the keys, merged by log-sum-exp). q, o are (batch, heads, headDim) bf16; k, v (batch, capacity, kvHeads, headDim)
    /// bf16 with the first keyCount rows valid (the new token's key included). headDim is 64 or 128. workspace holds at
    /// least <see cref="DecodePlan.WorkspaceFloats"/> floats of <see cref="PlanAttentionDecode"/>.
    /// </summary>
    public void AttentionDecode(CudaDeviceVariable<BFloat16> q, CudaDeviceVariable<BFloat16> k, CudaDeviceVariable<BFloat16> v,
        CudaDeviceVariable<BFloat16> o, int batch, int heads, int kvHeads, int headDim, int keyCount, int capacity,
        CudaDeviceVariable<float> workspace, float? scale = null, CudaStream? stream = null)
    {
        const string op = "attention_decode";
        CheckAttention(op, batch, 1, keyCount, heads, kvHeads, headDim, keyCount - 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, keyCount);
        var id = headDim switch
        {
            64 => KernelId.AttentionDecodeD64Bf16,
            128 => KernelId.AttentionDecodeD128Bf16,
            _ => throw new NotSupportedException($"{op}: head_dim {headDim} has no CUDA kernel (64, 128)"),
        };
        var plan = PlanAttentionDecode(batch, heads, kvHeads, headDim, keyCount);
        Require(q, (long)batch * heads * headDim, op, nameof(q));
        Require(o, (long)batch * heads * headDim, op, nameof(o));
        Require(k, (long)batch * capacity * kvHeads * headDim, op, nameof(k));
        Require(v, (long)batch * capacity * kvHeads * headDim, op, nameof(v));
        Require(workspace, plan.WorkspaceFloats, op, nameof(workspace));

        float s = scale ?? 1f / MathF.Sqrt(headDim);
        int keysPerSplit = plan.KeysPerSplit, splits = plan.Splits, rows = batch * heads;
        uint chunks = CeilDiv(heads / kvHeads, DecodeHeadsPerBlock);
        ulong qP = q.DevicePointer, kP = k.DevicePointer, vP = v.DevicePointer, oP = o.DevicePointer;
        ulong partP = workspace.DevicePointer;
        ulong lseP = partP + (ulong)((long)rows * splits * headDim * sizeof(float));
        void** args = stackalloc void*[] { &qP, &kP, &vP, &partP, &lseP, &heads, &kvHeads, &keyCount, &capacity, &keysPerSplit, &s };
        // SAFETY: 11 arguments of attention_decode_d{64,128}_bf16(const bf16* q, k, v, float* o_part, float* lse_part,
        // int heads, int kv_heads, int key_count, int capacity, int keys_per_split, float scale); o_part and lse_part are the
        // two parts of the workspace (rows·splits·head_dim, then rows·splits floats); grid (splits, kv_heads·chunks, batch).
        Kernel(id).Launch(new Dim3((uint)splits, (uint)kvHeads * chunks, (uint)batch), new Dim3(AttentionThreads), 0, stream, args);

        void** combineArgs = stackalloc void*[] { &partP, &lseP, &oP, &rows, &splits, &headDim };
        // SAFETY: 6 arguments of attention_decode_combine_bf16(const float* o_part, const float* lse_part, bf16* o, int rows,
        // int splits, int head_dim); the same workspace parts, o holds rows·head_dim; one block per row.
        Kernel(KernelId.AttentionDecodeCombineBf16).Launch(new Dim3((uint)rows), new Dim3(AttentionThreads), 0, stream, combineArgs);
    }

    /// <summary>
    /// The test reference of the flash-attention error rule: the same attention as <see cref="AttentionPrefill"/>
    /// computed plainly in bf16 (scores and probabilities rounded to bf16, float32 sums), one block per (query, head).
    /// Slow; headDim at most 128.
    /// </summary>
    public void AttentionNaive(CudaDeviceVariable<BFloat16> q, CudaDeviceVariable<BFloat16> k, CudaDeviceVariable<BFloat16> v,
        CudaDeviceVariable<BFloat16> o, int batch, int queries, int keyCount, int heads, int kvHeads, int headDim, int queryStart,
        float? scale = null, CudaStream? stream = null)
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
        ulong qP = q.DevicePointer, kP = k.DevicePointer, vP = v.DevicePointer, oP = o.DevicePointer;
        void** args = stackalloc void*[] { &qP, &kP, &vP, &oP, &queries, &keyCount, &heads, &kvHeads, &headDim, &queryStart, &s };
        // SAFETY: 11 arguments of attention_naive_bf16(const bf16* q, k, v, bf16* o, int queries, int key_count, int heads,
        // int kv_heads, int head_dim, int query_start, float scale); sizes checked above; 128 threads ≥ head_dim.
        Kernel(KernelId.AttentionNaiveBf16).Launch(new Dim3((uint)queries, (uint)heads, (uint)batch), new Dim3(AttentionThreads), 0, stream, args);
    }

    /// <summary>Unloads the modules (kernels obtained from them become unusable).</summary>
    public void Dispose()
    {
        lock (_modules)
        {
            foreach (var module in _modules.Values)
                module.Dispose();
            _modules.Clear();
            Array.Clear(_kernels);
        }
    }
}
