using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Horizon.Ops;

namespace Horizon.Cpu;

/// <summary>
/// CPU kernels of the <c>moe</c> op (docs/ops/moe.md). Tokens are routed, grouped by expert, and every expert's
/// SwiGLU runs once over its group as a small GEMM; all groups' GEMMs are cut into (expert, block of weight rows)
/// work items that run in one parallel loop (a grouped GEMM), so few tokens per expert still use every core.
/// </summary>
/// <remarks>
/// Every output element is one dot product, or one fixed-order sum, computed by exactly one work item, so the result
/// for a token is bit-for-bit the same whatever the other rows of the batch, the chunking or the thread count.
/// </remarks>
public static class MoeKernels
{
    /// <summary>Rows per pass: bounds the scratch to about rows·(top_k·I + I_s + (top_k + 2)·D) floats.</summary>
    private const int ChunkRows = 256;

    /// <summary>Below this many multiply-adds a pass runs on the calling thread.</summary>
    private const long ParallelThreshold = 1 << 18;

    /// <summary>
    /// x (rows, D) → y (rows, D): routes each token, runs its top-k experts and the shared expert, and writes
    /// y = Σ_{i∈T} w_i E_i(x) + σ(w_sg · x) S(x). y must not overlap x.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, MoeWeights weights, MoeOptions options, Span<float> y)
    {
        CheckArguments(x, rows, weights, options, y.Length);
        if (x.Overlaps(y))
            throw new ArgumentException("moe: y must not overlap x", nameof(y));
        int d = weights.Hidden;
        var router = RouterRows(weights.Router, out float[] routerScratch);
        try
        {
            for (int start = 0; start < rows; start += ChunkRows)
            {
                int n = Math.Min(ChunkRows, rows - start);
                ForwardChunk(x.Slice(start * d, n * d), n, weights, options, router, y.Slice(start * d, n * d));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(routerScratch);
        }
    }

    /// <summary>
    /// The routing of x (rows, D): experts (rows, top_k) in descending probability, ties to the lower index, and
    /// their weights (rows, top_k) — renormalised over the k when <see cref="MoeOptions.NormalizeTopK"/>, else the
    /// softmax probabilities over all E.
    /// </summary>
    public static void Route(ReadOnlySpan<float> x, int rows, MoeWeights weights, MoeOptions options, Span<int> experts, Span<float> expertWeights)
    {
        CheckArguments(x, rows, weights, options, rows * weights.Hidden);
        int k = options.TopK, d = weights.Hidden, e = weights.ExpertCount;
        if (experts.Length < rows * k || expertWeights.Length < rows * k)
            throw new ArgumentException($"moe: experts and weights need rows·top_k = {rows * k} elements");
        var router = RouterRows(weights.Router, out float[] scratch);
        try
        {
            Span<float> logits = e <= 512 ? stackalloc float[e] : new float[e];
            var routerSpan = router.Span;
            for (int t = 0; t < rows; t++)
                RouteToken(x.Slice(t * d, d), routerSpan, e, k, options.NormalizeTopK, logits, experts.Slice(t * k, k), expertWeights.Slice(t * k, k));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    private static void CheckArguments(ReadOnlySpan<float> x, int rows, MoeWeights weights, MoeOptions options, int yLength)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        weights.Validate();
        if (options.TopK < 1 || options.TopK > weights.ExpertCount)
            throw new ArgumentOutOfRangeException(nameof(options), $"moe: top_k = {options.TopK} must be in 1 … {weights.ExpertCount}");
        long needed = (long)rows * weights.Hidden;
        if (x.Length < needed || yLength < needed)
            throw new ArgumentException($"moe: x and y need rows·hidden = {needed} elements (x has {x.Length}, y has {yLength})");
    }

    /// <summary>
    /// One token: logits l = W_r x (float32 dot products); the k largest logits (softmax is monotone, so these are
    /// the k largest probabilities; selecting on the logits avoids ties made by rounding in exp); weights from the
    /// softmax in float64: p_i = exp(l_i − m) / Σ_j exp(l_j − m) over all E, or over the k when renormalising.
    /// </summary>
    private static void RouteToken(
        ReadOnlySpan<float> x, ReadOnlySpan<float> router, int experts, int k, bool normalize,
        Span<float> logits, Span<int> selected, Span<float> selectedWeights)
    {
        int d = x.Length;
        for (int e = 0; e < experts; e++)
            logits[e] = TensorPrimitives.Dot(x, router.Slice(e * d, d));
        for (int s = 0; s < k; s++)
        {
            int best = -1;
            for (int e = 0; e < experts; e++)
            {
                if (selected[..s].Contains(e))
                    continue;
                if (best < 0 || logits[e] > logits[best]) // strict: an equal logit keeps the lower index
                    best = e;
            }
            selected[s] = best;
        }
        double max = logits[selected[0]];
        double denominator = 0;
        if (normalize)
        {
            for (int s = 0; s < k; s++)
                denominator += Math.Exp(logits[selected[s]] - max);
        }
        else
        {
            for (int e = 0; e < experts; e++)
                denominator += Math.Exp(logits[e] - max);
        }
        for (int s = 0; s < k; s++)
            selectedWeights[s] = (float)(Math.Exp(logits[selected[s]] - max) / denominator);
    }

    /// <summary>The router [E, D] widened to float32 once per call, in a pooled array (returned by the caller).</summary>
    private static ReadOnlyMemory<float> RouterRows(Matrix router, out float[] scratch)
    {
        int count = checked((int)router.ElementCount);
        scratch = ArrayPool<float>.Shared.Rent(count);
        WeightConversion.ToSingle(router.Data.Span, router.DType, scratch.AsSpan(0, count));
        return scratch.AsMemory(0, count);
    }

    /// <summary>
    /// One pass over n ≤ <see cref="ChunkRows"/> tokens. Groups are the E routed experts and, last, the shared expert
    /// (every token, weight σ(w_sg · x) or 1). Slots are (group, token) pairs, tokens ascending within a group.
    /// </summary>
    private static void ForwardChunk(ReadOnlySpan<float> x, int n, MoeWeights weights, MoeOptions options, ReadOnlyMemory<float> router, Span<float> y)
    {
        int d = weights.Hidden, e = weights.ExpertCount, k = options.TopK;
        bool hasShared = weights.SharedExpert is not null;
        int groups = e + (hasShared ? 1 : 0);
        var pool = ArrayPool<float>.Shared;

        float[] xs = pool.Rent(n * d);
        int[] selected = ArrayPool<int>.Shared.Rent(n * k);
        float[] routeWeights = pool.Rent(n * k);
        int[] slotOfChoice = ArrayPool<int>.Shared.Rent(n * k);
        int totalSlots = n * k + (hasShared ? n : 0);
        int[] slotToken = ArrayPool<int>.Shared.Rent(totalSlots);
        var groupStart = new int[groups + 1];
        var widths = new int[groups];
        var hiddenStart = new long[groups + 1];
        float[]? hiddenBuffer = null, outBuffer = null, sharedScale = null;
        try
        {
            x.CopyTo(xs);

            // 1. Route every token (parallel over tokens when the router is large).
            long routerWork = (long)n * e * d;
            RunRange(n, routerWork, (t0, t1) =>
            {
                Span<float> logits = e <= 512 ? stackalloc float[e] : new float[e];
                var r = router.Span;
                for (int t = t0; t < t1; t++)
                    RouteToken(xs.AsSpan(t * d, d), r, e, k, options.NormalizeTopK, logits, selected.AsSpan(t * k, k), routeWeights.AsSpan(t * k, k));
            });

            // 2. Group the (token, choice) pairs by expert: counting sort, tokens stay ascending within an expert.
            for (int i = 0; i < n * k; i++)
                groupStart[selected[i] + 1]++;
            if (hasShared)
                groupStart[e + 1] = n;
            for (int g = 0; g < groups; g++)
                groupStart[g + 1] += groupStart[g];
            var cursor = groupStart[..groups];
            for (int t = 0; t < n; t++)
            {
                for (int s = 0; s < k; s++)
                {
                    int slot = cursor[selected[t * k + s]]++;
                    slotToken[slot] = t;
                    slotOfChoice[t * k + s] = slot;
                }
            }
            if (hasShared)
            {
                for (int t = 0; t < n; t++)
                    slotToken[groupStart[e] + t] = t;
            }
            for (int g = 0; g < groups; g++)
            {
                widths[g] = Expert(weights, g).Intermediate;
                hiddenStart[g + 1] = hiddenStart[g] + (long)(groupStart[g + 1] - groupStart[g]) * widths[g];
            }

            // 3. h = silu(x W_gateᵀ) ⊙ (x W_upᵀ) per group: work items are (group, block of intermediate rows).
            float[] hidden = hiddenBuffer = pool.Rent(checked((int)hiddenStart[groups]));
            var upItems = WorkItems(groups, groupStart, g => widths[g], _ => d, out long upWork);
            RunItems(upItems, 2 * upWork, item =>
                GateUp(Expert(weights, item.Group), item.First, item.Count, xs, d, slotToken, groupStart[item.Group], groupStart[item.Group + 1] - groupStart[item.Group], hidden, hiddenStart[item.Group], widths[item.Group]));

            // 4. o = h W_downᵀ per group: work items are (group, block of output columns).
            float[] expertOut = outBuffer = pool.Rent(totalSlots * d);
            var downItems = WorkItems(groups, groupStart, _ => d, g => widths[g], out long downWork);
            RunItems(downItems, downWork, item =>
                Down(Expert(weights, item.Group), item.First, item.Count, hidden, hiddenStart[item.Group], widths[item.Group], groupStart[item.Group], groupStart[item.Group + 1] - groupStart[item.Group], expertOut, d));

            // 5. The shared expert's gate σ(w_sg · x) (1 when there is no gate).
            if (hasShared)
            {
                sharedScale = pool.Rent(n);
                if (weights.SharedExpertGate is { } gate)
                {
                    float[] row = new float[d];
                    gate.ReadRow(0, row);
                    for (int t = 0; t < n; t++)
                        sharedScale[t] = 1f / (1f + MathF.Exp(-TensorPrimitives.Dot(xs.AsSpan(t * d, d), row)));
                }
                else
                {
                    sharedScale.AsSpan(0, n).Fill(1f);
                }
            }

            // 6. Combine per token in a fixed order: the k choices in descending probability, then the shared expert.
            for (int t = 0; t < n; t++)
            {
                var yRow = y.Slice(t * d, d);
                yRow.Clear();
                for (int s = 0; s < k; s++)
                    TensorPrimitives.MultiplyAdd(expertOut.AsSpan(slotOfChoice[t * k + s] * d, d), routeWeights[t * k + s], yRow, yRow);
                if (hasShared)
                    TensorPrimitives.MultiplyAdd(expertOut.AsSpan((groupStart[e] + t) * d, d), sharedScale![t], yRow, yRow);
            }
        }
        finally
        {
            pool.Return(xs);
            pool.Return(routeWeights);
            ArrayPool<int>.Shared.Return(selected);
            ArrayPool<int>.Shared.Return(slotOfChoice);
            ArrayPool<int>.Shared.Return(slotToken);
            if (hiddenBuffer is not null)
                pool.Return(hiddenBuffer);
            if (outBuffer is not null)
                pool.Return(outBuffer);
            if (sharedScale is not null)
                pool.Return(sharedScale);
        }
    }

    private static SwiGluMlpWeights Expert(MoeWeights weights, int group) =>
        group < weights.ExpertCount ? weights.Experts[group] : weights.SharedExpert!;

    private readonly record struct WorkItem(int Group, int First, int Count);

    /// <summary>
    /// Cuts the output dimension of each non-empty group (outputs(g) weight rows of rowLength(g) each) into blocks of
    /// about 128 KiB of weights, so a block stays in cache while every token of the group is multiplied with it.
    /// work is the number of multiply-adds of one pass over the items.
    /// </summary>
    private static List<WorkItem> WorkItems(int groups, int[] groupStart, Func<int, int> outputs, Func<int, int> rowLength, out long work)
    {
        var items = new List<WorkItem>();
        work = 0;
        for (int g = 0; g < groups; g++)
        {
            int tokens = groupStart[g + 1] - groupStart[g];
            if (tokens == 0)
                continue;
            int rows = outputs(g), length = rowLength(g);
            work += (long)tokens * rows * length;
            int block = Math.Clamp(32768 / length, 4, 64);
            for (int first = 0; first < rows; first += block)
                items.Add(new WorkItem(g, first, Math.Min(block, rows - first)));
        }
        return items;
    }

    private static void RunItems(List<WorkItem> items, long work, Action<WorkItem> body)
    {
        if (work < ParallelThreshold || items.Count == 1 || Environment.ProcessorCount == 1)
        {
            foreach (var item in items)
                body(item);
            return;
        }
        Parallel.For(0, items.Count, i => body(items[i]));
    }

    private static void RunRange(int count, long work, Action<int, int> body)
    {
        int workers = Environment.ProcessorCount;
        if (work < ParallelThreshold || count < 2 || workers == 1)
        {
            body(0, count);
            return;
        }
        int blocks = Math.Min(count, workers * 4);
        Parallel.For(0, blocks, b => body((int)((long)count * b / blocks), (int)((long)count * (b + 1) / blocks)));
    }

    /// <summary>
    /// Rows [first, first + count) of one expert's gate and up, for every token of its group:
    /// h[c, j] = silu(x_c · gate_j) · (x_c · up_j). h of the group is (tokens, width) at <paramref name="hiddenOffset"/>.
    /// </summary>
    private static void GateUp(
        SwiGluMlpWeights expert, int first, int count, float[] xs, int d, int[] slotToken, int slotStart, int tokens,
        float[] hidden, long hiddenOffset, int width)
    {
        float[]? scratch = null;
        try
        {
            var gate = Rows(expert.Gate, first, count, ref scratch, 0);
            var up = Rows(expert.Up, first, count, ref scratch, count * d);
            for (int c = 0; c < tokens; c++)
            {
                var x = xs.AsSpan(slotToken[slotStart + c] * d, d);
                var h = hidden.AsSpan(checked((int)(hiddenOffset + (long)c * width)), width);
                for (int j = 0; j < count; j++)
                {
                    float g = TensorPrimitives.Dot(x, gate.Slice(j * d, d));
                    float u = TensorPrimitives.Dot(x, up.Slice(j * d, d));
                    h[first + j] = g / (1f + MathF.Exp(-g)) * u;
                }
            }
        }
        finally
        {
            if (scratch is not null)
                ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>Output columns [first, first + count) of one expert: o[c, col] = h_c · down_col.</summary>
    private static void Down(
        SwiGluMlpWeights expert, int first, int count, float[] hidden, long hiddenOffset, int width, int slotStart, int tokens,
        float[] expertOut, int d)
    {
        float[]? scratch = null;
        try
        {
            var down = Rows(expert.Down, first, count, ref scratch, 0);
            for (int c = 0; c < tokens; c++)
            {
                var h = hidden.AsSpan(checked((int)(hiddenOffset + (long)c * width)), width);
                var o = expertOut.AsSpan((slotStart + c) * d, d);
                for (int j = 0; j < count; j++)
                    o[first + j] = TensorPrimitives.Dot(h, down.Slice(j * width, width));
            }
        }
        finally
        {
            if (scratch is not null)
                ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>
    /// Rows [first, first + count) of <paramref name="m"/> as float32: the stored floats themselves for F32, else
    /// widened into <paramref name="scratch"/> at <paramref name="offset"/> (rented on first use, 2·count·Cols long).
    /// </summary>
    private static ReadOnlySpan<float> Rows(Matrix m, int first, int count, ref float[]? scratch, int offset)
    {
        int start = first * m.Cols, length = count * m.Cols;
        if (m.DType == WeightDType.F32)
            return MemoryMarshal.Cast<byte, float>(m.Data.Span).Slice(start, length);
        scratch ??= ArrayPool<float>.Shared.Rent(2 * length);
        int size = m.DType.ByteSize();
        var destination = scratch.AsSpan(offset, length);
        WeightConversion.ToSingle(m.Data.Span.Slice(start * size, length * size), m.DType, destination);
        return destination;
    }
}
