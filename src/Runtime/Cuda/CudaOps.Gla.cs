namespace Horizon.Cuda;

// Gated linear attention (native/gla.cu): the core recurrence of the gla token mixer, S_t = Diag(α_t) S_{t−1} + k_tᵀ v_t,
// o_t = (scale·q_t) S_t, the same function as the CPU's GlaKernels.Mix with the same state layout (GlaState.S).
public sealed partial class CudaOps
{
    /// <summary>Tokens per chunk of the GLA prefill kernels (gla::C in native/gla.cu).</summary>
    public const int GlaChunk = 64;

    /// <summary>The largest key head dimension gla_chunk_output takes (its shared memory grows with d_k).</summary>
    public const int MaxGlaHeadKDim = 256;

    private const int GlaThreads = 256;

    /// <summary>Value columns of one gla_chunk_state block (gla::STATE_TJ in native/gla.cu).</summary>
    private const int GlaStateColumns = 256;

    /// <summary>
    /// Dynamic shared memory of gla_chunk_state (gla::STATE_SHARED): the float64 sub-chunk sums of 64 key rows, the
    /// decayed keys (64 tokens × 64 key rows) and the v tile (64 tokens × 256 value columns), float32.
    /// </summary>
    public const int GlaStateSharedBytes = 4 * 64 * 8 + GlaChunk * 64 * 4 + GlaChunk * GlaStateColumns * 4;

    /// <summary>
    /// Dynamic shared memory of gla_chunk_output for a key head dimension (gla_output_layout in native/gla.cu):
    /// float64 sub-chunk sums and ends, the inter-chunk queries, the intra-chunk weights and the per-step tiles.
    /// </summary>
    public static int GlaOutputSharedBytes(int headKDim)
    {
        int dkp = (headKDim + 31) / 32 * 32;
        int bytes = 4 * dkp * 8 * 2 + GlaChunk * (dkp + 1) * 4;
        bytes = (bytes + 15) / 16 * 16;
        bytes += GlaChunk * (GlaChunk + 1) * 4;
        bytes = (bytes + 15) / 16 * 16;
        // the A phase's tiles (rows of 32 + 4 floats), or A and the output phase's tiles (rows of 64 + 4 floats),
        // whichever is larger, then a third 32 × 68 slot of the S_c stream
        return bytes + (Math.Max(5 * GlaChunk * 36 + 6 * 32, GlaChunk * (GlaChunk + 4) + (32 + GlaChunk) * 68) + 32 * 68) * 4;
    }

    /// <summary>
    /// Column splits of gla_chunk_output: blocks per (chunk, query head, sequence), each taking a range of whole 64-column
    /// steps of d_v. Splitting repeats the intra-chunk weights A in every block, so it pays only while the grid does not
    /// fill the machine: at most 2·multiprocessors blocks in all (two fit on one), at most 4 and at most the column steps.
    /// </summary>
    private int GlaOutputSplits(int chunks, int heads, int batch, int headVDim)
    {
        long blocks = (long)chunks * heads * batch;
        long fit = 2L * _context.MultiprocessorCount / Math.Max(1, blocks);
        int steps = (headVDim + 63) / 64;
        int splits = (int)Math.Clamp(fit, 1, Math.Min(4, steps));
        while (splits > 1 && (long)heads * splits > 65535)
            splits--;
        return splits;
    }

    /// <summary>
    /// The scratch of <see cref="GlaChunkPrefill{T}"/>: per (sequence, key/value head, chunk of 64 tokens) the chunk's
    /// contribution to the state, then the state before the chunk (d_k·d_v floats), and the chunk's decay (d_k floats).
    /// </summary>
    public readonly record struct GlaPrefillPlan(int Chunks, long ChunkStateFloats, long ChunkDecayFloats)
    {
        /// <summary>Floats of workspace <see cref="GlaChunkPrefill{T}"/> needs.</summary>
        public long WorkspaceFloats => ChunkStateFloats + ChunkDecayFloats;
    }

    /// <summary>The workspace plan of a GLA prefill (see <see cref="GlaPrefillPlan"/>).</summary>
    public static GlaPrefillPlan PlanGlaPrefill(int batch, int rows, int kvHeads, int headKDim, int headVDim)
    {
        int chunks = (int)(((long)rows + GlaChunk - 1) / GlaChunk);
        long perChunk = (long)batch * kvHeads * chunks;
        return new GlaPrefillPlan(chunks, perChunk * headKDim * headVDim, perChunk * headKDim);
    }

    private static void CheckGla(string op, int batch, int rows, int heads, int kvHeads, int headKDim, int headVDim)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headKDim);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headVDim);
        if (heads % kvHeads != 0)
            throw new ArgumentException($"{op}: heads {heads} is not a multiple of kv_heads {kvHeads}", nameof(kvHeads));
        if (heads > 65535 || batch > 65535 || (long)batch * kvHeads > 65535)
            throw new ArgumentException($"{op}: heads {heads}, batch {batch} and batch·kv_heads {(long)batch * kvHeads} must be at most 65535 (grid y and z)");
    }

    /// <summary>
    /// GLA prefill in the chunkwise parallel form (Yang et al. 2024 §4.2, docs/ops/gla.md), for <paramref name="batch"/>
    /// sequences of <paramref name="rows"/> tokens each, continuing from <paramref name="state"/>:
    /// q (batch, rows, heads, d_k), k (batch, rows, kvHeads, d_k), v (batch, rows, kvHeads, d_v) of T (float or
    /// BFloat16); logGates (batch, rows, kvHeads, d_k) float32 log α ≤ 0, or null for α ≡ 1 (linear attention);
    /// state (batch, kvHeads, d_k, d_v) float32, GlaState.S's layout, advanced in place; o (batch, rows, heads, d_v) of T.
    /// Three launches: each chunk's contribution (all chunks at once), the scan over the chunks' states, each chunk's
    /// outputs (all chunks at once, the value columns split over several blocks when the grid is small); arithmetic float32 (bf16: the output products on the tensor cores with tf32 inputs
    /// and float32 accumulation, the intra-chunk weights' off-diagonal 16 × 16 blocks by 3×tf32; the state stays float32), cumulative log-gates float64. d_k ≤ 256.
    /// </summary>
    public void GlaChunkPrefill<T>(CudaDeviceVariable<T> q, CudaDeviceVariable<T> k, CudaDeviceVariable<T> v, CudaDeviceVariable<float>? logGates,
        CudaDeviceVariable<float> state, CudaDeviceVariable<T> o, int batch, int rows, int heads, int kvHeads, int headKDim, int headVDim,
        CudaDeviceVariable<float> workspace, float? scale = null, CudaStream? stream = null) where T : unmanaged
    {
        const string op = "gla_chunk_prefill";
        bool f32 = IsFloat<T>(op);
        CheckGla(op, batch, rows, heads, kvHeads, headKDim, headVDim);
        if (headKDim > MaxGlaHeadKDim)
            throw new NotSupportedException($"{op}: head_k_dim {headKDim} is over the kernel's {MaxGlaHeadKDim}");
        long tokens = (long)batch * rows;
        Require(q, tokens * heads * headKDim, op, nameof(q));
        Require(k, tokens * kvHeads * headKDim, op, nameof(k));
        Require(v, tokens * kvHeads * headVDim, op, nameof(v));
        if (logGates is not null)
            Require(logGates, tokens * kvHeads * headKDim, op, nameof(logGates));
        Require(state, (long)batch * kvHeads * headKDim * headVDim, op, nameof(state));
        Require(o, tokens * heads * headVDim, op, nameof(o));
        var plan = PlanGlaPrefill(batch, rows, kvHeads, headKDim, headVDim);
        Require(workspace, plan.WorkspaceFloats, op, nameof(workspace));
        if (rows == 0)
            return;
        float s = scale ?? 1f / MathF.Sqrt(headKDim);
        DevicePointer<float> chunkStates = workspace, chunkDecay = workspace.At(plan.ChunkStateFloats);
        DevicePointer<float> gates = logGates;
        uint bh = (uint)(batch * kvHeads);

        // 1. U_c and exp(b_last) of every chunk: 64 × 256 tiles of the (d_k, d_v) state per block.
        var stateGrid = new Dim3((uint)plan.Chunks, CeilDiv(headKDim, 64) * CeilDiv(headVDim, GlaStateColumns), bh);
        if (f32)
            Gla.GlaChunkStateF32(stateGrid, GlaThreads, GlaStateSharedBytes, stream, F32(k), F32(v), gates, chunkStates, chunkDecay, rows, kvHeads, headKDim, headVDim);
        else
            Gla.GlaChunkStateBf16(stateGrid, GlaThreads, GlaStateSharedBytes, stream, Bf16(k), Bf16(v), gates, chunkStates, chunkDecay, rows, kvHeads, headKDim, headVDim);
        // 2. The states at the chunk starts, one thread per state element; the final state back into `state`.
        Gla.GlaStateScanF32(new Dim3(CeilDiv((long)headKDim * headVDim, GlaThreads), bh), GlaThreads, 0, stream,
            chunkStates, chunkDecay, state, plan.Chunks, headKDim, headVDim);
        // 3. The outputs of every (chunk, query head, sequence); when that is under one block per two multiprocessors'
        // worth (two blocks fit on one), the value columns are split over up to 4 blocks (each rebuilds A).
        var outputGrid = new Dim3((uint)plan.Chunks, (uint)(heads * GlaOutputSplits(plan.Chunks, heads, batch, headVDim)), (uint)batch);
        int shared = GlaOutputSharedBytes(headKDim);
        if (f32)
            Gla.GlaChunkOutputF32(outputGrid, GlaThreads, shared, stream, F32(q), F32(k), F32(v), gates, chunkStates, F32(o), rows, heads, kvHeads, headKDim, headVDim, s);
        else
            Gla.GlaChunkOutputBf16(outputGrid, GlaThreads, shared, stream, Bf16(q), Bf16(k), Bf16(v), gates, chunkStates, Bf16(o), rows, heads, kvHeads, headKDim, headVDim, s);
    }

    /// <summary>
    /// GLA in the recurrent form (§4.1), float32, token by token over <paramref name="rows"/> tokens (1 for decode):
    /// S ← Diag(exp(g_t)) S + k_tᵀ v_t, o_t = (scale·q_t) S. Layouts as <see cref="GlaChunkPrefill{T}"/>; the state is
    /// advanced in place.
    /// </summary>
    public void GlaRecurrentDecode(CudaDeviceVariable<float> q, CudaDeviceVariable<float> k, CudaDeviceVariable<float> v,
        CudaDeviceVariable<float>? logGates, CudaDeviceVariable<float> state, CudaDeviceVariable<float> o, int batch, int rows, int heads,
        int kvHeads, int headKDim, int headVDim, float? scale = null, CudaStream? stream = null)
    {
        const string op = "gla_recurrent_decode";
        CheckGla(op, batch, rows, heads, kvHeads, headKDim, headVDim);
        long tokens = (long)batch * rows;
        Require(q, tokens * heads * headKDim, op, nameof(q));
        Require(k, tokens * kvHeads * headKDim, op, nameof(k));
        Require(v, tokens * kvHeads * headVDim, op, nameof(v));
        if (logGates is not null)
            Require(logGates, tokens * kvHeads * headKDim, op, nameof(logGates));
        Require(state, (long)batch * kvHeads * headKDim * headVDim, op, nameof(state));
        Require(o, tokens * heads * headVDim, op, nameof(o));
        if (rows == 0)
            return;
        float s = scale ?? 1f / MathF.Sqrt(headKDim);
        // 8 groups of key dimensions × 32 value dimensions per block.
        Gla.GlaRecurrentDecodeF32(new Dim3(CeilDiv(headVDim, 32), (uint)(batch * kvHeads)), GlaThreads, 0, stream,
            q, k, v, logGates, state, o, rows, heads, kvHeads, headKDim, headVDim, s);
    }
}
