using System.Text.Json;
using Horizon.Generation;
using Horizon.Ops;
using Horizon.Models;
using Horizon.Tests.Generators;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// Fork/snapshot: a session's state copied (every layer's cache) so a prefix is prefilled once and continued
/// many ways; each continuation equals recomputing its whole sequence from scratch.
/// </summary>
public class GenerationForkTests
{
    private HorizonModel _model = null!;

    [OneTimeSetUp]
    public void Load() => _model = GenerationTestModel.Load();

    [OneTimeTearDown]
    public void Unload() => _model.Dispose();

    private const string Prefix = "In the beginning God created the heaven and the earth. And the earth was without form, and void";

    [Test]
    public async Task Fork_then_continue_equals_recomputing_from_scratch()
    {
        using var shared = _model.CreateSession();
        shared.Append(_model.Tokenizer.Encode(Prefix));
        shared.Prefill();
        string[] suffixes = [" And God said", " and darkness was upon the face", "; and the Spirit of God"];
        foreach (var suffix in suffixes)
        {
            using var fork = shared.Fork();
            Assert.That(fork.Tokens, Is.EqualTo(shared.Tokens));
            var forked = await fork.GenerateTextAsync(suffix, GenerationOptions.Greedy with { MaxTokens = 10, StopTokenIds = [] });
            Assert.That(forked.Usage.CachedTokens, Is.EqualTo(shared.Tokens.Count), "the prefix is reused, not recomputed");

            using var scratch = _model.CreateSession(prefillChunkSize: 7);
            var ids = _model.Tokenizer.Encode(Prefix).Concat(_model.Tokenizer.Encode(suffix)).ToArray();
            var again = new List<int>();
            await foreach (var update in scratch.GenerateAsync(ids, GenerationOptions.Greedy with { MaxTokens = 10, StopTokenIds = [] }))
            {
                if (!update.IsFinal)
                    again.Add(update.TokenId);
            }
            Assert.That(forked.Tokens, Is.EqualTo(again), suffix);
        }
        Assert.That(shared.Tokens.Count, Is.EqualTo(_model.Tokenizer.Encode(Prefix).Count), "forks leave the original alone");
    }

    [Test]
    public async Task A_fork_has_the_logits_of_its_source_and_they_part_ways_after()
    {
        using var source = _model.CreateSession();
        await source.GenerateTextAsync(Prefix, GenerationOptions.Greedy with { MaxTokens = 3, StopTokenIds = [] });
        using var fork = source.Fork();
        Assert.That(fork.CachedLength, Is.EqualTo(source.CachedLength));
        Assert.That(fork.Tokens, Is.EqualTo(source.Tokens), "the pending token comes along");

        var a = _model.Tokenizer.Encode(" alpha");
        var b = _model.Tokenizer.Encode(" omega");
        source.Append(a);
        source.Prefill();
        fork.Append(b);
        fork.Prefill();
        using var scratchA = _model.CreateSession();
        scratchA.Append(source.Tokens.ToArray());
        scratchA.Prefill();
        using var scratchB = _model.CreateSession();
        scratchB.Append(fork.Tokens.ToArray());
        scratchB.Prefill();
        Assert.That(source.NextTokenLogits.ToArray(), Is.EqualTo(scratchA.NextTokenLogits.ToArray()).Within(1e-4));
        Assert.That(fork.NextTokenLogits.ToArray(), Is.EqualTo(scratchB.NextTokenLogits.ToArray()).Within(1e-4));
    }

    [Test]
    public void Generated_states_clone_and_copy_every_layer()
    {
        var model = (Qwen2Model)_model.Model;
        var ids = _model.Tokenizer.Encode(Prefix).ToArray();
        var state = model.CreateState(128);
        var logits = new float[ids.Length * model.VocabSize];
        model.Forward(ids, state, logits);

        var clone = state.Clone();
        Assert.That(clone, Is.Not.SameAs(state));
        Assert.That(clone.Length, Is.EqualTo(state.Length));
        Assert.That(clone.Capacity, Is.EqualTo(state.Capacity));
        for (int layer = 0; layer < state.Layers.Length; layer++)
        {
            Assert.That(clone.Layers[layer].SelfAttn, Is.Not.SameAs(state.Layers[layer].SelfAttn));
            Assert.That(clone.Layers[layer].SelfAttn.Length, Is.EqualTo(ids.Length));
            var (cloneKeys, cloneValues) = KvCacheTests.Contents(clone.Layers[layer].SelfAttn);
            var (keys, values) = KvCacheTests.Contents(state.Layers[layer].SelfAttn);
            Assert.That(cloneKeys, Is.EqualTo(keys));
            Assert.That(cloneValues, Is.EqualTo(values));
        }

        // CopyFrom overwrites a state that holds something else.
        var other = model.CreateState(128);
        model.Forward(ids.AsSpan(0, 3), other, logits);
        other.CopyFrom(state);
        Assert.That(other.Length, Is.EqualTo(state.Length));
        var next = new float[model.VocabSize];
        var expected = new float[model.VocabSize];
        model.Forward([5], other, next);
        model.Forward([5], state, expected);
        Assert.That(next, Is.EqualTo(expected));

        Assert.Throws<ArgumentException>(() => model.CreateState(64).CopyFrom(state), "capacities differ");
        IForkableModelState forkable = state;
        Assert.Throws<ArgumentException>(() => forkable.CopyFrom(new FakeState()));
    }

    private sealed class FakeState : IModelState
    {
        public int Length => 0;
        public int Capacity => 1;
        public void Reset() { }
    }

    [TestCase("\"name\": \"layers\"", "\"name\": \"clone\"", "Clone")]
    [TestCase("\"name\": \"layers\"", "\"name\": \"residual_hook\"", "ResidualHook")]
    [TestCase("\"name\": \"mlp\"", "\"name\": \"copy_from\"", "CopyFrom")]
    public void Spec_names_that_would_clash_with_the_fork_and_hook_members_are_HZ0005(string from, string to, string member)
    {
        string path = Path.Combine(RepositoryPaths.Models, "llama.model.json");
        string spec = File.ReadAllText(path).Replace(from, to);
        var (run, _) = GeneratorHarness.Run((GeneratorHarness.SpecPath("clash.model.json"), spec));
        var diagnostic = run.Diagnostics.Single();
        Assert.That(diagnostic.Id, Is.EqualTo("HZ0005"));
        Assert.That(diagnostic.GetMessage(), Does.Contain(member));
    }

    // ---- Every stateful kind ---------------------------------------------------------------------------------

    private static int[] GoldenTokens(string fixture, int count)
    {
        using var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(RepositoryPaths.Golden, fixture, "expected.json")));
        return json.RootElement.GetProperty("tokens").EnumerateArray().Take(count).Select(e => e.GetInt32()).ToArray();
    }

    private static float[] Run(ICausalLanguageModel model, ReadOnlySpan<int> tokens, IModelState state)
    {
        var logits = new float[tokens.Length * model.VocabSize];
        model.Forward(tokens, state, logits);
        return logits;
    }

    /// <summary>
    /// Prefill a prefix, clone the state, run a suffix on the clone: the logits equal running prefix + suffix from
    /// scratch; and the source, continued with another suffix, is unaffected by the clone.
    /// </summary>
    [TestCase("gla-gqa-conv-clamp-untied")]   // GlaState: recurrent state and short-convolution tails
    [TestCase("hyenadna-tiny-random")]        // HyenaState: long-convolution history
    [TestCase("mixtral-moe-gqa")]             // KvCache with stateless MoE
    [TestCase("qwen2-bias-tied")]             // KvCache
    public void A_cloned_state_of_a_shipped_spec_continues_like_recomputation(string fixture)
    {
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture));
        var tokens = GoldenTokens(fixture, 40);
        int split = 17;
        var state = model.CreateState(64);
        Run(model, tokens.AsSpan(0, split), state);
        var clone = ((IForkableModelState)state).Clone();
        Assert.That(clone.Length, Is.EqualTo(split));
        var forked = Run(model, tokens.AsSpan(split), clone);
        var scratch = Run(model, tokens, model.CreateState(64));
        Assert.That(forked, Is.EqualTo(scratch[(split * model.VocabSize)..]).Within(1e-4));

        // The source goes on its own way; the clone did not disturb it.
        var other = tokens[split..].Reverse().ToArray();
        var source = Run(model, other, state);
        var otherScratch = Run(model, [.. tokens[..split], .. other], model.CreateState(64));
        Assert.That(source, Is.EqualTo(otherScratch[(split * model.VocabSize)..]).Within(1e-4));
    }

    [Test]
    public async Task The_default_model_forks_across_its_gla_and_attention_groups()
    {
        using var kjv = HorizonModel.Load(Path.Combine(RepositoryPaths.Models, "horizon-kjv"));
        using var shared = kjv.CreateSession(capacity: 256);
        shared.Append(kjv.Tokenizer.Encode("In the beginning God created the heaven and the earth.", addSpecialTokens: true));
        shared.Prefill();
        foreach (var suffix in new[] { " And God said", " And the earth" })
        {
            using var fork = shared.Fork();
            var forked = await fork.GenerateTextAsync(suffix, GenerationOptions.Greedy with { MaxTokens = 12 });
            using var scratch = kjv.CreateSession(capacity: 256);
            var ids = shared.Tokens.Concat(kjv.Tokenizer.Encode(suffix)).ToArray();
            var again = new List<int>();
            await foreach (var update in scratch.GenerateAsync(ids, GenerationOptions.Greedy with { MaxTokens = 12 }))
            {
                if (!update.IsFinal)
                    again.Add(update.TokenId);
            }
            Assert.That(forked.Tokens, Is.EqualTo(again), suffix);
        }
    }

    private static Matrix RandomMatrix(SplitMix64 random, int rows, int cols) =>
        Matrix.FromFloats("w", rows, cols, Enumerable.Range(0, rows * cols).Select(_ => (float)(random.NextDouble() - 0.5) / MathF.Sqrt(cols)).ToArray());

    private delegate void OpForward(ReadOnlySpan<float> x, int rows, object state, Span<float> y);

    /// <summary>The attention variants no shipped spec uses yet: StateCopy's field-by-field copy of their caches.</summary>
    [TestCase("sliding_window")]
    [TestCase("cca")]
    [TestCase("agent")]
    public void Copied_caches_of_the_other_attention_variants_continue_like_the_original(string variant)
    {
        const int hidden = 32, rows = 30, split = 13;
        var random = new SplitMix64(99);
        var projections = new AttentionWeights(RandomMatrix(random, 32, hidden), RandomMatrix(random, 16, hidden), RandomMatrix(random, 16, hidden), RandomMatrix(random, hidden, 32));
        var attention = new AttentionOptions(hidden, 4, 2, 8, null);
        Func<object> create;
        OpForward forward;
        switch (variant)
        {
            case "sliding_window":
            {
                var options = new SlidingWindowAttentionOptions(attention, 8, [0, 3]);
                create = () => new SlidingWindowCache(options);
                forward = (x, n, s, y) => SlidingWindowAttention.Forward(x, n, projections, options, (SlidingWindowCache)s, y);
                break;
            }
            case "cca":
            {
                var options = new CcaAttentionOptions(attention, 4, 8);
                create = () => new CcaCache(64, options);
                forward = (x, n, s, y) => CcaAttention.Forward(x, n, projections, options, (CcaCache)s, y);
                break;
            }
            default:
            {
                var options = new AgentAttentionOptions(attention, Agents: 2, ConvKernel: 3, Causal: true, ChunkSize: 8);
                var weights = new AgentAttentionWeights(projections, Enumerable.Range(0, 32 * 3).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray());
                create = () => new AgentAttentionState(64, options);
                forward = (x, n, s, y) => AgentAttention.Forward(x, n, weights, options, (AgentAttentionState)s, y);
                break;
            }
        }
        var input = Enumerable.Range(0, rows * hidden).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var whole = new float[rows * hidden];
        forward(input, rows, create(), whole);

        var source = create();
        var head = new float[split * hidden];
        forward(input.AsSpan(0, split * hidden), split, source, head);
        var copy = create();
        StateCopy.Copy(source, copy);
        var tail = new float[(rows - split) * hidden];
        forward(input.AsSpan(split * hidden), rows - split, copy, tail);
        Assert.That(tail, Is.EqualTo(whole[(split * hidden)..]).Within(1e-5));
        // The copy owns its arrays: running it did not touch the source.
        var sourceTail = new float[(rows - split) * hidden];
        forward(input.AsSpan(split * hidden), rows - split, source, sourceTail);
        Assert.That(sourceTail, Is.EqualTo(tail));
    }
}
