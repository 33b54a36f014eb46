using System.Text.Json;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// Whole-model log-probs against Hugging Face transformers (float32, CPU, eager attention) on the checkpoints
/// that tests/golden/make_golden.py builds: GQA, MQA, tied and untied heads, QKV bias, head_dim ≠ hidden/heads,
/// F16 and BF16 weights, linear RoPE scaling in both config forms, a sharded checkpoint, 257–333 tokens.
/// </summary>
public class GoldenTests
{
    private const double Tolerance = 1e-3; // the bound on max |Δ logprob| against transformers' fp32

    public static IEnumerable<string> Fixtures() =>
        Directory.GetDirectories(RepositoryPaths.Golden)
            .Where(d => File.Exists(Path.Combine(d, "expected.json")))
            .Select(d => Path.GetFileName(d)!)
            .Order(StringComparer.Ordinal);

    internal static (int[] Tokens, double[] LogProbs) ReadExpected(string fixture)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(RepositoryPaths.Golden, fixture, "expected.json")));
        var tokens = doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var logprobs = doc.RootElement.GetProperty("logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        return (tokens, logprobs);
    }

    [Test]
    public void Every_fixture_is_found() => Assert.That(Fixtures().Count(), Is.GreaterThanOrEqualTo(5));

    [TestCaseSource(nameof(Fixtures))]
    public void Logprobs_match_transformers(string fixture)
    {
        var (tokens, expected) = ReadExpected(fixture);
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture));
        var result = Scoring.Score(model, tokens);

        Assert.That(result.LogProbs, Has.Length.EqualTo(expected.Length));
        double maxError = expected.Select((e, i) => Math.Abs(e - result.LogProbs[i])).Max();
        TestContext.Out.WriteLine($"{fixture}: max |Δ logprob| = {maxError:E2} over {expected.Length} tokens");
        Assert.That(maxError, Is.LessThanOrEqualTo(Tolerance));
    }

    [TestCaseSource(nameof(Fixtures))]
    public void Chunked_prefill_equals_one_shot(string fixture)
    {
        var (tokens, _) = ReadExpected(fixture);
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture));
        var oneShot = Scoring.Score(model, tokens, chunkSize: tokens.Length);
        var chunked = Scoring.Score(model, tokens, chunkSize: 37);
        double maxDelta = oneShot.LogProbs.Select((e, i) => Math.Abs(e - chunked.LogProbs[i])).Max();
        Assert.That(maxDelta, Is.LessThanOrEqualTo(1e-4));
    }

    [Test]
    public void Decode_token_by_token_equals_prefill()
    {
        const string fixture = "qwen2-bias-tied";
        var (tokens, _) = ReadExpected(fixture);
        tokens = tokens[..80];
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture));
        int vocab = model.VocabSize;

        var prefillLogits = new float[tokens.Length * vocab];
        model.Forward(tokens, model.CreateState(tokens.Length), prefillLogits);

        var state = model.CreateState(tokens.Length);
        var step = new float[vocab];
        double maxDelta = 0;
        for (int t = 0; t < tokens.Length; t++)
        {
            model.Forward(tokens.AsSpan(t, 1), state, step);
            for (int v = 0; v < vocab; v++)
                maxDelta = Math.Max(maxDelta, Math.Abs(step[v] - prefillLogits[t * vocab + v]));
        }
        Assert.That(state.Length, Is.EqualTo(tokens.Length));
        Assert.That(maxDelta, Is.LessThanOrEqualTo(1e-4));
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
