using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// <c>agent_attention</c>, bidirectional and causal, against the float64 token-by-token references of
/// <see cref="AttentionVariantsReference"/>; the causal variant also for causality (an output never moves when later
/// tokens change), decode against prefill, and split prefill. Odd sizes: head_dim 12 and 20, 3 heads over 1 or 3
/// key/value heads, 5 agents over lengths that are not multiples of it, chunks of 16 with 4 agents, kernels 3 and 4.
/// </summary>
public class AgentAttentionTests
{
    private const double Float32Tolerance = 1e-5;
    private const int Hidden = 28, Heads = 3;
    private const int BidirectionalAgents = 5, BidirectionalKernel = 3;
    private const int CausalAgents = 4, ChunkSize = 16, CausalKernel = 4;

    private static IEnumerable<TestCaseData> Cases(string name)
    {
        foreach (int headDim in new[] { 12, 20 })
            foreach (int kvHeads in new[] { 1, 3 })
                foreach (int length in new[] { 1, 37, 100, 129 })
                    yield return new TestCaseData(headDim, kvHeads, length).SetName($"{name}(d={headDim},kv={kvHeads},n={length})");
    }

    private static IEnumerable<TestCaseData> BidirectionalCases() => Cases("AgentAttention_bidirectional_matches_reference");

    private static IEnumerable<TestCaseData> CausalCases() => Cases("AgentAttention_causal_matches_reference");

    /// <summary>A layer, its agent options and DWC filters (with bias).</summary>
    private static (VariantLayer Layer, AgentAttentionOptions Options, AgentAttentionWeights Weights) Make(int seed, int headDim, int kvHeads, bool causal)
    {
        var layer = new VariantLayer(seed, Hidden, Heads, kvHeads, headDim);
        int kernel = causal ? CausalKernel : BidirectionalKernel;
        var options = new AgentAttentionOptions(layer.Options(rope: false), causal ? CausalAgents : BidirectionalAgents, kernel, causal, causal ? ChunkSize : 0);
        var random = new Random(seed + 1);
        var weights = new AgentAttentionWeights(
            layer.Weights,
            VariantTestSupport.RandomFloats(random, Heads * headDim * kernel, 0.5f),
            VariantTestSupport.RandomFloats(random, Heads * headDim, 0.1f));
        return (layer, options, weights);
    }

    [TestCaseSource(nameof(BidirectionalCases))]
    public void Bidirectional_matches_reference(int headDim, int kvHeads, int length)
    {
        var (layer, options, weights) = Make(1000 + headDim * 10 + kvHeads + length, headDim, kvHeads, causal: false);
        var random = new Random(length);
        // Agent biases B₁ (heads, agents, n) and B₂ (heads, n, agents), fixed to this length.
        weights = weights with
        {
            AgentKeyBias = VariantTestSupport.RandomFloats(random, Heads * BidirectionalAgents * length, 0.5f),
            QueryAgentBias = VariantTestSupport.RandomFloats(random, Heads * length * BidirectionalAgents, 0.5f),
        };
        float[] x = VariantTestSupport.RandomFloats(random, length * Hidden);

        var y = new float[length * Hidden];
        AgentAttention.Forward(x, length, weights, options, null, y);

        double[] expected = AttentionVariantsReference.AgentBidirectional(layer, x, length, BidirectionalAgents, BidirectionalKernel,
            weights.ConvWeight, weights.ConvBias, weights.AgentKeyBias, weights.QueryAgentBias);
        VariantTestSupport.AssertClose(y, expected, Float32Tolerance, "agent_attention bidirectional");
    }

    [Test]
    public void Bidirectional_every_output_sees_the_whole_sequence()
    {
        // The encoder form is not causal: changing the last token moves the first output.
        const int length = 37;
        var (_, options, weights) = Make(1100, 12, 3, causal: false);
        float[] x = VariantTestSupport.RandomFloats(new Random(1101), length * Hidden);
        var y = new float[length * Hidden];
        AgentAttention.Forward(x, length, weights, options, null, y);
        x[^1] += 1f;
        var changed = new float[length * Hidden];
        AgentAttention.Forward(x, length, weights, options, null, changed);
        Assert.That(VariantTestSupport.MaxAbsDifference(y.AsSpan(0, Hidden), changed.AsSpan(0, Hidden)), Is.GreaterThan(0));
    }

    [TestCaseSource(nameof(CausalCases))]
    public void Causal_matches_reference(int headDim, int kvHeads, int length)
    {
        var (layer, options, weights) = Make(2000 + headDim * 10 + kvHeads + length, headDim, kvHeads, causal: true);
        float[] x = VariantTestSupport.RandomFloats(new Random(length), length * Hidden);

        var state = new AgentAttentionState(length, options);
        var y = new float[length * Hidden];
        AgentAttention.Forward(x, length, weights, options, state, y);

        Assert.That(state.Length, Is.EqualTo(length));
        double[] expected = AttentionVariantsReference.AgentCausal(layer, x, length, CausalAgents, ChunkSize, CausalKernel, weights.ConvWeight, weights.ConvBias);
        VariantTestSupport.AssertClose(y, expected, Float32Tolerance, "agent_attention causal");
    }

    [TestCase(0)]
    [TestCase(15)]
    [TestCase(16)]
    [TestCase(40)]
    [TestCase(98)]
    public void Causal_output_i_does_not_change_when_later_tokens_change(int i)
    {
        const int length = 100;
        var (_, options, weights) = Make(3000, 20, 1, causal: true);
        float[] x = VariantTestSupport.RandomFloats(new Random(3001), length * Hidden);
        var y = new float[length * Hidden];
        AgentAttention.Forward(x, length, weights, options, new AgentAttentionState(length, options), y);

        // Every token after i replaced by other random values.
        float[] changedInput = (float[])x.Clone();
        float[] replacement = VariantTestSupport.RandomFloats(new Random(3002 + i), (length - i - 1) * Hidden);
        replacement.CopyTo(changedInput, (i + 1) * Hidden);
        var changed = new float[length * Hidden];
        AgentAttention.Forward(changedInput, length, weights, options, new AgentAttentionState(length, options), changed);

        Assert.That(changed.AsSpan(0, (i + 1) * Hidden).ToArray(), Is.EqualTo(y.AsSpan(0, (i + 1) * Hidden).ToArray()).AsCollection, $"outputs 0 … {i}");
        Assert.That(VariantTestSupport.MaxAbsDifference(changed.AsSpan((i + 1) * Hidden), y.AsSpan((i + 1) * Hidden)), Is.GreaterThan(0), "later outputs do move");
    }

    [TestCase(1)]
    [TestCase(3)]
    public void Causal_decode_token_by_token_equals_prefill_with_a_fixed_state_per_chunk(int kvHeads)
    {
        const int length = 129, headDim = 12;
        var (_, options, weights) = Make(4000 + kvHeads, headDim, kvHeads, causal: true);
        float[] x = VariantTestSupport.RandomFloats(new Random(4001), length * Hidden);

        var prefill = new float[length * Hidden];
        AgentAttention.Forward(x, length, weights, options, new AgentAttentionState(length, options), prefill);

        var state = new AgentAttentionState(length, options);
        var decode = new float[length * Hidden];
        for (int t = 0; t < length; t++)
        {
            AgentAttention.Forward(x.AsSpan(t * Hidden, Hidden), 1, weights, options, state, decode.AsSpan(t * Hidden, Hidden));
            // n agents × (key, value) × heads × d per completed chunk, nothing per token.
            Assert.That(state.AgentFloatsInUse, Is.EqualTo(2L * ((t + 1) / ChunkSize) * CausalAgents * Heads * headDim));
        }

        Assert.That(VariantTestSupport.MaxAbsDifference(decode, prefill), Is.LessThanOrEqualTo(1e-4), "decode vs prefill");
        Assert.That(state.ChunkKeys, Has.Length.EqualTo(ChunkSize * kvHeads * headDim), "the chunk in progress is one chunk of keys");
    }

    [TestCase(37, 92)]
    [TestCase(16, 113)]
    [TestCase(1, 128)]
    public void Causal_prefill_split_in_two_calls_equals_one_call(int first, int second)
    {
        int length = first + second;
        var (_, options, weights) = Make(5000, 20, 3, causal: true);
        float[] x = VariantTestSupport.RandomFloats(new Random(5001), length * Hidden);

        var whole = new float[length * Hidden];
        AgentAttention.Forward(x, length, weights, options, new AgentAttentionState(length, options), whole);

        var state = new AgentAttentionState(length, options);
        var split = new float[length * Hidden];
        AgentAttention.Forward(x.AsSpan(0, first * Hidden), first, weights, options, state, split.AsSpan(0, first * Hidden));
        AgentAttention.Forward(x.AsSpan(first * Hidden), second, weights, options, state, split.AsSpan(first * Hidden));

        Assert.That(VariantTestSupport.MaxAbsDifference(split, whole), Is.LessThanOrEqualTo(1e-5));
    }

    [Test]
    public void Options_are_checked()
    {
        var (layer, options, weights) = Make(6000, 12, 1, causal: false);
        Assert.Throws<ArgumentException>(() => AgentAttention.Forward(new float[Hidden], 1, weights, options, new AgentAttentionState(4, options with { Causal = true, ChunkSize = 2, ConvKernel = 3 }), new float[Hidden]));
        Assert.Throws<ArgumentException>(() => (options with { ConvKernel = 4 }).Validate(), "a centred kernel must be odd");
        Assert.Throws<ArgumentException>(() => (options with { Attention = layer.Options(rope: true) }).Validate(), "no RoPE");
        var causal = options with { Causal = true, ChunkSize = 4, ConvKernel = 3 };
        var state = new AgentAttentionState(2, causal);
        var ex = Assert.Throws<HorizonException>(() => AgentAttention.Forward(new float[3 * Hidden], 3, weights, causal, state, new float[3 * Hidden]));
        Assert.That(ex!.Message, Does.StartWith("agent attention state full"));
    }
}
