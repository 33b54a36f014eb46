using System.Runtime.InteropServices;
using Horizon.Cpu;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// Each CPU kernel against the float64 references of <see cref="NaiveReference"/> on random inputs with fixed
/// seeds and deliberately odd sizes (not multiples of SIMD widths, weight blocks or attention tiles).
/// The error measure is max|actual − reference| / max|reference|; float32 paths must stay within 1e-5.
/// </summary>
public class CpuKernelTests
{
    private const double Float32Tolerance = 1e-5;

    // ---------------------------------------------------------------- Linear

    [Test]
    public void Linear_matches_reference([Values] WeightDType dtype, [Values(1, 2, 4, 5, 7, 33, 300)] int rows)
    {
        // 300 rows take two passes over W (the kernel covers at most 256 rows per pass).
        const int inFeatures = 37, outFeatures = 53;
        var random = new Random(1000 + rows * 10 + (int)dtype);
        float[] x = RandomFloats(random, rows * inFeatures);
        float[] bias = RandomFloats(random, outFeatures);
        var (weight, roundedWeight) = MakeMatrix("w", outFeatures, inFeatures, dtype, RandomFloats(random, outFeatures * inFeatures));

        var y = new float[rows * outFeatures];
        CpuKernels.Linear(x, rows, weight, bias, y);

        // The reference uses the weights as stored (rounded to F16/BF16), widened exactly to double.
        double[] expected = NaiveReference.Linear(ToDouble(x), rows, roundedWeight, outFeatures, inFeatures, ToDouble(bias));
        AssertClose(y, expected, Float32Tolerance, $"Linear {dtype} rows={rows}");
    }

    [Test]
    public void Linear_large_enough_to_run_on_several_threads_matches_reference([Values(WeightDType.F32, WeightDType.BF16)] WeightDType dtype, [Values(1, 33)] int rows)
    {
        // 300 × 517 weights: more than one chunk of work even for a single decode row.
        const int inFeatures = 300, outFeatures = 517;
        var random = new Random(2000 + rows + (int)dtype);
        float[] x = RandomFloats(random, rows * inFeatures);
        var (weight, roundedWeight) = MakeMatrix("w", outFeatures, inFeatures, dtype, RandomFloats(random, outFeatures * inFeatures));

        var y = new float[rows * outFeatures];
        CpuKernels.Linear(x, rows, weight, default, y);

        double[] expected = NaiveReference.Linear(ToDouble(x), rows, roundedWeight, outFeatures, inFeatures, null);
        AssertClose(y, expected, Float32Tolerance, $"Linear {dtype} rows={rows} 300→517");
    }

    [Test]
    public void Linear_rejects_mismatched_shapes()
    {
        var weight = Matrix.FromFloats("proj", 5, 4, new float[20]);
        Assert.Multiple(() =>
        {
            var error = Assert.Throws<ArgumentException>(() => CpuKernels.Linear(new float[7], 2, weight, default, new float[10]));
            Assert.That(error!.Message, Does.Contain("x has 7 floats"));
            Assert.Throws<ArgumentException>(() => CpuKernels.Linear(new float[8], 2, weight, default, new float[9]));
            Assert.Throws<ArgumentException>(() => CpuKernels.Linear(new float[8], 2, weight, new float[4], new float[10]));
        });
    }

    // ---------------------------------------------------------------- RmsNorm, Add

    [Test]
    public void RmsNorm_matches_reference([Values] bool inPlace)
    {
        const int rows = 7, dim = 53;
        const float eps = 1e-6f;
        var random = new Random(3000);
        float[] x = RandomFloats(random, rows * dim, scale: 3f);
        float[] gamma = RandomFloats(random, dim);
        double[] expected = NaiveReference.RmsNorm(ToDouble(x), rows, ToDouble(gamma), eps);

        float[] y = inPlace ? x : new float[rows * dim];
        CpuKernels.RmsNorm(x, rows, gamma, eps, y);

        AssertClose(y, expected, Float32Tolerance, $"RmsNorm inPlace={inPlace}");
    }

    [Test]
    public void Add_accumulates_elementwise()
    {
        float[] acc = [1, 2, 3, 4, 5];
        CpuKernels.Add(acc, [0.5f, -2, 0, 1, 10]);
        Assert.That(acc, Is.EqualTo(new[] { 1.5f, 0, 3, 5, 15 }));
        Assert.Throws<ArgumentException>(() => CpuKernels.Add(acc, new float[4]));
    }

    // ---------------------------------------------------------------- RoPE

    [TestCase("default", 1.0, 10000.0)]
    [TestCase("linear", 4.0, 1000000.0)]
    public void Rope_matches_reference(string scalingType, double factor, double theta)
    {
        const int rows = 9, heads = 3, headDim = 24, startPosition = 1000;
        var rope = new RopeTable(headDim, theta, new RopeScaling(scalingType, factor));
        var random = new Random(4000);
        float[] x = RandomFloats(random, rows * heads * headDim);
        double[] expected = NaiveReference.Rope(ToDouble(x), rows, heads, headDim, startPosition, theta, factor);

        CpuKernels.Rope(x, rows, heads, headDim, startPosition, rope);

        AssertClose(x, expected, Float32Tolerance, $"Rope {scalingType}");
    }

    // ---------------------------------------------------------------- CausalAttention

    private static IEnumerable<TestCaseData> AttentionCases()
    {
        // (heads, kvHeads): multi-head, grouped (3 query heads per key/value head), multi-query.
        foreach (var (heads, kvHeads) in new[] { (4, 4), (6, 2), (4, 1) })
            foreach (int headDim in new[] { 16, 24 })
                foreach (int queries in new[] { 1, 63, 65, 130 })
                    yield return new TestCaseData(heads, kvHeads, headDim, queries, 0, queries)
                        .SetName($"CausalAttention_prefill(heads={heads},kv={kvHeads},d={headDim},queries={queries})");

        // Queries that continue a longer cache: a decode step, a chunk spanning tile edges, and a key buffer
        // longer than the queries need (keys past the last query's position must be ignored).
        yield return new TestCaseData(6, 2, 24, 1, 200, 201).SetName("CausalAttention_decode_after_200(heads=6,kv=2)");
        yield return new TestCaseData(4, 1, 16, 1, 130, 131).SetName("CausalAttention_decode_after_130(MQA)");
        yield return new TestCaseData(4, 4, 16, 65, 100, 165).SetName("CausalAttention_chunk_65_after_100(heads=4,kv=4)");
        yield return new TestCaseData(6, 2, 16, 20, 50, 90).SetName("CausalAttention_keys_beyond_last_query_are_ignored");

        // head_dim 36 is wider than four SIMD vectors and leaves a scalar remainder, so every column path of the
        // p·v accumulation runs (16 and 24 fit in whole vectors of 8 floats).
        yield return new TestCaseData(6, 2, 36, 65, 0, 65).SetName("CausalAttention_prefill(heads=6,kv=2,d=36,queries=65)");
        yield return new TestCaseData(4, 1, 36, 1, 40, 41).SetName("CausalAttention_decode_after_40(MQA,d=36)");
    }

    [TestCaseSource(nameof(AttentionCases))]
    public void CausalAttention_matches_reference(int heads, int kvHeads, int headDim, int queries, int queryStart, int keyCount)
    {
        var random = new Random(5000 + heads * 1000 + kvHeads * 100 + headDim * 10 + queries + queryStart);
        // Queries scaled up so some score rows are peaked and the running maximum really changes between tiles.
        float[] q = RandomFloats(random, queries * heads * headDim, scale: 3f);
        float[] keys = RandomFloats(random, keyCount * kvHeads * headDim);
        float[] values = RandomFloats(random, keyCount * kvHeads * headDim);

        var output = new float[q.Length];
        CpuKernels.CausalAttention(q, queries, heads, keys, values, keyCount, kvHeads, headDim, queryStart, output);

        double[] expected = NaiveReference.CausalAttention(ToDouble(q), queries, heads, ToDouble(keys), ToDouble(values), kvHeads, headDim, queryStart);
        AssertClose(output, expected, Float32Tolerance, "CausalAttention");
    }

    [Test]
    public void CausalAttention_rejects_queries_past_the_keys()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            CpuKernels.CausalAttention(new float[2 * 8], 2, 1, new float[3 * 8], new float[3 * 8], 3, 1, 8, 2, new float[2 * 8]));
        Assert.That(ex!.Message, Does.Contain("needs 4 keys"));
    }

    // ---------------------------------------------------------------- AttentionLayer

    /// <summary>A small Qwen2-like layer: grouped heads, q/k/v biases, RoPE.</summary>
    private sealed class LayerFixture
    {
        public const int Hidden = 40, Heads = 6, KvHeads = 2, HeadDim = 8;
        public const double Theta = 10000.0;

        public LayerFixture(int seed)
        {
            var random = new Random(seed);
            QueryWeight = RandomFloats(random, Heads * HeadDim * Hidden, scale: 0.5f);
            KeyWeight = RandomFloats(random, KvHeads * HeadDim * Hidden, scale: 0.5f);
            ValueWeight = RandomFloats(random, KvHeads * HeadDim * Hidden, scale: 0.5f);
            OutputWeight = RandomFloats(random, Hidden * Heads * HeadDim, scale: 0.5f);
            QueryBias = RandomFloats(random, Heads * HeadDim);
            KeyBias = RandomFloats(random, KvHeads * HeadDim);
            ValueBias = RandomFloats(random, KvHeads * HeadDim);
            Weights = new AttentionWeights(
                Matrix.FromFloats("q", Heads * HeadDim, Hidden, QueryWeight),
                Matrix.FromFloats("k", KvHeads * HeadDim, Hidden, KeyWeight),
                Matrix.FromFloats("v", KvHeads * HeadDim, Hidden, ValueWeight),
                Matrix.FromFloats("o", Hidden, Heads * HeadDim, OutputWeight),
                QueryBias, KeyBias, ValueBias);
            Options = new AttentionOptions(Hidden, Heads, KvHeads, HeadDim, new RopeTable(HeadDim, Theta, RopeScaling.None));
        }

        public float[] QueryWeight { get; }
        public float[] KeyWeight { get; }
        public float[] ValueWeight { get; }
        public float[] OutputWeight { get; }
        public float[] QueryBias { get; }
        public float[] KeyBias { get; }
        public float[] ValueBias { get; }
        public AttentionWeights Weights { get; }
        public AttentionOptions Options { get; }

        /// <summary>The whole layer in float64 for tokens x (rows, hidden) at positions 0 … rows − 1.</summary>
        public double[] Reference(float[] x, int rows)
        {
            double[] q = NaiveReference.Linear(ToDouble(x), rows, ToDouble(QueryWeight), Heads * HeadDim, Hidden, ToDouble(QueryBias));
            double[] k = NaiveReference.Linear(ToDouble(x), rows, ToDouble(KeyWeight), KvHeads * HeadDim, Hidden, ToDouble(KeyBias));
            double[] v = NaiveReference.Linear(ToDouble(x), rows, ToDouble(ValueWeight), KvHeads * HeadDim, Hidden, ToDouble(ValueBias));
            q = NaiveReference.Rope(q, rows, Heads, HeadDim, 0, Theta, 1.0);
            k = NaiveReference.Rope(k, rows, KvHeads, HeadDim, 0, Theta, 1.0);
            double[] attended = NaiveReference.CausalAttention(q, rows, Heads, k, v, KvHeads, HeadDim, 0);
            return NaiveReference.Linear(attended, rows, ToDouble(OutputWeight), Hidden, Heads * HeadDim, null);
        }
    }

    [Test]
    public void AttentionLayer_matches_reference_across_two_calls()
    {
        // 13 prompt tokens, then 20 more through the cache: the second call's rows sit at positions 13 … 32.
        const int firstRows = 13, secondRows = 20, total = firstRows + secondRows;
        var layer = new LayerFixture(6000);
        float[] x = RandomFloats(new Random(6001), total * LayerFixture.Hidden);
        var cache = new KvCache(64, LayerFixture.KvHeads, LayerFixture.HeadDim);

        var y = new float[total * LayerFixture.Hidden];
        CpuKernels.AttentionLayer(x.AsSpan(0, firstRows * LayerFixture.Hidden), firstRows, layer.Weights, layer.Options, cache, y.AsSpan(0, firstRows * LayerFixture.Hidden));
        CpuKernels.AttentionLayer(x.AsSpan(firstRows * LayerFixture.Hidden), secondRows, layer.Weights, layer.Options, cache, y.AsSpan(firstRows * LayerFixture.Hidden));

        Assert.That(cache.Length, Is.EqualTo(total));
        AssertClose(y, layer.Reference(x, total), Float32Tolerance, "AttentionLayer");
    }

    [Test]
    public void AttentionLayer_decode_token_by_token_equals_prefill()
    {
        const int tokens = 70; // more than one key tile and not a multiple of one
        var layer = new LayerFixture(7000);
        float[] x = RandomFloats(new Random(7001), tokens * LayerFixture.Hidden);
        int hidden = LayerFixture.Hidden;

        var prefillCache = new KvCache(tokens, LayerFixture.KvHeads, LayerFixture.HeadDim);
        var prefill = new float[tokens * hidden];
        CpuKernels.AttentionLayer(x, tokens, layer.Weights, layer.Options, prefillCache, prefill);

        var decodeCache = new KvCache(tokens, LayerFixture.KvHeads, LayerFixture.HeadDim);
        var decode = new float[tokens * hidden];
        for (int t = 0; t < tokens; t++)
            CpuKernels.AttentionLayer(x.AsSpan(t * hidden, hidden), 1, layer.Weights, layer.Options, decodeCache, decode.AsSpan(t * hidden, hidden));

        Assert.That(decodeCache.Length, Is.EqualTo(tokens));
        Assert.That(MaxAbsDifference(decode, prefill), Is.LessThanOrEqualTo(1e-4), "decode vs prefill output");
        var decodeKeys = new float[tokens * LayerFixture.KvHeads * LayerFixture.HeadDim];
        var prefillKeys = new float[decodeKeys.Length];
        decodeCache.CopyTo(0, tokens, decodeKeys, new float[decodeKeys.Length]);
        prefillCache.CopyTo(0, tokens, prefillKeys, new float[prefillKeys.Length]);
        Assert.That(MaxAbsDifference(decodeKeys, prefillKeys), Is.LessThanOrEqualTo(1e-4), "decode vs prefill cached keys");
    }

    [Test]
    public void AttentionLayer_throws_when_the_cache_is_full_and_leaves_it_unchanged()
    {
        var layer = new LayerFixture(8000);
        var cache = new KvCache(4, LayerFixture.KvHeads, LayerFixture.HeadDim);
        float[] x = RandomFloats(new Random(8001), 3 * LayerFixture.Hidden);
        CpuKernels.AttentionLayer(x, 3, layer.Weights, layer.Options, cache, new float[3 * LayerFixture.Hidden]);

        var ex = Assert.Throws<HorizonException>(() =>
            CpuKernels.AttentionLayer(x.AsSpan(0, 2 * LayerFixture.Hidden), 2, layer.Weights, layer.Options, cache, new float[2 * LayerFixture.Hidden]));
        Assert.That(ex!.Message, Does.StartWith("KV cache full: capacity 4"));
        Assert.That(cache.Length, Is.EqualTo(3));
    }

    // ---------------------------------------------------------------- Embedding, SwiGLU

    [Test]
    public void Embedding_gathers_rows_of_the_table([Values] WeightDType dtype)
    {
        const int vocab = 11, dim = 13;
        var (table, rounded) = MakeMatrix("embed", vocab, dim, dtype, RandomFloats(new Random(9000), vocab * dim));
        int[] tokens = [3, 0, 10, 3];

        var y = new float[tokens.Length * dim];
        CpuKernels.Embedding(table, tokens, y);

        var expected = new double[y.Length];
        for (int t = 0; t < tokens.Length; t++)
            Array.Copy(rounded, tokens[t] * dim, expected, t * dim, dim);
        Assert.That(ToDouble(y), Is.EqualTo(expected));
    }

    [TestCase(-1, "token id -1 at position 1 is out of range [0, 11)")]
    [TestCase(11, "token id 11 at position 1 is out of range [0, 11)")]
    public void Embedding_rejects_an_out_of_range_token_id(int badToken, string message)
    {
        var table = Matrix.FromFloats("embed", 11, 4, new float[44]);
        var ex = Assert.Throws<HorizonException>(() => CpuKernels.Embedding(table, [2, badToken, 5], new float[12]));
        Assert.That(ex!.Message, Is.EqualTo(message));
    }

    [Test]
    public void SwiGluMlp_matches_reference([Values(1, 7, 300)] int rows, [Values(WeightDType.F32, WeightDType.F16)] WeightDType dtype)
    {
        // 300 rows is more than one block of rows, so the blocked scratch path is covered too.
        const int hidden = 37, intermediate = 53;
        var random = new Random(10000 + rows + (int)dtype);
        float[] x = RandomFloats(random, rows * hidden);
        var (gate, gateRounded) = MakeMatrix("gate", intermediate, hidden, dtype, RandomFloats(random, intermediate * hidden, scale: 0.5f));
        var (up, upRounded) = MakeMatrix("up", intermediate, hidden, dtype, RandomFloats(random, intermediate * hidden, scale: 0.5f));
        var (down, downRounded) = MakeMatrix("down", hidden, intermediate, dtype, RandomFloats(random, hidden * intermediate, scale: 0.5f));

        var y = new float[rows * hidden];
        CpuKernels.SwiGluMlp(x, rows, new SwiGluMlpWeights(gate, up, down), y);

        double[] expected = NaiveReference.SwiGlu(ToDouble(x), rows, gateRounded, upRounded, downRounded, hidden, intermediate);
        AssertClose(y, expected, Float32Tolerance, $"SwiGluMlp {dtype} rows={rows}");
    }

    // ---------------------------------------------------------------- threading

    [Test]
    public void Results_are_bit_identical_whatever_the_thread_count()
    {
        // The thread count changes how work is cut (Linear chunks, attention head splits in decode); the kernels
        // promise that no output element's arithmetic depends on the cut.
        var random = new Random(11000);
        float[] x = RandomFloats(random, 3 * 300);
        var (weight, _) = MakeMatrix("w", 517, 300, WeightDType.BF16, RandomFloats(random, 517 * 300));
        float[] q = RandomFloats(random, 1 * 8 * 40, scale: 3f);
        float[] keys = RandomFloats(random, 150 * 1 * 40);
        float[] values = RandomFloats(random, 150 * 1 * 40);

        (float[] Linear, float[] Attention) Run(int threads)
        {
            int saved = CpuKernels.MaxDegreeOfParallelism;
            CpuKernels.MaxDegreeOfParallelism = threads;
            try
            {
                var linear = new float[3 * 517];
                CpuKernels.Linear(x, 3, weight, default, linear);
                var attention = new float[q.Length];
                CpuKernels.CausalAttention(q, 1, 8, keys, values, 150, 1, 40, 149, attention);
                return (linear, attention);
            }
            finally
            {
                CpuKernels.MaxDegreeOfParallelism = saved;
            }
        }

        var single = Run(1);
        var several = Run(3);
        Assert.That(several.Linear, Is.EqualTo(single.Linear).AsCollection, "Linear");
        Assert.That(several.Attention, Is.EqualTo(single.Attention).AsCollection, "CausalAttention");
    }

    // ---------------------------------------------------------------- helpers

    private static float[] RandomFloats(Random random, int count, float scale = 1f)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    private static double[] ToDouble(float[] values) => Array.ConvertAll(values, v => (double)v);

    /// <summary>A matrix stored in <paramref name="dtype"/>, and its values after that rounding, widened to double.</summary>
    private static (Matrix Matrix, double[] Rounded) MakeMatrix(string name, int rows, int cols, WeightDType dtype, float[] values)
    {
        switch (dtype)
        {
            case WeightDType.F32:
                return (Matrix.FromFloats(name, rows, cols, values), ToDouble(values));
            case WeightDType.F16:
            {
                Half[] halves = Array.ConvertAll(values, v => (Half)v);
                byte[] bytes = MemoryMarshal.AsBytes(halves.AsSpan()).ToArray();
                return (new Matrix(name, rows, cols, dtype, bytes), Array.ConvertAll(halves, h => (double)(float)h));
            }
            case WeightDType.BF16:
            {
                // Round to nearest even on the upper 16 bits, the way checkpoints are usually converted.
                ushort[] bits = Array.ConvertAll(values, v =>
                {
                    uint u = BitConverter.SingleToUInt32Bits(v);
                    return (ushort)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
                });
                byte[] bytes = MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
                return (new Matrix(name, rows, cols, dtype, bytes), Array.ConvertAll(bits, b => (double)BitConverter.UInt32BitsToSingle((uint)b << 16)));
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype));
        }
    }

    private static double MaxAbsDifference(float[] a, float[] b)
    {
        double max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        return max;
    }

    /// <summary>Asserts max|actual − expected| / max|expected| ≤ tolerance, reporting where the worst element is.</summary>
    private static void AssertClose(float[] actual, double[] expected, double tolerance, string what)
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
        double relative = maxDifference / maxReference;
        Assert.That(relative, Is.LessThanOrEqualTo(tolerance),
            $"{what}: max|Δ| = {maxDifference:G3} at {worst} (actual {actual[worst]}, reference {expected[worst]:G9}), max|ref| = {maxReference:G3}");
    }
}
