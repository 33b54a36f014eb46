using Horizon.Cpu;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// <c>sliding_window_attention</c> against the float64 token-by-token reference of
/// <see cref="AttentionVariantsReference.SlidingWindow"/>, the decode path against prefill, and the key-range hook
/// of <see cref="CpuKernels.MaskedAttention"/> it runs on. Sizes are deliberately odd: head_dim 12 and 20, 3 heads
/// over 1 or 3 key/value heads, lengths that are not multiples of the window (16) or of the 64-key tiles.
/// </summary>
public class SlidingWindowAttentionTests
{
    private const double Float32Tolerance = 1e-5;
    private const int Hidden = 28, Heads = 3, Window = 16;
    private static readonly int[] Globals = [0, 5, 40];

    private static IEnumerable<TestCaseData> ReferenceCases()
    {
        foreach (int headDim in new[] { 12, 20 })
            foreach (int kvHeads in new[] { 1, 3 })
                foreach (int length in new[] { 1, 37, 100, 129 })
                    yield return new TestCaseData(headDim, kvHeads, length).SetName($"SlidingWindowAttention_matches_reference(d={headDim},kv={kvHeads},n={length})");
    }

    [TestCaseSource(nameof(ReferenceCases))]
    public void Prefill_matches_reference(int headDim, int kvHeads, int length)
    {
        var layer = new VariantLayer(100 + headDim * 10 + kvHeads + length, Hidden, Heads, kvHeads, headDim);
        var options = new SlidingWindowAttentionOptions(layer.Options(rope: true), Window, Globals);
        float[] x = VariantTestSupport.RandomFloats(new Random(length), length * Hidden);

        var cache = new SlidingWindowCache(options);
        var y = new float[length * Hidden];
        SlidingWindowAttention.Forward(x, length, layer.Weights, options, cache, y);

        Assert.That(cache.Length, Is.EqualTo(length));
        VariantTestSupport.AssertClose(y, AttentionVariantsReference.SlidingWindow(layer, x, length, Window, Globals), Float32Tolerance, "sliding_window_attention");
    }

    [TestCase(1)]
    [TestCase(3)]
    public void Decode_token_by_token_equals_prefill_and_the_cache_stays_window_plus_globals(int kvHeads)
    {
        const int length = 129, headDim = 12;
        var layer = new VariantLayer(200 + kvHeads, Hidden, Heads, kvHeads, headDim);
        var options = new SlidingWindowAttentionOptions(layer.Options(rope: true), Window, Globals);
        float[] x = VariantTestSupport.RandomFloats(new Random(201), length * Hidden);

        var prefill = new float[length * Hidden];
        SlidingWindowAttention.Forward(x, length, layer.Weights, options, new SlidingWindowCache(options), prefill);

        var cache = new SlidingWindowCache(options);
        long floats = cache.Floats;
        float[] ringKeys = cache.WindowKeys;
        var decode = new float[length * Hidden];
        for (int t = 0; t < length; t++)
            SlidingWindowAttention.Forward(x.AsSpan(t * Hidden, Hidden), 1, layer.Weights, options, cache, decode.AsSpan(t * Hidden, Hidden));

        Assert.That(VariantTestSupport.MaxAbsDifference(decode, prefill), Is.LessThanOrEqualTo(1e-4), "decode vs prefill");
        Assert.That(cache.Length, Is.EqualTo(length));
        Assert.That(cache.Capacity, Is.EqualTo(Window + Globals.Length), "slots: window + globals");
        Assert.That(cache.Floats, Is.EqualTo(floats).And.EqualTo(2L * (Window + Globals.Length) * kvHeads * headDim), "memory does not depend on the length");
        Assert.That(cache.WindowKeys, Is.SameAs(ringKeys), "the ring is never reallocated");
    }

    [TestCase(37, 92)]
    [TestCase(1, 128)]
    [TestCase(100, 29)]
    public void Prefill_split_in_two_calls_equals_one_call(int first, int second)
    {
        int length = first + second;
        var layer = new VariantLayer(300, Hidden, Heads, 1, 20);
        var options = new SlidingWindowAttentionOptions(layer.Options(rope: true), Window, Globals);
        float[] x = VariantTestSupport.RandomFloats(new Random(301), length * Hidden);

        var whole = new float[length * Hidden];
        SlidingWindowAttention.Forward(x, length, layer.Weights, options, new SlidingWindowCache(options), whole);

        var cache = new SlidingWindowCache(options);
        var split = new float[length * Hidden];
        SlidingWindowAttention.Forward(x.AsSpan(0, first * Hidden), first, layer.Weights, options, cache, split.AsSpan(0, first * Hidden));
        SlidingWindowAttention.Forward(x.AsSpan(first * Hidden), second, layer.Weights, options, cache, split.AsSpan(first * Hidden));

        Assert.That(VariantTestSupport.MaxAbsDifference(split, whole), Is.LessThanOrEqualTo(1e-5));
    }

    [TestCase(129, 129, 1)]
    [TestCase(100, 200, 3)]
    public void A_window_at_least_the_length_is_full_causal_attention(int length, int window, int kvHeads)
    {
        // Checks the mask: with nothing outside the window, the op must equal the plain `attention` layer, and global
        // tokens (all inside the window then) must not be counted twice.
        var layer = new VariantLayer(400 + kvHeads, Hidden, Heads, kvHeads, 12);
        var options = new SlidingWindowAttentionOptions(layer.Options(rope: true), window, Globals);
        float[] x = VariantTestSupport.RandomFloats(new Random(401), length * Hidden);

        var y = new float[length * Hidden];
        SlidingWindowAttention.Forward(x, length, layer.Weights, options, new SlidingWindowCache(options), y);
        var full = new float[length * Hidden];
        CpuKernels.AttentionLayer(x, length, layer.Weights, layer.Options(rope: true), new KvCache(length, kvHeads, 12), full);

        double scale = full.Max(v => Math.Abs(v));
        Assert.That(VariantTestSupport.MaxAbsDifference(y, full) / scale, Is.LessThanOrEqualTo(Float32Tolerance));
    }

    [Test]
    public void Global_positions_must_be_sorted_and_distinct()
    {
        var layer = new VariantLayer(500, Hidden, Heads, 1, 12);
        var options = new SlidingWindowAttentionOptions(layer.Options(rope: true), Window, [5, 0]);
        var ex = Assert.Throws<ArgumentException>(() => options.Validate());
        Assert.That(ex!.Message, Does.Contain("sorted, distinct"));
        Assert.Throws<ArgumentException>(() => new SlidingWindowCache(Window, 1, 12, [3, 3]));
    }

    // ---------------------------------------------------------------- MaskedAttention (the key-range hook)

    [TestCase(1, 0, 130)]
    [TestCase(65, 0, 65)]
    [TestCase(20, 50, 90)]
    public void MaskedAttention_with_the_causal_ranges_is_bit_identical_to_CausalAttention(int queries, int queryStart, int keyCount)
    {
        const int heads = 6, kvHeads = 2, headDim = 20;
        var random = new Random(600 + queries);
        float[] q = VariantTestSupport.RandomFloats(random, queries * heads * headDim, 3f);
        float[] keys = VariantTestSupport.RandomFloats(random, keyCount * kvHeads * headDim);
        float[] values = VariantTestSupport.RandomFloats(random, keyCount * kvHeads * headDim);

        var causal = new float[q.Length];
        CpuKernels.CausalAttention(q, queries, heads, keys, values, keyCount, kvHeads, headDim, queryStart, causal);
        var masked = new float[q.Length];
        CpuKernels.MaskedAttention(q, queries, heads, keys, values, keyCount, kvHeads, headDim, row => AttentionKeyRanges.Single(0, queryStart + row + 1), masked);

        Assert.That(masked, Is.EqualTo(causal).AsCollection);
    }

    [Test]
    public void MaskedAttention_never_reads_key_tiles_that_no_row_sees()
    {
        // Rows at positions 290 … 299 see keys [0, 2) and their window of 20; keys 64 … 255 (three whole 64-key tiles
        // away from both) are NaN, so reading any of them would poison the output.
        const int queries = 10, heads = 3, kvHeads = 1, headDim = 12, keyCount = 300, window = 20;
        var random = new Random(700);
        float[] q = VariantTestSupport.RandomFloats(random, queries * heads * headDim, 3f);
        float[] keys = VariantTestSupport.RandomFloats(random, keyCount * kvHeads * headDim);
        float[] values = VariantTestSupport.RandomFloats(random, keyCount * kvHeads * headDim);
        AttentionKeyRanges Ranges(int row) => new(0, 2, 290 + row - window + 1, 290 + row + 1);
        double[] expected = new double[q.Length];
        for (int row = 0; row < queries; row++)
        {
            var ranges = Ranges(row);
            int[] visible = [.. Enumerable.Range(ranges.Start0, ranges.End0 - ranges.Start0), .. Enumerable.Range(ranges.Start1, ranges.End1 - ranges.Start1)];
            for (int h = 0; h < heads; h++)
            {
                double[] scores = visible.Select(j => Enumerable.Range(0, headDim).Sum(e => (double)q[(row * heads + h) * headDim + e] * keys[j * headDim + e]) / Math.Sqrt(headDim)).ToArray();
                double max = scores.Max();
                double sum = scores.Sum(s => Math.Exp(s - max));
                for (int i = 0; i < visible.Length; i++)
                    for (int e = 0; e < headDim; e++)
                        expected[(row * heads + h) * headDim + e] += Math.Exp(scores[i] - max) / sum * values[visible[i] * headDim + e];
            }
        }
        for (int j = 64; j < 256; j++)
            for (int e = 0; e < headDim; e++)
                keys[j * headDim + e] = values[j * headDim + e] = float.NaN;

        var output = new float[q.Length];
        CpuKernels.MaskedAttention(q, queries, heads, keys, values, keyCount, kvHeads, headDim, Ranges, output);

        VariantTestSupport.AssertClose(output, expected, Float32Tolerance, "MaskedAttention");
    }

    [Test]
    public void MaskedAttention_rejects_a_row_that_sees_no_key()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            CpuKernels.MaskedAttention(new float[8], 1, 1, new float[16], new float[16], 2, 1, 8, _ => AttentionKeyRanges.Single(1, 1), new float[8]));
        Assert.That(ex!.Message, Does.Contain("sees no key"));
    }
}
