using Horizon.Generation;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>Sampling steps, logits processors, stop sequences and generation_config.json against their equations.</summary>
public class GenerationSamplingTests
{
    private static float[] Softmax(float[] z, double temperature = 1)
    {
        double max = z.Max();
        var e = z.Select(v => Math.Exp((v - max) / temperature)).ToArray();
        double sum = e.Sum();
        return e.Select(v => (float)(v / sum)).ToArray();
    }

    private static float[] Distribution(GenerationOptions options, float[] logits)
    {
        var sampler = new Sampler(options, 1);
        var p = new float[logits.Length];
        sampler.Distribution(logits, p);
        return p;
    }

    private static readonly float[] Logits = [2.0f, -1.0f, 0.5f, 3.0f, 0.5f, -4.0f, 1.25f, 0.0f];

    [Test]
    public void Greedy_takes_the_largest_logit_and_the_smallest_id_on_a_tie()
    {
        var sampler = new Sampler(GenerationOptions.Greedy, 7);
        Assert.That(sampler.Sample(Logits.ToArray(), [], 0), Is.EqualTo(3));
        Assert.That(sampler.Sample(new float[] { 1, 5, 5, 2 }, [], 0), Is.EqualTo(1));
    }

    [TestCase(1.0)]
    [TestCase(0.5)]
    [TestCase(2.0)]
    public void Temperature_gives_softmax_of_logits_over_t(double t)
    {
        var p = Distribution(new GenerationOptions { Temperature = (float)t }, Logits);
        var expected = Softmax(Logits, t);
        Assert.That(p, Is.EqualTo(expected).Within(1e-6));
    }

    [Test]
    public void Top_k_keeps_the_k_largest_renormalised()
    {
        var p = Distribution(new GenerationOptions { TopK = 3 }, Logits);
        var s = Softmax(Logits);
        double kept = s[3] + s[0] + s[6];
        var expected = new float[Logits.Length];
        foreach (int i in new[] { 3, 0, 6 })
            expected[i] = (float)(s[i] / kept);
        Assert.That(p, Is.EqualTo(expected).Within(1e-6));
    }

    [Test]
    public void Top_k_keeps_ids_tied_with_the_kth()
    {
        // ids 2 and 4 tie at 0.5 for 4th place: top-4 keeps both.
        var p = Distribution(new GenerationOptions { TopK = 4 }, Logits);
        Assert.That(Enumerable.Range(0, p.Length).Where(i => p[i] > 0), Is.EqualTo(new[] { 0, 2, 3, 4, 6 }));
    }

    [Test]
    public void Top_p_keeps_the_fewest_ids_whose_mass_reaches_p()
    {
        var logits = new[] { 0.5f, 0.3f, 0.15f, 0.05f }.Select(v => (float)Math.Log(v)).ToArray();
        var p = Distribution(new GenerationOptions { TopP = 0.75f }, logits);
        Assert.That(p, Is.EqualTo(new[] { 0.625f, 0.375f, 0f, 0f }).Within(1e-6));
        p = Distribution(new GenerationOptions { TopP = 0.9f }, logits);
        Assert.That(p, Is.EqualTo(new[] { 0.5f / 0.95f, 0.3f / 0.95f, 0.15f / 0.95f, 0f }).Within(1e-6));
        p = Distribution(new GenerationOptions { TopP = 0.1f }, logits);
        Assert.That(p, Is.EqualTo(new[] { 1f, 0f, 0f, 0f }).Within(1e-6));
    }

    [Test]
    public void Min_p_keeps_ids_at_least_min_p_times_the_top_probability()
    {
        var s = Softmax(Logits);
        float threshold = 0.2f * s.Max();
        var p = Distribution(new GenerationOptions { MinP = 0.2f }, Logits);
        double kept = s.Where(v => v >= threshold).Sum(v => (double)v);
        var expected = s.Select(v => v >= threshold ? (float)(v / kept) : 0f).ToArray();
        Assert.That(p, Is.EqualTo(expected).Within(1e-6));
    }

    [Test]
    public void Top_k_then_top_p_then_min_p_compose_in_that_order()
    {
        var options = new GenerationOptions { Temperature = 0.7f, TopK = 5, TopP = 0.9f, MinP = 0.05f };
        var p = Distribution(options, Logits);
        // By hand: softmax(z/0.7) → top-5 → smallest prefix reaching 0.9 of the kept mass → min-p → renormalise.
        var s = Softmax(Logits, 0.7);
        var order = Enumerable.Range(0, s.Length).OrderByDescending(i => s[i]).ThenBy(i => i).ToArray();
        var kept = order.Take(5).ToList();
        double total = kept.Sum(i => (double)s[i]), running = 0;
        var nucleus = new List<int>();
        foreach (int i in kept)
        {
            if (running >= 0.9f * total)
                break;
            running += s[i];
            nucleus.Add(i);
        }
        float top = nucleus.Max(i => s[i]);
        var final = nucleus.Where(i => s[i] >= 0.05f * top).ToList();
        double mass = final.Sum(i => (double)s[i]);
        var expected = new float[s.Length];
        foreach (int i in final)
            expected[i] = (float)(s[i] / mass);
        Assert.That(p, Is.EqualTo(expected).Within(1e-6));
    }

    [Test]
    public void Repetition_penalty_divides_positive_and_multiplies_negative_logits_once_per_id()
    {
        var logits = Logits.ToArray();
        Sampler.ApplyRepetitionPenalty(logits, [0, 1, 0, 7, 1], 1.5f);
        var expected = Logits.ToArray();
        expected[0] = 2.0f / 1.5f;
        expected[1] = -1.0f * 1.5f;
        expected[7] = 0.0f * 1.5f;
        Assert.That(logits, Is.EqualTo(expected));
    }

    [Test]
    public void Repetition_penalty_applies_before_greedy_choice()
    {
        var sampler = new Sampler(GenerationOptions.Greedy with { RepetitionPenalty = 2f }, 1);
        // Without the penalty id 3 (3.0) wins; with it 3.0/2 = 1.5 < 2.0 of id 0.
        Assert.That(sampler.Sample(Logits.ToArray(), [3], 1), Is.EqualTo(0));
    }

    [Test]
    public void The_same_seed_draws_the_same_ids_and_another_seed_others()
    {
        var options = new GenerationOptions { Temperature = 1.5f };
        int[] Draw(ulong seed)
        {
            var sampler = new Sampler(options, seed);
            return Enumerable.Range(0, 50).Select(_ => sampler.Sample(Logits.ToArray(), [], 0)).ToArray();
        }
        var first = Draw(42);
        Assert.That(Draw(42), Is.EqualTo(first));
        Assert.That(Draw(43), Is.Not.EqualTo(first));
    }

    [Test]
    public void Draws_follow_the_distribution()
    {
        var options = new GenerationOptions { Temperature = 1f, TopK = 4 };
        var expected = Distribution(options, Logits);
        var sampler = new Sampler(options, 2024);
        const int n = 40000;
        var counts = new int[Logits.Length];
        for (int i = 0; i < n; i++)
            counts[sampler.Sample(Logits.ToArray(), [], 0)]++;
        for (int i = 0; i < counts.Length; i++)
        {
            double sd = Math.Sqrt(n * expected[i] * (1 - expected[i])) + 1e-9;
            Assert.That(Math.Abs(counts[i] - n * expected[i]), Is.LessThanOrEqualTo(5 * sd + 1), $"id {i}");
        }
    }

    [Test]
    public void SplitMix64_matches_its_reference_sequence()
    {
        // SplitMix64 seeded with 0: the first outputs of the reference implementation (Vigna).
        var random = new SplitMix64(0);
        Assert.That(random.NextUInt64(), Is.EqualTo(0xE220A8397B1DCDAFUL));
        Assert.That(random.NextUInt64(), Is.EqualTo(0x6E789E6AA1B965F4UL));
        Assert.That(random.NextUInt64(), Is.EqualTo(0x06C45D188009454FUL));
    }

    [Test]
    public void Banned_tokens_are_never_drawn_and_allowed_tokens_are_the_only_ones()
    {
        var banned = new Sampler(new GenerationOptions { Temperature = 5f, LogitsProcessors = [new BannedTokensProcessor([3, 0])] }, 3);
        var allowed = new Sampler(new GenerationOptions { Temperature = 5f, LogitsProcessors = [new AllowedTokensProcessor([5, 7])] }, 3);
        for (int i = 0; i < 500; i++)
        {
            Assert.That(banned.Sample(Logits.ToArray(), [], 0), Is.Not.AnyOf(3, 0));
            Assert.That(allowed.Sample(Logits.ToArray(), [], 0), Is.AnyOf(5, 7));
        }
    }

    [Test]
    public void Logit_bias_adds_to_the_logits_before_softmax()
    {
        var bias = new LogitBiasProcessor(new Dictionary<int, float> { [5] = 10f, [3] = -1f });
        var logits = Logits.ToArray();
        bias.Process(new LogitsStep([], 0), logits);
        var expected = Logits.ToArray();
        expected[5] += 10f;
        expected[3] -= 1f;
        Assert.That(logits, Is.EqualTo(expected));
        Assert.That(new Sampler(GenerationOptions.Greedy with { LogitsProcessors = [bias] }, 1).Sample(Logits.ToArray(), [], 0), Is.EqualTo(5));
    }

    private sealed class Recorder : ILogitsProcessor
    {
        public List<(int[] Context, int PromptLength, int[] Generated)> Calls { get; } = [];

        public void Process(in LogitsStep step, Span<float> logits) => Calls.Add((step.Context.ToArray(), step.PromptLength, step.Generated.ToArray()));
    }

    [Test]
    public void A_processor_sees_the_context_and_where_the_prompt_ends()
    {
        var recorder = new Recorder();
        var sampler = new Sampler(GenerationOptions.Greedy with { LogitsProcessors = [recorder] }, 1);
        sampler.Sample(Logits.ToArray(), [9, 8, 7], 2);
        Assert.That(recorder.Calls.Single().Context, Is.EqualTo(new[] { 9, 8, 7 }));
        Assert.That(recorder.Calls.Single().PromptLength, Is.EqualTo(2));
        Assert.That(recorder.Calls.Single().Generated, Is.EqualTo(new[] { 7 }));
    }

    [Test]
    public void Masking_every_id_is_an_error_not_a_silent_pick()
    {
        var all = new Sampler(GenerationOptions.Greedy with { LogitsProcessors = [new BannedTokensProcessor(Enumerable.Range(0, Logits.Length))] }, 1);
        Assert.Throws<HorizonException>(() => all.Sample(Logits.ToArray(), [], 0));
        var sampled = new Sampler(new GenerationOptions { LogitsProcessors = [new BannedTokensProcessor(Enumerable.Range(0, Logits.Length))] }, 1);
        Assert.Throws<HorizonException>(() => sampled.Sample(Logits.ToArray(), [], 0));
    }

    [Test]
    public void Options_out_of_range_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions { TopP = 0 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions { TopK = -1 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions { MinP = 2 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions { RepetitionPenalty = 0 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions { MaxTokens = -1 }.Validate());
        Assert.Throws<ArgumentException>(() => new GenerationOptions { StopSequences = [""] }.Validate());
    }

    [Test]
    public void A_stop_string_split_over_pieces_is_found_and_nothing_after_it_comes_out()
    {
        var matcher = new StopSequenceMatcher(["lo wo", "xyz"]);
        var output = new List<string> { matcher.Append("Hel"), matcher.Append("lo w"), matcher.Append("orld") };
        Assert.That(matcher.Stopped, Is.True);
        Assert.That(string.Concat(output), Is.EqualTo("Hel"));
        Assert.That(output[0], Is.EqualTo("He"), "the l may start \"lo wo\": held back");
        Assert.That(matcher.Flush(), Is.Empty);
        Assert.That(matcher.Append("more"), Is.Empty);
    }

    [Test]
    public void Text_held_back_as_a_possible_stop_comes_out_when_it_is_not_one()
    {
        var matcher = new StopSequenceMatcher(["\nUser:"]);
        Assert.That(matcher.Append("Hi\nUs"), Is.EqualTo("Hi"));
        Assert.That(matcher.Held, Is.EqualTo("\nUs"));
        Assert.That(matcher.Append("ually"), Is.EqualTo("\nUsually"));
        Assert.That(matcher.Append("\n"), Is.Empty);
        Assert.That(matcher.Flush(), Is.EqualTo("\n"));
        Assert.That(matcher.Stopped, Is.False);
    }

    [Test]
    public void The_earliest_of_several_stop_strings_wins()
    {
        var matcher = new StopSequenceMatcher(["bc", "ab"]);
        Assert.That(matcher.Append("xabc"), Is.EqualTo("x"));
    }

    [Test]
    public void Eos_ids_come_from_generation_config_then_config_then_tokenizer()
    {
        Assert.That(GenerationConfig.Parse("""{"eos_token_id": 7}""").EosTokenIds, Is.EqualTo(new[] { 7 }));
        Assert.That(GenerationConfig.Parse("""{"eos_token_id": [7, 9]}""").EosTokenIds, Is.EqualTo(new[] { 7, 9 }));
        Assert.That(GenerationConfig.Parse("""{"eos_token_id": null}""").EosTokenIds, Is.Empty);
        Assert.Throws<HorizonException>(() => GenerationConfig.Parse("""{"eos_token_id": "x"}"""));

        string temp = Directory.CreateTempSubdirectory("horizon-gencfg-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(temp, "config.json"), """{"eos_token_id": [5, 6]}""");
            Assert.That(GenerationConfig.Load(temp).EosTokenIds, Is.EqualTo(new[] { 5, 6 }));
            File.WriteAllText(Path.Combine(temp, "generation_config.json"), """{"eos_token_id": 11, "do_sample": false, "max_new_tokens": 9}""");
            var config = GenerationConfig.Load(temp);
            Assert.That(config.EosTokenIds, Is.EqualTo(new[] { 11 }));
            var options = config.ToOptions();
            Assert.That(options.Temperature, Is.EqualTo(0f));
            Assert.That(options.MaxTokens, Is.EqualTo(9));
            Assert.That(options.StopTokenIds, Is.EqualTo(new[] { 11 }));

            File.WriteAllText(Path.Combine(temp, "generation_config.json"), "{}");
            File.WriteAllText(Path.Combine(temp, "config.json"), """{"eos_token_id": null}""");
            var tokenizer = Horizon.Tokenization.HorizonTokenizer.Load(Path.Combine(RepositoryPaths.Golden, "tokenizers", "small"));
            Assert.That(GenerationConfig.Load(temp, tokenizer).EosTokenIds, Is.EqualTo(new[] { 2 }));
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    [Test]
    public void Generation_config_sampling_defaults_become_options()
    {
        var options = GenerationConfig.Parse("""{"do_sample": true, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.1, "repetition_penalty": 1.05}""").ToOptions();
        Assert.That(options.Temperature, Is.EqualTo(0.7f));
        Assert.That(options.TopP, Is.EqualTo(0.8f));
        Assert.That(options.TopK, Is.EqualTo(20));
        Assert.That(options.MinP, Is.EqualTo(0.1f));
        Assert.That(options.RepetitionPenalty, Is.EqualTo(1.05f));
    }
}
