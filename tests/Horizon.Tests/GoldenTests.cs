using System.Text.Json;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// Whole-model log-probs against references on small random checkpoints, each loaded through ModelRegistry by its
/// config.json architecture: Llama and Qwen2 against Hugging Face transformers (float32, CPU, eager attention;
/// tests/golden/make_golden.py: GQA, MQA, tied and untied heads, QKV bias, head_dim ≠ hidden/heads, F16 and BF16
/// weights, linear RoPE scaling in both config forms, a sharded checkpoint); Mixtral and Qwen2-MoE against
/// transformers (make_moe_golden.py: per-expert and fused experts, shared expert, a dense layer); GLA (fla layout)
/// and HyenaDNA against float64 references written from the equations (make_gla_golden.py, make_hyena_golden.py:
/// GQA/MQA, short convolutions, clamp, no output gate or norm scale, the legacy fused MLP, BF16, a padded
/// vocabulary); the Block Transformer (two-level spec, models/block_transformer.model.json) against a float64
/// reference written from the paper's equations and the official code's forward (make_block_transformer_golden.py:
/// L_B 4 / R 2 and L_B 3 / R 3, parallel and sequential residuals, exact and tanh GELU, BF16, first-block paddings
/// 3, 1 and 0). 200–333 tokens each.
/// A two-level model predicts nothing for the tokens of its first block: expected.json has null there and its
/// "first_block_padding" P; the model is scored with that P (<see cref="IBlockModelState"/>), its NaN rows must be
/// exactly the null entries, and every comparison runs over the defined positions only.
/// </summary>
public class GoldenTests
{
    private const double Tolerance = 1e-3; // the bound on max |Δ logprob| against transformers' fp32

    public static IEnumerable<string> Fixtures() =>
        Directory.GetDirectories(RepositoryPaths.Golden)
            .Where(d => File.Exists(Path.Combine(d, "expected.json")))
            .Select(d => Path.GetFileName(d)!)
            .Order(StringComparer.Ordinal);

    /// <summary>The fixture's tokens and expected log-probs; a null entry (no prediction: a two-level model's first block) is NaN.</summary>
    internal static (int[] Tokens, double[] LogProbs) ReadExpected(string fixture)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(RepositoryPaths.Golden, fixture, "expected.json")));
        var tokens = doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var logprobs = doc.RootElement.GetProperty("logprobs").EnumerateArray()
            .Select(e => e.ValueKind == JsonValueKind.Null ? double.NaN : e.GetDouble()).ToArray();
        return (tokens, logprobs);
    }

    /// <summary>A two-level fixture's first-block padding P ("first_block_padding"); null for every other fixture.</summary>
    internal static int? ReadFirstBlockPadding(string fixture)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(RepositoryPaths.Golden, fixture, "expected.json")));
        return doc.RootElement.TryGetProperty("first_block_padding", out var padding) ? padding.GetInt32() : null;
    }

    /// <summary>An empty state for <paramref name="capacity"/> tokens, with the fixture's first-block padding when it has one.</summary>
    private static IModelState CreateState(ICausalLanguageModel model, string fixture, int capacity)
    {
        var state = model.CreateState(capacity);
        if (ReadFirstBlockPadding(fixture) is int padding)
            ((IBlockModelState)state).Reset(padding);
        return state;
    }

    /// <summary>
    /// max |a − b| over the entries both define; NaN entries must be the same in both (a position one side predicts and
    /// the other does not is a failure, not a skipped entry).
    /// </summary>
    private static double MaxDefinedDelta(ReadOnlySpan<double> a, ReadOnlySpan<double> b, string what)
    {
        Assert.That(a.Length, Is.EqualTo(b.Length), what);
        double max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            if (double.IsNaN(a[i]) || double.IsNaN(b[i]))
            {
                Assert.That(double.IsNaN(a[i]) && double.IsNaN(b[i]), $"{what}: entry {i} is defined on one side only ({a[i]} and {b[i]})");
                continue;
            }
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        }
        return max;
    }

    private static double MaxDefinedDelta(ReadOnlySpan<float> a, ReadOnlySpan<float> b, string what)
    {
        var left = new double[a.Length];
        var right = new double[b.Length];
        for (int i = 0; i < a.Length; i++)
            left[i] = a[i];
        for (int i = 0; i < b.Length; i++)
            right[i] = b[i];
        return MaxDefinedDelta(left, right, what);
    }

    [Test]
    public void Every_fixture_is_found()
    {
        var fixtures = Fixtures().ToArray();
        Assert.That(fixtures, Has.Length.GreaterThanOrEqualTo(17));
        // Every architecture the runtime ships a spec for has fixtures.
        foreach (string prefix in new[] { "llama-", "qwen2-", "gla-", "mixtral-", "qwen2-moe-", "hyenadna-", "block-transformer-" })
            Assert.That(fixtures.Any(f => f.StartsWith(prefix, StringComparison.Ordinal)), $"no fixture named {prefix}*");
    }

    [TestCaseSource(nameof(Fixtures))]
    public void Logprobs_match_transformers(string fixture)
    {
        var (tokens, expected) = ReadExpected(fixture);
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture));
        var result = Scoring.Score(model, tokens, firstBlockPadding: ReadFirstBlockPadding(fixture));

        Assert.That(result.LogProbs, Has.Length.EqualTo(expected.Length));
        double maxError = MaxDefinedDelta(expected, result.LogProbs, fixture);
        int defined = expected.Count(e => !double.IsNaN(e));
        Assert.That(result.DefinedCount, Is.EqualTo(defined));
        Assert.That(double.IsFinite(result.Perplexity), $"perplexity over the defined positions is {result.Perplexity}");
        TestContext.Out.WriteLine($"{fixture}: max |Δ logprob| = {maxError:E2} over {defined} tokens" + (defined < expected.Length ? $" ({expected.Length - defined} in the first block, null)" : ""));
        Assert.That(maxError, Is.LessThanOrEqualTo(Tolerance));
    }

    [TestCaseSource(nameof(Fixtures))]
    public void Chunked_prefill_equals_one_shot(string fixture)
    {
        var (tokens, _) = ReadExpected(fixture);
        int? padding = ReadFirstBlockPadding(fixture);
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture));
        var oneShot = Scoring.Score(model, tokens, chunkSize: tokens.Length, firstBlockPadding: padding);
        var chunked = Scoring.Score(model, tokens, chunkSize: 37, firstBlockPadding: padding);
        Assert.That(MaxDefinedDelta(oneShot.LogProbs, chunked.LogProbs, fixture), Is.LessThanOrEqualTo(1e-4));
    }

    [TestCaseSource(nameof(Fixtures))]
    public void Decode_token_by_token_equals_prefill(string fixture)
    {
        var (tokens, _) = ReadExpected(fixture);
        tokens = tokens[..80];
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture));
        int vocab = model.VocabSize;

        var prefillLogits = new float[tokens.Length * vocab];
        model.Forward(tokens, CreateState(model, fixture, tokens.Length), prefillLogits);

        var state = CreateState(model, fixture, tokens.Length);
        var step = new float[vocab];
        double maxDelta = 0;
        for (int t = 0; t < tokens.Length; t++)
        {
            model.Forward(tokens.AsSpan(t, 1), state, step);
            maxDelta = Math.Max(maxDelta, MaxDefinedDelta(step, prefillLogits.AsSpan(t * vocab, vocab), $"{fixture}, token {t}"));
        }
        Assert.That(state.Length, Is.EqualTo(tokens.Length));
        Assert.That(maxDelta, Is.LessThanOrEqualTo(1e-4));
    }

    [TestCaseSource(nameof(Fixtures))]
    public void Reset_state_runs_like_a_new_one(string fixture)
    {
        var (tokens, _) = ReadExpected(fixture);
        tokens = tokens[..48];
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture));
        int vocab = model.VocabSize;
        var fresh = new float[tokens.Length * vocab];
        model.Forward(tokens, CreateState(model, fixture, tokens.Length), fresh);

        // Fill the state with other tokens, reset it, and run the same tokens again: every cache, recurrent state
        // and convolution history must have been forgotten. (A two-level state keeps its first-block padding.)
        var state = CreateState(model, fixture, tokens.Length);
        var scratch = new float[tokens.Length * vocab];
        model.Forward(tokens.Reverse().ToArray(), state, scratch);
        state.Reset();
        Assert.That(state.Length, Is.Zero);
        var again = new float[tokens.Length * vocab];
        model.Forward(tokens, state, again);
        Assert.That(MaxDefinedDelta(again, fresh, fixture), Is.LessThanOrEqualTo(1e-5));
    }

    [TestCase("gla-tied", "feature_map", "\"relu\"")]
    [TestCase("gla-tied", "attn", "{ \"layers\": [1], \"num_heads\": 4 }")]
    [TestCase("mixtral-moe-gqa", "hidden_act", "\"gelu\"")]
    public void Config_value_the_model_does_not_implement_is_refused_by_name(string fixture, string key, string json)
    {
        // A copy of the fixture whose config.json sets the key: loading must fail, naming it, not run another model.
        string directory = Path.Combine(Path.GetTempPath(), "horizon-golden-variants", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        File.Copy(Path.Combine(RepositoryPaths.Golden, fixture, "model.safetensors"), Path.Combine(directory, "model.safetensors"), overwrite: true);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(RepositoryPaths.Golden, fixture, "config.json")))!.AsObject();
        config[key] = System.Text.Json.Nodes.JsonNode.Parse(json);
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString());

        try
        {
            var error = Assert.Throws<ModelLoadException>(() => ModelRegistry.Load(directory).Dispose());
            Assert.That(error!.Message, Does.Contain($"{key} = ").And.Contain("is not supported"));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// The shipped default model (models/horizon-kjv, BF16 weights) against the float32 log-probs its training
    /// script computed in PyTorch from the same rounded weights on a held-out snippet (models/train/train.py).
    /// </summary>
    [Test]
    public void Default_model_reproduces_its_training_reference()
    {
        string directory = Path.Combine(RepositoryPaths.Models, "horizon-kjv");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(directory, "expected.json")));
        var tokens = doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var expected = doc.RootElement.GetProperty("logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        using var model = ModelRegistry.Load(directory);
        var result = Scoring.Score(model, tokens, chunkSize: 64);
        double maxError = expected.Select((e, i) => Math.Abs(e - result.LogProbs[i])).Max();
        TestContext.Out.WriteLine($"horizon-kjv: max |Δ logprob| = {maxError:E2} over {expected.Length} tokens, perplexity {result.Perplexity:F3}");
        Assert.That(model.Info.Architecture, Is.EqualTo("HorizonHybridForCausalLM"));
        Assert.That(maxError, Is.LessThanOrEqualTo(Tolerance));
    }

    [Test]
    public void Out_of_range_token_is_refused_before_the_state_changes()
    {
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, "llama-gqa-untied"));
        var state = model.CreateState(8);
        var logits = new float[2 * model.VocabSize];
        var error = Assert.Throws<HorizonException>(() => model.Forward([1, model.VocabSize], state, logits));
        Assert.That(error!.Message, Does.Contain(model.VocabSize.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Assert.That(state.Length, Is.Zero);
    }
}
