using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Horizon.Ops;

namespace Horizon.Cpu;

/// <summary>
/// The CPU backend: float32 activations, row-major tensors, weights read in their stored type (F32 in place,
/// F16/BF16 widened block by block), vectorised with <see cref="TensorPrimitives"/> and split over threads with
/// <see cref="Parallel"/>. Shapes are written in words: "(rows, in)" is rows × in floats, the last index fastest.
/// </summary>
/// <remarks>
/// Spans cannot be captured by the lambdas that <see cref="Parallel"/> runs, so the multithreaded kernels pin
/// their spans for the duration of the (synchronous) parallel loop and rebuild spans from the pointers inside.
/// </remarks>
public static unsafe partial class CpuKernels
{
    /// <summary>
    /// Multiply-adds below which a chunk of work is not worth handing to another thread (a thread-pool hand-off
    /// costs a few microseconds; 64K multiply-adds take about as long on one core).
    /// </summary>
    private const long MinWorkPerChunk = 1 << 16;

    /// <summary>
    /// Floats of widened weights a <see cref="Linear"/> worker keeps at once: the block of W rows every x row is
    /// dotted with. 16K floats (64 KiB) stay in L2 while the x rows stream past them.
    /// </summary>
    private const int WeightBlockFloats = 16 * 1024;

    /// <summary>
    /// Output features handled together: the SIMD dot kernel computes 4 W rows per pass, so blocks and thread
    /// chunks are cut at multiples of 4 and only the last feature block of a matrix can have a remainder.
    /// </summary>
    private const int FeatureQuantum = 4;

    /// <summary>
    /// Rows of x one <see cref="Linear"/> pass covers. Every W block is dotted with all rows of the pass, so the
    /// rows must stay cache-resident (256 × 4096 floats = 4 MiB); a longer prefill is done in several passes.
    /// Each pass widens F16/BF16 weights again, a few percent of the pass's multiply-adds at most.
    /// </summary>
    private const int LinearRowBlock = 256;

    /// <summary>
    /// Up to this many rows (decode, small chunks), BF16 weights are dotted as stored (<see cref="TileKernels.DotRowsBf16"/>)
    /// instead of widened block by block: with so few rows to reuse a widened block, the widening's extra write and
    /// read of W cost more than they save (1.7–3.8× on a decode GEMV, docs/performance.md).
    /// </summary>
    private const int DirectBf16Rows = 4;

    /// <summary>Rows of x a <see cref="SwiGluMlp"/> call processes at once, so its gate/up scratch stays bounded for long prefills.</summary>
    private const int MlpRowBlock = 256;

    /// <summary>Threads the CPU kernels use at most (default: the processor count). Results do not depend on it.</summary>
    public static int MaxDegreeOfParallelism
    {
        get => Parallelism.MaxDegreeOfParallelism;
        set => Parallelism.MaxDegreeOfParallelism = value;
    }

    /// <summary>
    /// Fully connected layer y = x · Wᵀ + b (the position-wise linear maps of Vaswani et al. 2017, § 3.3, in the
    /// Hugging Face [out, in] weight layout).
    /// </summary>
    /// <param name="x">(rows, in): one input vector per row.</param>
    /// <param name="rows">Number of input vectors (tokens).</param>
    /// <param name="weight">W, (out, in), stored F32, F16 or BF16.</param>
    /// <param name="bias">b, (out), or empty for no bias.</param>
    /// <param name="y">(rows, out); must not overlap <paramref name="x"/>.</param>
    /// <remarks>
    /// Work is cut into blocks of output features (rows of W) and the blocks are spread over threads, so even a
    /// single decode row (rows = 1) uses every core. Each block of W is widened once to float32 and then dotted
    /// with every x row, so F16/BF16 widening is paid once per weight per pass of up to 256 rows, not once per
    /// token. The dot products run in a register-blocked SIMD kernel (2 x rows × 4 W rows at a time).
    /// </remarks>
    public static void Linear(ReadOnlySpan<float> x, int rows, Matrix weight, ReadOnlySpan<float> bias, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        int inFeatures = weight.Cols;
        int outFeatures = weight.Rows;
        if (x.Length != (long)rows * inFeatures)
            throw new ArgumentException($"Linear '{weight.Name}': x has {x.Length} floats, expected rows {rows} × in {inFeatures} = {(long)rows * inFeatures}", nameof(x));
        if (y.Length != (long)rows * outFeatures)
            throw new ArgumentException($"Linear '{weight.Name}': y has {y.Length} floats, expected rows {rows} × out {outFeatures} = {(long)rows * outFeatures}", nameof(y));
        if (bias.Length != 0 && bias.Length != outFeatures)
            throw new ArgumentException($"Linear '{weight.Name}': bias has {bias.Length} floats, expected out = {outFeatures} (or none)", nameof(bias));
        if (x.Overlaps(y))
            throw new ArgumentException($"Linear '{weight.Name}': y must not overlap x", nameof(y));
        if (rows == 0)
            return;

        for (int rowStart = 0; rowStart < rows; rowStart += LinearRowBlock)
        {
            int count = Math.Min(LinearRowBlock, rows - rowStart);
            LinearRows(x.Slice(rowStart * inFeatures, count * inFeatures), count, weight, bias, y.Slice(rowStart * outFeatures, count * outFeatures));
        }
    }

    /// <summary>One pass of <see cref="Linear"/> over at most <see cref="LinearRowBlock"/> rows, split over threads by output features.</summary>
    private static void LinearRows(ReadOnlySpan<float> x, int rows, Matrix weight, ReadOnlySpan<float> bias, Span<float> y)
    {
        int inFeatures = weight.Cols;
        int outFeatures = weight.Rows;
        // Widened W rows each worker holds at once: a multiple of the quantum, at least one quantum even when
        // that exceeds the budget (rows of 16K+ floats).
        int blockRows = Math.Max(1, WeightBlockFloats / inFeatures / FeatureQuantum) * FeatureQuantum;
        bool direct = weight.DType == WeightDType.BF16 && rows <= DirectBf16Rows;
        int scratchFloats = weight.DType == WeightDType.F32 || direct ? 0 : Math.Min(blockRows, outFeatures) * inFeatures;
        int quanta = (outFeatures + FeatureQuantum - 1) / FeatureQuantum;
        int chunks = Parallelism.ChunkCount(quanta, (long)rows * inFeatures * outFeatures, MinWorkPerChunk);

        fixed (float* xPinned = x, biasPinned = bias, yPinned = y)
        {
            // Copies of the fixed pointers: the lambda may capture these, not the fixed locals themselves.
            float* xPointer = xPinned, biasPointer = biasPinned, yPointer = yPinned;
            int xLength = x.Length, biasLength = bias.Length, yLength = y.Length;
            Parallelism.For(chunks, scratchFloats, (chunk, scratch) =>
            {
                var (startQuantum, endQuantum) = Parallelism.ChunkRange(quanta, chunks, chunk);
                LinearOutputRange(
                    new ReadOnlySpan<float>(xPointer, xLength), rows, weight, new ReadOnlySpan<float>(biasPointer, biasLength),
                    new Span<float>(yPointer, yLength),
                    startQuantum * FeatureQuantum, Math.Min(endQuantum * FeatureQuantum, outFeatures), blockRows, scratch);
            });
        }
    }

    /// <summary>Computes output features [start, end) of <see cref="Linear"/> for every row, W block by W block.</summary>
    private static void LinearOutputRange(
        ReadOnlySpan<float> x, int rows, Matrix weight, ReadOnlySpan<float> bias, Span<float> y,
        int start, int end, int blockRows, float[] scratch)
    {
        int inFeatures = weight.Cols;
        int outFeatures = weight.Rows;
        int elementBytes = weight.DType.ByteSize();
        ReadOnlySpan<byte> weightBytes = weight.Data.Span;

        for (int blockStart = start; blockStart < end; blockStart += blockRows)
        {
            int blockCount = Math.Min(blockRows, end - blockStart);
            // W rows [blockStart, blockStart + blockCount) are contiguous: (blockCount, in).
            ReadOnlySpan<byte> blockBytes = weightBytes.Slice(blockStart * inFeatures * elementBytes, blockCount * inFeatures * elementBytes);
            Span<float> yBlock = y[blockStart..];
            if (weight.DType == WeightDType.BF16 && rows <= DirectBf16Rows)
            {
                TileKernels.DotRowsBf16(x, rows, MemoryMarshal.Cast<byte, ushort>(blockBytes), blockCount, inFeatures, yBlock, outFeatures);
                AddBias(bias, rows, outFeatures, blockStart, blockCount, yBlock);
                continue;
            }
            ReadOnlySpan<float> block;
            if (weight.DType == WeightDType.F32)
            {
                block = MemoryMarshal.Cast<byte, float>(blockBytes); // read in place, no copy
            }
            else
            {
                Span<float> widened = scratch.AsSpan(0, blockCount * inFeatures);
                WeightConversion.ToSingle(blockBytes, weight.DType, widened);
                block = widened;
            }

            // y[r, blockStart + f] = x_r · W_{blockStart + f} for every row r and every f in the block.
            TileKernels.DotRows(x, rows, inFeatures, block, blockCount, inFeatures, inFeatures, yBlock, outFeatures);
            AddBias(bias, rows, outFeatures, blockStart, blockCount, yBlock);
        }
    }

    /// <summary>y[r, f] += bias[blockStart + f] for the block's features of every row (nothing without a bias).</summary>
    private static void AddBias(ReadOnlySpan<float> bias, int rows, int outFeatures, int blockStart, int blockCount, Span<float> yBlock)
    {
        if (bias.IsEmpty)
            return;
        for (int row = 0; row < rows; row++)
        {
            Span<float> yRow = yBlock.Slice(row * outFeatures, blockCount);
            TensorPrimitives.Add(yRow, bias.Slice(blockStart, blockCount), yRow);
        }
    }

    /// <summary>
    /// RMS normalisation y = x / sqrt(mean(x²) + ε) ⊙ γ over each row (Zhang &amp; Sennrich 2019, eq. 4, with ε
    /// inside the root as in Llama/Qwen2).
    /// </summary>
    /// <param name="x">(rows, dim).</param>
    /// <param name="rows">Number of rows.</param>
    /// <param name="gamma">γ, (dim).</param>
    /// <param name="eps">ε added to the mean square.</param>
    /// <param name="y">(rows, dim); may be the same span as <paramref name="x"/> (in place).</param>
    /// <remarks>The sum of squares is accumulated in float32, as the Hugging Face reference does after upcasting.</remarks>
    public static void RmsNorm(ReadOnlySpan<float> x, int rows, ReadOnlySpan<float> gamma, float eps, Span<float> y)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        int dim = gamma.Length;
        if (dim == 0)
            throw new ArgumentException("RmsNorm: gamma is empty", nameof(gamma));
        if (x.Length != (long)rows * dim)
            throw new ArgumentException($"RmsNorm: x has {x.Length} floats, expected rows {rows} × dim {dim} = {(long)rows * dim}", nameof(x));
        if (y.Length != x.Length)
            throw new ArgumentException($"RmsNorm: y has {y.Length} floats, expected {x.Length} (same shape as x)", nameof(y));

        // Rows are independent; one row is one pass over dim floats, so only long prefills are worth splitting.
        int chunks = Parallelism.ChunkCount(rows, (long)rows * dim, MinWorkPerChunk * 4);
        if (chunks == 1)
        {
            RmsNormRows(x, gamma, eps, y, 0, rows);
            return;
        }
        fixed (float* xPinned = x, gammaPinned = gamma, yPinned = y)
        {
            float* xPointer = xPinned, gammaPointer = gammaPinned, yPointer = yPinned;
            int length = x.Length;
            Parallelism.For(chunks, 0, (chunk, _) =>
            {
                var (start, end) = Parallelism.ChunkRange(rows, chunks, chunk);
                RmsNormRows(new ReadOnlySpan<float>(xPointer, length), new ReadOnlySpan<float>(gammaPointer, dim), eps, new Span<float>(yPointer, length), start, end);
            });
        }
    }

    private static void RmsNormRows(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, float eps, Span<float> y, int start, int end)
    {
        int dim = gamma.Length;
        for (int row = start; row < end; row++)
        {
            ReadOnlySpan<float> xRow = x.Slice(row * dim, dim);
            Span<float> yRow = y.Slice(row * dim, dim);
            float meanSquare = TensorPrimitives.SumOfSquares(xRow) / dim;
            float inverseRms = 1f / MathF.Sqrt(meanSquare + eps);
            // Elementwise, so y may be x: each element is read before it is written.
            TensorPrimitives.Multiply(xRow, inverseRms, yRow);
            TensorPrimitives.Multiply(yRow, gamma, yRow);
        }
    }

    /// <summary>
    /// Token embedding lookup: y row t = table row tokens[t] (the input embedding of Vaswani et al. 2017, § 3.4).
    /// </summary>
    /// <param name="table">(vocab, dim), any stored type.</param>
    /// <param name="tokens">(tokens): ids in [0, vocab).</param>
    /// <param name="y">(tokens, dim).</param>
    /// <exception cref="HorizonException">A token id is outside [0, vocab); nothing is written then.</exception>
    public static void Embedding(Matrix table, ReadOnlySpan<int> tokens, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(table);
        int dim = table.Cols;
        int vocab = table.Rows;
        if (y.Length != (long)tokens.Length * dim)
            throw new ArgumentException($"Embedding '{table.Name}': y has {y.Length} floats, expected tokens {tokens.Length} × dim {dim} = {(long)tokens.Length * dim}", nameof(y));
        // Validate every id first, so a bad id leaves y untouched rather than half written.
        for (int position = 0; position < tokens.Length; position++)
        {
            int token = tokens[position];
            if ((uint)token >= (uint)vocab)
                throw new HorizonException($"token id {token} at position {position} is out of range [0, {vocab})");
        }
        for (int position = 0; position < tokens.Length; position++)
            table.ReadRow(tokens[position], y.Slice(position * dim, dim));
    }

    /// <summary>
    /// SwiGLU feed-forward block y = W_down (silu(W_gate x) ⊙ W_up x), silu(z) = z·σ(z)
    /// (Shazeer 2020, "GLU Variants Improve Transformer", eq. 6, FFN_SwiGLU with Swish₁).
    /// </summary>
    /// <param name="x">(rows, hidden).</param>
    /// <param name="rows">Number of rows (tokens).</param>
    /// <param name="weights">Gate and up (intermediate, hidden), down (hidden, intermediate).</param>
    /// <param name="y">(rows, hidden); must not overlap <paramref name="x"/>.</param>
    public static void SwiGluMlp(ReadOnlySpan<float> x, int rows, SwiGluMlpWeights weights, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        int hidden = weights.Hidden;
        int intermediate = weights.Intermediate;
        if (weights.Up.Rows != intermediate || weights.Up.Cols != hidden)
            throw new ArgumentException($"SwiGluMlp: up '{weights.Up.Name}' is [{weights.Up.Rows}, {weights.Up.Cols}], expected [{intermediate}, {hidden}] like gate", nameof(weights));
        if (weights.Down.Rows != hidden || weights.Down.Cols != intermediate)
            throw new ArgumentException($"SwiGluMlp: down '{weights.Down.Name}' is [{weights.Down.Rows}, {weights.Down.Cols}], expected [{hidden}, {intermediate}]", nameof(weights));
        if (x.Length != (long)rows * hidden)
            throw new ArgumentException($"SwiGluMlp: x has {x.Length} floats, expected rows {rows} × hidden {hidden} = {(long)rows * hidden}", nameof(x));
        if (y.Length != x.Length)
            throw new ArgumentException($"SwiGluMlp: y has {y.Length} floats, expected rows {rows} × hidden {hidden} = {(long)rows * hidden}", nameof(y));
        if (x.Overlaps(y))
            throw new ArgumentException("SwiGluMlp: y must not overlap x", nameof(y));
        if (rows == 0)
            return;

        int blockRows = Math.Min(rows, MlpRowBlock);
        float[] gateBuffer = ArrayPool<float>.Shared.Rent(blockRows * intermediate);
        float[] upBuffer = ArrayPool<float>.Shared.Rent(blockRows * intermediate);
        try
        {
            for (int blockStart = 0; blockStart < rows; blockStart += blockRows)
            {
                int count = Math.Min(blockRows, rows - blockStart);
                ReadOnlySpan<float> xBlock = x.Slice(blockStart * hidden, count * hidden);
                Span<float> gate = gateBuffer.AsSpan(0, count * intermediate); // (count, intermediate)
                Span<float> up = upBuffer.AsSpan(0, count * intermediate);     // (count, intermediate)
                Linear(xBlock, count, weights.Gate, default, gate);
                Linear(xBlock, count, weights.Up, default, up);
                // h = silu(gate) ⊙ up = gate ⊙ σ(gate) ⊙ up, kept in `up`.
                TensorPrimitives.Multiply(up, gate, up);
                TensorPrimitives.Sigmoid(gate, gate);
                TensorPrimitives.Multiply(up, gate, up);
                Linear(up, count, weights.Down, default, y.Slice(blockStart * hidden, count * hidden));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(gateBuffer);
            ArrayPool<float>.Shared.Return(upBuffer);
        }
    }

    /// <summary>Residual add: acc += x elementwise (the residual connection of He et al. 2016, eq. 1). Both are (n).</summary>
    public static void Add(Span<float> acc, ReadOnlySpan<float> x)
    {
        if (acc.Length != x.Length)
            throw new ArgumentException($"Add: acc has {acc.Length} floats, x has {x.Length}; they must match", nameof(x));
        TensorPrimitives.Add(acc, x, acc);
    }

    /// <summary>
    /// Rotary position embedding in place (Su et al. 2021, RoFormer, eq. 34), Hugging Face "rotate half" layout:
    /// with r = <see cref="RopeTable.RotaryDim"/> (= d unless partial), for i &lt; r/2 the pair (x_i, x_{i+r/2}) at
    /// position p is rotated by the angle p·θ_i (θ_i = <see cref="RopeTable.InverseFrequencies"/>[i], already
    /// divided by a linear scaling factor): out_i = x_i cos − x_{i+r/2} sin, out_{i+r/2} = x_{i+r/2} cos + x_i sin;
    /// dimensions r … d − 1 are left as they are (GPT-NeoX partial rotary).
    /// </summary>
    /// <param name="x">(rows, heads, headDim), rotated in place.</param>
    /// <param name="rows">Number of tokens.</param>
    /// <param name="heads">Heads per token (query or key/value heads).</param>
    /// <param name="headDim">d; must equal <see cref="RopeTable.HeadDim"/>.</param>
    /// <param name="startPosition">Absolute position of row 0; row r is at startPosition + r.</param>
    /// <param name="rope">The frequencies.</param>
    /// <remarks>
    /// The angle p·θ_i is formed in float64 and only its cosine and sine are rounded to float32, so positions in
    /// the hundreds of thousands keep their phase (a float32 angle would be off by p·2⁻²⁴ radians).
    /// </remarks>
    public static void Rope(Span<float> x, int rows, int heads, int headDim, int startPosition, RopeTable rope)
    {
        ArgumentNullException.ThrowIfNull(rope);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(heads);
        ArgumentOutOfRangeException.ThrowIfNegative(startPosition);
        if (headDim != rope.HeadDim)
            throw new ArgumentException($"Rope: head_dim {headDim} differs from the table's {rope.HeadDim}", nameof(headDim));
        if (x.Length != (long)rows * heads * headDim)
            throw new ArgumentException($"Rope: x has {x.Length} floats, expected rows {rows} × heads {heads} × head_dim {headDim} = {(long)rows * heads * headDim}", nameof(x));
        if (rows == 0 || heads == 0)
            return;

        // Per row: rotary_dim/2 sine-cosine pairs in float64 plus heads·rotary_dim rotations, about 8 units of work.
        int rotaryDim = rope.RotaryDim;
        int chunks = Parallelism.ChunkCount(rows, (long)rows * (heads * rotaryDim + 8 * rotaryDim), MinWorkPerChunk);
        int scratchFloats = rotaryDim; // cos (r/2) then sin (r/2) of the current row
        fixed (float* xPinned = x)
        {
            float* xPointer = xPinned;
            int length = x.Length;
            Parallelism.For(chunks, scratchFloats, (chunk, scratch) =>
            {
                var (start, end) = Parallelism.ChunkRange(rows, chunks, chunk);
                RopeRows(new Span<float>(xPointer, length), heads, headDim, rotaryDim, startPosition, rope.InverseFrequencies, start, end, scratch);
            });
        }
    }

    private static void RopeRows(Span<float> x, int heads, int headDim, int rotaryDim, int startPosition, double[] inverseFrequencies, int start, int end, float[] scratch)
    {
        int half = rotaryDim / 2;
        Span<float> cos = scratch.AsSpan(0, half);
        Span<float> sin = scratch.AsSpan(half, half);
        for (int row = start; row < end; row++)
        {
            double position = startPosition + row;
            for (int i = 0; i < half; i++)
            {
                (double sinAngle, double cosAngle) = Math.SinCos(position * inverseFrequencies[i]);
                cos[i] = (float)cosAngle;
                sin[i] = (float)sinAngle;
            }
            Span<float> rowValues = x.Slice(row * heads * headDim, heads * headDim);
            for (int head = 0; head < heads; head++)
            {
                Span<float> first = rowValues.Slice(head * headDim, half);   // x_i
                Span<float> second = rowValues.Slice(head * headDim + half, half); // x_{i+r/2}; x_r … x_{d−1} untouched
                RotatePairs(first, second, cos, sin);
            }
        }
    }

    /// <summary>(a, b) ← (a cos − b sin, b cos + a sin) elementwise, in one pass with SIMD vectors.</summary>
    private static void RotatePairs(Span<float> first, Span<float> second, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= first.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var a = new Vector<float>(first[i..]);
                var b = new Vector<float>(second[i..]);
                var c = new Vector<float>(cos[i..]);
                var s = new Vector<float>(sin[i..]);
                (a * c - b * s).CopyTo(first[i..]);
                (b * c + a * s).CopyTo(second[i..]);
            }
        }
        for (; i < first.Length; i++)
        {
            float a = first[i], b = second[i];
            first[i] = a * cos[i] - b * sin[i];
            second[i] = b * cos[i] + a * sin[i];
        }
    }

    /// <summary>
    /// One attention layer on new tokens (Vaswani et al. 2017, eq. 1 and § 3.2.2, with grouped key/value heads,
    /// Ainslie et al. 2023): q = x·W_qᵀ + b_q (rows, heads, d), k and v = x·W_{k,v}ᵀ + b (rows, kv_heads, d);
    /// RoPE on q and k at positions cache.Length + r; k and v appended to the cache; causal attention of each
    /// query over all cached keys up to its own position; y = o·W_oᵀ + b_o.
    /// </summary>
    /// <param name="x">(rows, hidden): the tokens at positions cache.Length … cache.Length + rows − 1.</param>
    /// <param name="rows">Number of new tokens (1 for decode).</param>
    /// <param name="weights">Projections, see <see cref="AttentionWeights"/>.</param>
    /// <param name="options">Sizes and RoPE.</param>
    /// <param name="cache">Keys (after RoPE) and values of the earlier tokens; grows by <paramref name="rows"/>.</param>
    /// <param name="y">(rows, hidden); must not overlap <paramref name="x"/>.</param>
    /// <exception cref="HorizonException">The cache has no room for <paramref name="rows"/> more tokens.</exception>
    public static void AttentionLayer(ReadOnlySpan<float> x, int rows, AttentionWeights weights, AttentionOptions options, KvCache cache, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ValidateAttentionLayer(x, rows, weights, options, cache, y);
        if (rows == 0)
            return;

        int start = cache.Length;
        if ((long)start + rows > cache.Capacity)
            throw new HorizonException($"KV cache full: capacity {cache.Capacity}, {start} tokens cached, cannot append {rows} more");

        int heads = options.Heads, kvHeads = options.KvHeads, headDim = options.HeadDim;
        int queryWidth = heads * headDim;  // floats per token of q and of the attention output

        float[] queryBuffer = ArrayPool<float>.Shared.Rent(rows * queryWidth);
        float[] attendedBuffer = ArrayPool<float>.Shared.Rent(rows * queryWidth);
        // New keys and values are projected straight into their cache page (or into staging when the rows cross
        // a page boundary): (rows, kv_heads, d) each. Without the commit at the end the cache is left as it was.
        using var append = cache.BeginAppend(rows);
        try
        {
            Span<float> queries = queryBuffer.AsSpan(0, rows * queryWidth);     // (rows, heads, d)
            Span<float> attended = attendedBuffer.AsSpan(0, rows * queryWidth); // (rows, heads, d)
            Span<float> newKeys = append.Keys;
            Span<float> newValues = append.Values;

            Linear(x, rows, weights.Query, weights.QueryBias, queries);
            Linear(x, rows, weights.Key, weights.KeyBias, newKeys);
            Linear(x, rows, weights.Value, weights.ValueBias, newValues);
            if (options.Rope is { } rope)
            {
                Rope(queries, rows, heads, headDim, start, rope);
                Rope(newKeys, rows, kvHeads, headDim, start, rope);
            }

            append.Store();
            CausalAttention(queries, rows, heads, cache, queryStart: start, attended);

            Linear(attended, rows, weights.Output, weights.OutputBias, y);
            // Only now are the new entries valid: a failure above leaves the cache as it was.
            append.Commit();
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queryBuffer);
            ArrayPool<float>.Shared.Return(attendedBuffer);
        }
    }

    private static void ValidateAttentionLayer(ReadOnlySpan<float> x, int rows, AttentionWeights weights, AttentionOptions options, KvCache cache, Span<float> y)
    {
        int hidden = options.Hidden, heads = options.Heads, kvHeads = options.KvHeads, headDim = options.HeadDim;
        if (hidden <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0)
            throw new ArgumentException($"Attention: sizes must be positive (hidden {hidden}, heads {heads}, kv_heads {kvHeads}, head_dim {headDim})", nameof(options));
        if (heads % kvHeads != 0)
            throw new ArgumentException($"Attention: heads {heads} is not a multiple of kv_heads {kvHeads}", nameof(options));
        CheckMatrix(weights.Query, heads * headDim, hidden, "query");
        CheckMatrix(weights.Key, kvHeads * headDim, hidden, "key");
        CheckMatrix(weights.Value, kvHeads * headDim, hidden, "value");
        CheckMatrix(weights.Output, hidden, heads * headDim, "output");
        if (cache.KvHeads != kvHeads || cache.HeadDim != headDim)
            throw new ArgumentException($"Attention: cache holds (kv_heads {cache.KvHeads}, head_dim {cache.HeadDim}), layer needs ({kvHeads}, {headDim})", nameof(cache));
        if (options.Rope is { } rope && rope.HeadDim != headDim)
            throw new ArgumentException($"Attention: RoPE table head_dim {rope.HeadDim} differs from head_dim {headDim}", nameof(options));
        if (x.Length != (long)rows * hidden)
            throw new ArgumentException($"Attention: x has {x.Length} floats, expected rows {rows} × hidden {hidden} = {(long)rows * hidden}", nameof(x));
        if (y.Length != x.Length)
            throw new ArgumentException($"Attention: y has {y.Length} floats, expected rows {rows} × hidden {hidden} = {(long)rows * hidden}", nameof(y));
        if (x.Overlaps(y))
            throw new ArgumentException("Attention: y must not overlap x", nameof(y));

        static void CheckMatrix(Matrix matrix, int rows, int cols, string role)
        {
            ArgumentNullException.ThrowIfNull(matrix, role);
            if (matrix.Rows != rows || matrix.Cols != cols)
                throw new ArgumentException($"Attention: {role} weight '{matrix.Name}' is [{matrix.Rows}, {matrix.Cols}], expected [{rows}, {cols}]", nameof(weights));
        }
    }
}
