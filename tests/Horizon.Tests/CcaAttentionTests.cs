using Horizon.Cpu;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// <c>cca_attention</c> against the float64 token-by-token reference of <see cref="AttentionVariantsReference.Cca"/>,
/// decode against prefill, split prefill, and the degenerate case of a window covering the whole sequence. Groups of
/// 8 and a window of 16 over lengths that are not multiples of either; head_dim 12 and 20, 3 heads over 1 or 3
/// key/value heads.
/// </summary>
public class CcaAttentionTests
{
    private const double Float32Tolerance = 1e-5;
    private const int Hidden = 28, Heads = 3, GroupSize = 8, Window = 16;

    private static IEnumerable<TestCaseData> ReferenceCases()
    {
        foreach (int headDim in new[] { 12, 20 })
            foreach (int kvHeads in new[] { 1, 3 })
                foreach (int length in new[] { 1, 37, 100, 129 })
                    yield return new TestCaseData(headDim, kvHeads, length).SetName($"CcaAttention_matches_reference(d={headDim},kv={kvHeads},n={length})");
    }

    [TestCaseSource(nameof(ReferenceCases))]
    public void Prefill_matches_reference(int headDim, int kvHeads, int length)
    {
        var layer = new VariantLayer(7000 + headDim * 10 + kvHeads + length, Hidden, Heads, kvHeads, headDim);
        var options = new CcaAttentionOptions(layer.Options(rope: true), GroupSize, Window);
        float[] x = VariantTestSupport.RandomFloats(new Random(length), length * Hidden);

        var cache = new CcaCache(length, options);
        var y = new float[length * Hidden];
        CcaAttention.Forward(x, length, layer.Weights, options, cache, y);

        Assert.That(cache.Length, Is.EqualTo(length));
        VariantTestSupport.AssertClose(y, AttentionVariantsReference.Cca(layer, x, length, GroupSize, Window), Float32Tolerance, "cca_attention");
    }

    [TestCase(1)]
    [TestCase(3)]
    public void Decode_token_by_token_equals_prefill_with_one_core_per_group(int kvHeads)
    {
        const int length = 129, headDim = 20;
        var layer = new VariantLayer(8000 + kvHeads, Hidden, Heads, kvHeads, headDim);
        var options = new CcaAttentionOptions(layer.Options(rope: true), GroupSize, Window);
        float[] x = VariantTestSupport.RandomFloats(new Random(8001), length * Hidden);

        var prefill = new float[length * Hidden];
        CcaAttention.Forward(x, length, layer.Weights, options, new CcaCache(length, options), prefill);

        var cache = new CcaCache(length, options);
        var decode = new float[length * Hidden];
        for (int t = 0; t < length; t++)
            CcaAttention.Forward(x.AsSpan(t * Hidden, Hidden), 1, layer.Weights, options, cache, decode.AsSpan(t * Hidden, Hidden));

        Assert.That(VariantTestSupport.MaxAbsDifference(decode, prefill), Is.LessThanOrEqualTo(1e-4), "decode vs prefill");
        Assert.That(cache.CoreCount, Is.EqualTo(length / GroupSize));
        Assert.That(cache.RecentSlots, Is.EqualTo(Window + GroupSize - 1), "the raw ring is fixed");
        Assert.That(cache.FloatsInUse, Is.EqualTo(2L * (length / GroupSize) * Heads * headDim + 2L * (Window + GroupSize - 1) * kvHeads * headDim));
    }

    [TestCase(37, 92)]
    [TestCase(24, 105)]
    [TestCase(1, 128)]
    public void Prefill_split_in_two_calls_equals_one_call(int first, int second)
    {
        int length = first + second;
        var layer = new VariantLayer(9000, Hidden, Heads, 1, 12);
        var options = new CcaAttentionOptions(layer.Options(rope: true), GroupSize, Window);
        float[] x = VariantTestSupport.RandomFloats(new Random(9001), length * Hidden);

        var whole = new float[length * Hidden];
        CcaAttention.Forward(x, length, layer.Weights, options, new CcaCache(length, options), whole);

        var cache = new CcaCache(length, options);
        var split = new float[length * Hidden];
        CcaAttention.Forward(x.AsSpan(0, first * Hidden), first, layer.Weights, options, cache, split.AsSpan(0, first * Hidden));
        CcaAttention.Forward(x.AsSpan(first * Hidden), second, layer.Weights, options, cache, split.AsSpan(first * Hidden));

        Assert.That(VariantTestSupport.MaxAbsDifference(split, whole), Is.LessThanOrEqualTo(1e-5));
    }

    [Test]
    public void A_window_at_least_the_length_is_full_causal_attention()
    {
        const int length = 100;
        var layer = new VariantLayer(10000, Hidden, Heads, 3, 12);
        var options = new CcaAttentionOptions(layer.Options(rope: true), GroupSize, length);
        float[] x = VariantTestSupport.RandomFloats(new Random(10001), length * Hidden);

        var y = new float[length * Hidden];
        CcaAttention.Forward(x, length, layer.Weights, options, new CcaCache(length, options), y);
        var full = new float[length * Hidden];
        CpuKernels.AttentionLayer(x, length, layer.Weights, layer.Options(rope: true), new KvCache(length, 3, 12), full);

        Assert.That(VariantTestSupport.MaxAbsDifference(y, full) / full.Max(v => Math.Abs(v)), Is.LessThanOrEqualTo(Float32Tolerance));
    }

    [Test]
    public void The_cache_refuses_tokens_past_its_capacity_and_stays_unchanged()
    {
        var layer = new VariantLayer(11000, Hidden, Heads, 1, 12);
        var options = new CcaAttentionOptions(layer.Options(rope: true), GroupSize, Window);
        var cache = new CcaCache(10, options);
        float[] x = VariantTestSupport.RandomFloats(new Random(11001), 11 * Hidden);
        CcaAttention.Forward(x.AsSpan(0, 9 * Hidden), 9, layer.Weights, options, cache, new float[9 * Hidden]);
        var ex = Assert.Throws<HorizonException>(() => CcaAttention.Forward(x.AsSpan(9 * Hidden), 2, layer.Weights, options, cache, new float[2 * Hidden]));
        Assert.That(ex!.Message, Does.StartWith("CCA cache full: capacity 10"));
        Assert.That(cache.Length, Is.EqualTo(9));
    }
}
