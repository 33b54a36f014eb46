using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// Float64 references for the attention variants (sliding window with global tokens, agent attention, Core Context
/// Aware attention), written token by token from the papers' equations with plain loops: for every position the
/// set of visible (key, value) pairs is listed explicitly and softmaxed, sharing no code, layout or evaluation order
/// with the tiled kernels. Every reference takes the whole sequence from position 0; shapes are row-major, in words.
/// </summary>
internal static class AttentionVariantsReference
{
    /// <summary>
    /// Sliding-window attention with global tokens: the query at p sees keys j with p − w &lt; j ≤ p and the global
    /// positions j ≤ p (each key once). x (n, hidden) → y (n, hidden).
    /// </summary>
    public static double[] SlidingWindow(VariantLayer layer, float[] x, int n, int window, IReadOnlyList<int> globals)
    {
        var (q, k, v) = layer.Project(x, n, rope: true);
        var o = new double[n * layer.Heads * layer.HeadDim];
        for (int p = 0; p < n; p++)
        {
            var visible = new SortedSet<int>();
            for (int j = Math.Max(0, p - window + 1); j <= p; j++)
                visible.Add(j);
            foreach (int g in globals)
                if (g <= p)
                    visible.Add(g);
            for (int h = 0; h < layer.Heads; h++)
            {
                int kvHead = h / (layer.Heads / layer.KvHeads);
                var keys = visible.Select(j => layer.KvRow(k, j, kvHead)).ToList();
                var values = visible.Select(j => layer.KvRow(v, j, kvHead)).ToList();
                Attend(layer.QueryRow(q, p, h), keys, values, null, o, (p * layer.Heads + h) * layer.HeadDim);
            }
        }
        return layer.OutputProjection(o, n);
    }

    /// <summary>
    /// Bidirectional agent attention (Han et al. 2024, eq. 3–6) over the whole sequence: per head,
    /// A = AdaptiveAvgPool_n(Q), V_A = softmax(A Kᵀ/√d + B₁) V, O = softmax(Q Aᵀ/√d + B₂) V_A + DWC(V) with centred
    /// taps and zero padding. b1 (heads, agents, n), b2 (heads, n, agents), conv (heads·d, kernel), convBias (heads·d).
    /// </summary>
    public static double[] AgentBidirectional(VariantLayer layer, float[] x, int n, int agents, int kernel, float[] conv, float[]? convBias, float[]? b1, float[]? b2)
    {
        var (q, k, v) = layer.Project(x, n, rope: false);
        int heads = layer.Heads, d = layer.HeadDim;
        var o = new double[n * heads * d];
        for (int h = 0; h < heads; h++)
        {
            int kvHead = h / (heads / layer.KvHeads);
            // A[a] = mean of the queries in bin a = [⌊a·n/agents⌋, ⌈(a+1)·n/agents⌉).
            var agentTokens = new double[agents][];
            for (int a = 0; a < agents; a++)
                agentTokens[a] = PoolBin(layer, q, h, 0, n, agents, a);
            // V_A[a] = Σ_t softmax_t(A[a]·k(t)/√d + B₁[h, a, t]) v(t).
            var agentValues = new double[agents][];
            for (int a = 0; a < agents; a++)
            {
                agentValues[a] = new double[d];
                var keys = Enumerable.Range(0, n).Select(t => layer.KvRow(k, t, kvHead)).ToList();
                var values = Enumerable.Range(0, n).Select(t => layer.KvRow(v, t, kvHead)).ToList();
                double[]? bias = b1 is null ? null : Enumerable.Range(0, n).Select(t => (double)b1[(h * agents + a) * n + t]).ToArray();
                Attend(agentTokens[a], keys, values, bias, agentValues[a], 0);
            }
            // O[t] = Σ_a softmax_a(q(t)·A[a]/√d + B₂[h, t, a]) V_A[a].
            for (int t = 0; t < n; t++)
            {
                double[]? bias = b2 is null ? null : Enumerable.Range(0, agents).Select(a => (double)b2[(h * n + t) * agents + a]).ToArray();
                Attend(layer.QueryRow(q, t, h), [.. agentTokens], [.. agentValues], bias, o, (t * heads + h) * d);
            }
        }
        AddDepthwiseConvolution(layer, v, n, kernel, conv, convBias, causal: false, o);
        return layer.OutputProjection(o, n);
    }

    /// <summary>
    /// Causal chunked agent attention (docs/ops/agent_attention.md): for p in chunk c, one softmax over the agents
    /// of every completed chunk j &lt; c (A_j = AdaptiveAvgPool over chunk j's queries, value
    /// V_A = softmax(A_j K_jᵀ/√d) V_j over chunk j's keys) and the raw keys c·C … p; plus DWC with the taps on
    /// positions p − kernel + 1 … p.
    /// </summary>
    public static double[] AgentCausal(VariantLayer layer, float[] x, int n, int agents, int chunkSize, int kernel, float[] conv, float[]? convBias)
    {
        var (q, k, v) = layer.Project(x, n, rope: false);
        int heads = layer.Heads, d = layer.HeadDim;
        var o = new double[n * heads * d];
        int completeChunks = n / chunkSize;
        // agentTokens[j][h][a], agentValues[j][h][a]: from chunk j's queries, keys and values only.
        var agentTokens = new double[completeChunks][][][];
        var agentValues = new double[completeChunks][][][];
        for (int j = 0; j < completeChunks; j++)
        {
            agentTokens[j] = new double[heads][][];
            agentValues[j] = new double[heads][][];
            for (int h = 0; h < heads; h++)
            {
                int kvHead = h / (heads / layer.KvHeads);
                agentTokens[j][h] = new double[agents][];
                agentValues[j][h] = new double[agents][];
                var keys = Enumerable.Range(j * chunkSize, chunkSize).Select(t => layer.KvRow(k, t, kvHead)).ToList();
                var values = Enumerable.Range(j * chunkSize, chunkSize).Select(t => layer.KvRow(v, t, kvHead)).ToList();
                for (int a = 0; a < agents; a++)
                {
                    agentTokens[j][h][a] = PoolBin(layer, q, h, j * chunkSize, chunkSize, agents, a);
                    agentValues[j][h][a] = new double[d];
                    Attend(agentTokens[j][h][a], keys, values, null, agentValues[j][h][a], 0);
                }
            }
        }
        for (int p = 0; p < n; p++)
        {
            int c = p / chunkSize;
            for (int h = 0; h < heads; h++)
            {
                int kvHead = h / (heads / layer.KvHeads);
                var keys = new List<double[]>();
                var values = new List<double[]>();
                for (int j = 0; j < c; j++)
                {
                    keys.AddRange(agentTokens[j][h]);
                    values.AddRange(agentValues[j][h]);
                }
                for (int t = c * chunkSize; t <= p; t++)
                {
                    keys.Add(layer.KvRow(k, t, kvHead));
                    values.Add(layer.KvRow(v, t, kvHead));
                }
                Attend(layer.QueryRow(q, p, h), keys, values, null, o, (p * heads + h) * d);
            }
        }
        AddDepthwiseConvolution(layer, v, n, kernel, conv, convBias, causal: true, o);
        return layer.OutputProjection(o, n);
    }

    /// <summary>
    /// Core Context Aware attention (Chen et al. 2025; official cca_attn.py / cca_pooling.py): group j's core for
    /// head h is Σ_t α_t (k(t), v(t)) with α = softmax_t(q_h(j·g + g − 1)·k(t)/√d) over the group (keys after RoPE);
    /// the query at p sees, in one softmax, the cores j &lt; n(p) = ⌊(p + 1 − w)/g⌋ (0 while p + 1 &lt; w) and the raw
    /// keys n(p)·g … p.
    /// </summary>
    public static double[] Cca(VariantLayer layer, float[] x, int n, int groupSize, int window)
    {
        var (q, k, v) = layer.Project(x, n, rope: true);
        int heads = layer.Heads, d = layer.HeadDim;
        double scale = 1.0 / Math.Sqrt(d);
        var o = new double[n * heads * d];
        int groups = n / groupSize;
        var coreKeys = new double[groups, heads][];
        var coreValues = new double[groups, heads][];
        for (int j = 0; j < groups; j++)
            for (int h = 0; h < heads; h++)
            {
                int kvHead = h / (heads / layer.KvHeads);
                double[] last = layer.QueryRow(q, (j + 1) * groupSize - 1, h);
                var scores = new double[groupSize];
                for (int t = 0; t < groupSize; t++)
                    scores[t] = Dot(last, layer.KvRow(k, j * groupSize + t, kvHead)) * scale;
                double[] alpha = Softmax(scores);
                coreKeys[j, h] = new double[d];
                coreValues[j, h] = new double[d];
                for (int t = 0; t < groupSize; t++)
                    for (int e = 0; e < d; e++)
                    {
                        coreKeys[j, h][e] += alpha[t] * layer.KvRow(k, j * groupSize + t, kvHead)[e];
                        coreValues[j, h][e] += alpha[t] * layer.KvRow(v, j * groupSize + t, kvHead)[e];
                    }
            }
        for (int p = 0; p < n; p++)
        {
            int cores = p + 1 >= window ? (p + 1 - window) / groupSize : 0;
            for (int h = 0; h < heads; h++)
            {
                int kvHead = h / (heads / layer.KvHeads);
                var keys = new List<double[]>();
                var values = new List<double[]>();
                for (int j = 0; j < cores; j++)
                {
                    keys.Add(coreKeys[j, h]);
                    values.Add(coreValues[j, h]);
                }
                for (int t = cores * groupSize; t <= p; t++)
                {
                    keys.Add(layer.KvRow(k, t, kvHead));
                    values.Add(layer.KvRow(v, t, kvHead));
                }
                Attend(layer.QueryRow(q, p, h), keys, values, null, o, (p * heads + h) * d);
            }
        }
        return layer.OutputProjection(o, n);
    }

    /// <summary>output[offset …] = Σ_i softmax_i(query·keys[i]/√d + bias[i]) values[i].</summary>
    private static void Attend(double[] query, IReadOnlyList<double[]> keys, IReadOnlyList<double[]> values, double[]? bias, double[] output, int offset)
    {
        double scale = 1.0 / Math.Sqrt(query.Length);
        var scores = new double[keys.Count];
        for (int i = 0; i < keys.Count; i++)
            scores[i] = Dot(query, keys[i]) * scale + (bias is null ? 0 : bias[i]);
        double[] weights = Softmax(scores);
        for (int i = 0; i < keys.Count; i++)
            for (int e = 0; e < query.Length; e++)
                output[offset + e] += weights[i] * values[i][e];
    }

    /// <summary>The mean of head h's queries over adaptive-pooling bin a of the rows first … first + length − 1.</summary>
    private static double[] PoolBin(VariantLayer layer, double[] q, int h, int first, int length, int bins, int a)
    {
        int binStart = (int)Math.Floor((double)a * length / bins);
        int binEnd = (int)Math.Ceiling((double)(a + 1) * length / bins);
        var mean = new double[layer.HeadDim];
        for (int t = binStart; t < binEnd; t++)
            for (int e = 0; e < layer.HeadDim; e++)
                mean[e] += layer.QueryRow(q, first + t, h)[e] / (binEnd - binStart);
        return mean;
    }

    /// <summary>o[t, h, e] += b[h·d + e] + Σ_τ w[h·d + e, τ] v[t + τ − offset, g, e], v = 0 outside the sequence.</summary>
    private static void AddDepthwiseConvolution(VariantLayer layer, double[] v, int n, int kernel, float[] conv, float[]? convBias, bool causal, double[] o)
    {
        int heads = layer.Heads, d = layer.HeadDim;
        int offset = causal ? kernel - 1 : (kernel - 1) / 2;
        for (int t = 0; t < n; t++)
            for (int h = 0; h < heads; h++)
                for (int e = 0; e < d; e++)
                {
                    int channel = h * d + e;
                    double sum = convBias is null ? 0 : convBias[channel];
                    for (int tap = 0; tap < kernel; tap++)
                    {
                        int source = t + tap - offset;
                        if (source >= 0 && source < n)
                            sum += conv[channel * kernel + tap] * layer.KvRow(v, source, h / (heads / layer.KvHeads))[e];
                    }
                    o[(t * heads + h) * d + e] += sum;
                }
    }

    private static double Dot(double[] a, double[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
            sum += a[i] * b[i];
        return sum;
    }

    private static double[] Softmax(double[] scores)
    {
        double max = scores.Max();
        double[] weights = scores.Select(s => Math.Exp(s - max)).ToArray();
        double sum = weights.Sum();
        return weights.Select(w => w / sum).ToArray();
    }
}

/// <summary>
/// A small attention layer with random weights (q/k/v and output biases, RoPE θ = 10000) for the variant tests, with
/// its float64 projections: q (n, heads, d), k and v (n, kv_heads, d) at positions 0 … n − 1.
/// </summary>
internal sealed class VariantLayer
{
    public const double Theta = 10000.0;

    public VariantLayer(int seed, int hidden, int heads, int kvHeads, int headDim)
    {
        Hidden = hidden;
        Heads = heads;
        KvHeads = kvHeads;
        HeadDim = headDim;
        var random = new Random(seed);
        QueryWeight = VariantTestSupport.RandomFloats(random, heads * headDim * hidden, 0.5f);
        KeyWeight = VariantTestSupport.RandomFloats(random, kvHeads * headDim * hidden, 0.5f);
        ValueWeight = VariantTestSupport.RandomFloats(random, kvHeads * headDim * hidden, 0.5f);
        OutputWeight = VariantTestSupport.RandomFloats(random, hidden * heads * headDim, 0.5f);
        QueryBias = VariantTestSupport.RandomFloats(random, heads * headDim);
        KeyBias = VariantTestSupport.RandomFloats(random, kvHeads * headDim);
        ValueBias = VariantTestSupport.RandomFloats(random, kvHeads * headDim);
        OutputBias = VariantTestSupport.RandomFloats(random, hidden);
        Weights = new AttentionWeights(
            Matrix.FromFloats("q", heads * headDim, hidden, QueryWeight),
            Matrix.FromFloats("k", kvHeads * headDim, hidden, KeyWeight),
            Matrix.FromFloats("v", kvHeads * headDim, hidden, ValueWeight),
            Matrix.FromFloats("o", hidden, heads * headDim, OutputWeight),
            QueryBias, KeyBias, ValueBias, OutputBias);
    }

    public int Hidden { get; }
    public int Heads { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public float[] QueryWeight { get; }
    public float[] KeyWeight { get; }
    public float[] ValueWeight { get; }
    public float[] OutputWeight { get; }
    public float[] QueryBias { get; }
    public float[] KeyBias { get; }
    public float[] ValueBias { get; }
    public float[] OutputBias { get; }
    public AttentionWeights Weights { get; }

    /// <summary>Sizes for the op, with or without RoPE.</summary>
    public AttentionOptions Options(bool rope) =>
        new(Hidden, Heads, KvHeads, HeadDim, rope ? new RopeTable(HeadDim, Theta, RopeScaling.None) : null);

    /// <summary>q, k, v of x (n, hidden) in float64, RoPE at positions 0 … n − 1 when asked.</summary>
    public (double[] Q, double[] K, double[] V) Project(float[] x, int n, bool rope)
    {
        double[] xd = VariantTestSupport.ToDouble(x);
        double[] q = NaiveReference.Linear(xd, n, VariantTestSupport.ToDouble(QueryWeight), Heads * HeadDim, Hidden, VariantTestSupport.ToDouble(QueryBias));
        double[] k = NaiveReference.Linear(xd, n, VariantTestSupport.ToDouble(KeyWeight), KvHeads * HeadDim, Hidden, VariantTestSupport.ToDouble(KeyBias));
        double[] v = NaiveReference.Linear(xd, n, VariantTestSupport.ToDouble(ValueWeight), KvHeads * HeadDim, Hidden, VariantTestSupport.ToDouble(ValueBias));
        if (rope)
        {
            q = NaiveReference.Rope(q, n, Heads, HeadDim, 0, Theta, 1.0);
            k = NaiveReference.Rope(k, n, KvHeads, HeadDim, 0, Theta, 1.0);
        }
        return (q, k, v);
    }

    /// <summary>y (n, hidden) = o (n, heads·d) · W_oᵀ + b_o.</summary>
    public double[] OutputProjection(double[] o, int n) =>
        NaiveReference.Linear(o, n, VariantTestSupport.ToDouble(OutputWeight), Hidden, Heads * HeadDim, VariantTestSupport.ToDouble(OutputBias));

    public double[] QueryRow(double[] q, int t, int head) => q.AsSpan((t * Heads + head) * HeadDim, HeadDim).ToArray();

    public double[] KvRow(double[] kv, int t, int kvHead) => kv.AsSpan((t * KvHeads + kvHead) * HeadDim, HeadDim).ToArray();
}

/// <summary>Random inputs and the error measures shared by the variant tests.</summary>
internal static class VariantTestSupport
{
    public static float[] RandomFloats(Random random, int count, float scale = 1f)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    public static double[] ToDouble(float[] values) => Array.ConvertAll(values, v => (double)v);

    public static double MaxAbsDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        return max;
    }

    /// <summary>Asserts max|actual − expected| / max|expected| ≤ tolerance and that every value is finite.</summary>
    public static void AssertClose(float[] actual, double[] expected, double tolerance, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        double maxDifference = 0, maxReference = 0;
        int worst = 0, firstNonFinite = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            if (!float.IsFinite(actual[i]) && firstNonFinite < 0)
                firstNonFinite = i;
            double difference = Math.Abs(actual[i] - expected[i]);
            if (difference > maxDifference)
            {
                maxDifference = difference;
                worst = i;
            }
            maxReference = Math.Max(maxReference, Math.Abs(expected[i]));
        }
        Assert.That(firstNonFinite, Is.EqualTo(-1), $"{what}: element {firstNonFinite} is not finite");
        Assert.That(maxReference, Is.GreaterThan(0), $"{what}: reference is all zeros");
        Assert.That(maxDifference / maxReference, Is.LessThanOrEqualTo(tolerance),
            $"{what}: max|Δ| = {maxDifference:G3} at {worst} (actual {actual[worst]}, reference {expected[worst]:G9}), max|ref| = {maxReference:G3}");
    }
}
