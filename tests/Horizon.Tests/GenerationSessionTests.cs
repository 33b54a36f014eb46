using Horizon.Generation;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// Sessions on the random-weight qwen2-bias-tied model with the small tokenizer: chunked prefill, streaming,
/// seeds, stops, the context-full policy, cancellation, reuse of a session across calls, and disposal.
/// </summary>
public class GenerationSessionTests
{
    private HorizonModel _model = null!;

    [OneTimeSetUp]
    public void Load() => _model = GenerationTestModel.Load();

    [OneTimeTearDown]
    public void Unload() => _model.Dispose();

    private const string Prompt = "In the beginning God created the heaven and the earth. And the earth was without form";

    private static async Task<List<GenerationUpdate>> Collect(IAsyncEnumerable<GenerationUpdate> updates, CancellationToken token = default)
    {
        var list = new List<GenerationUpdate>();
        await foreach (var update in updates.WithCancellation(token))
            list.Add(update);
        return list;
    }

    [Test]
    public void The_facade_loads_model_tokenizer_and_generation_config()
    {
        Assert.That(_model.Model.Info.Architecture, Is.EqualTo("Qwen2ForCausalLM"));
        Assert.That(_model.Tokenizer.Kind, Is.EqualTo("byte-level BPE"));
        Assert.That(_model.GenerationConfig.EosTokenIds, Is.EqualTo(new[] { 2, 0 }));
        Assert.That(_model.GenerationConfig.Temperature, Is.EqualTo(0.7f));
        Assert.That(_model.ContextLength, Is.EqualTo(1024));
        Assert.That(_model.ChatFormat.Name, Is.EqualTo("chatml"));
    }

    [TestCase(1)]
    [TestCase(7)]
    [TestCase(16)]
    public void Chunked_prefill_equals_one_shot_prefill(int chunk)
    {
        var ids = _model.Tokenizer.Encode(Prompt);
        Assert.That(ids.Count, Is.GreaterThan(16));
        using var oneShot = _model.CreateSession(prefillChunkSize: 4096);
        using var chunked = _model.CreateSession(prefillChunkSize: chunk);
        oneShot.Append(ids);
        chunked.Append(ids);
        var progress = new List<PrefillProgress>();
        oneShot.Prefill();
        chunked.Prefill(new SyncProgress<PrefillProgress>(progress.Add));
        Assert.That(chunked.NextTokenLogits.ToArray(), Is.EqualTo(oneShot.NextTokenLogits.ToArray()).Within(1e-4));
        Assert.That(progress.Count, Is.EqualTo((ids.Count + chunk - 1) / chunk));
        Assert.That(progress[^1], Is.EqualTo(new PrefillProgress(ids.Count, ids.Count)));
        // Logits the model gives in one Forward over the whole prompt.
        var state = _model.Model.CreateState(ids.Count);
        var all = new float[ids.Count * _model.Model.VocabSize];
        _model.Model.Forward(ids.ToArray(), state, all);
        Assert.That(chunked.NextTokenLogits.ToArray(), Is.EqualTo(all[^_model.Model.VocabSize..]).Within(1e-4));
    }

    [Test]
    public async Task Greedy_continuations_are_the_same_whatever_the_chunk_size()
    {
        using var a = _model.CreateSession(prefillChunkSize: 3);
        using var b = _model.CreateSession(prefillChunkSize: 512);
        var ra = await a.GenerateTextAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 12 });
        var rb = await b.GenerateTextAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 12 });
        Assert.That(ra.Tokens, Is.EqualTo(rb.Tokens));
    }

    [Test]
    public async Task Streamed_text_is_the_decoding_of_the_streamed_tokens_and_usage_counts_them()
    {
        using var session = _model.CreateSession();
        var options = new GenerationOptions { Temperature = 1f, Seed = 5, MaxTokens = 20, StopTokenIds = [] };
        var updates = await Collect(session.GenerateAsync(Prompt, options));
        var final = updates[^1];
        Assert.That(final.IsFinal, Is.True);
        Assert.That(updates[..^1].All(u => !u.IsFinal && u.TokenId >= 0), Is.True);
        var tokens = updates[..^1].Select(u => u.TokenId).ToArray();
        Assert.That(tokens, Has.Length.EqualTo(20));
        Assert.That(final.FinishReason, Is.EqualTo(FinishReason.Length));
        Assert.That(string.Concat(updates.Select(u => u.Text)), Is.EqualTo(_model.Tokenizer.Decode(tokens, skipSpecialTokens: true)));
        var usage = final.Usage!;
        int promptTokens = _model.Tokenizer.Encode(Prompt).Count;
        Assert.That(usage.PromptTokens, Is.EqualTo(promptTokens));
        Assert.That(usage.CachedTokens, Is.Zero);
        Assert.That(usage.GeneratedTokens, Is.EqualTo(20));
        Assert.That(usage.Seed, Is.EqualTo(5UL));
        Assert.That(usage.PrefillTokensPerSecond, Is.GreaterThan(0));
        Assert.That(usage.DecodeTokensPerSecond, Is.GreaterThan(0));
        Assert.That(session.Tokens.Count, Is.EqualTo(promptTokens + 20));
        Assert.That(session.CachedLength, Is.EqualTo(promptTokens + 19), "the last token waits for the next call");
        Assert.That(tokens.All(t => t < _model.Tokenizer.VocabSize), Is.True, "ids the tokenizer lacks are never drawn");
    }

    [Test]
    public async Task The_same_seed_gives_the_same_text()
    {
        var options = new GenerationOptions { Temperature = 1.2f, TopK = 50, TopP = 0.95f, Seed = 1234, MaxTokens = 24, StopTokenIds = [] };
        using var a = _model.CreateSession();
        using var b = _model.CreateSession();
        var ra = await a.GenerateTextAsync(Prompt, options);
        var rb = await b.GenerateTextAsync(Prompt, options);
        Assert.That(rb.Tokens, Is.EqualTo(ra.Tokens));
        Assert.That(rb.Text, Is.EqualTo(ra.Text));
        using var c = _model.CreateSession();
        var rc = await c.GenerateTextAsync(Prompt, options with { Seed = 4321 });
        Assert.That(rc.Tokens, Is.Not.EqualTo(ra.Tokens));
    }

    [Test]
    public async Task A_stop_token_ends_generation_and_its_text_is_not_returned()
    {
        using var probe = _model.CreateSession();
        var free = await probe.GenerateTextAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 6, StopTokenIds = [] });
        int third = free.Tokens[2];
        using var session = _model.CreateSession();
        var stopped = await session.GenerateTextAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 6, StopTokenIds = [third] });
        int at = free.Tokens.ToList().IndexOf(third);
        Assert.That(stopped.FinishReason, Is.EqualTo(FinishReason.Stop));
        Assert.That(stopped.Tokens, Is.EqualTo(free.Tokens.Take(at).ToArray()));
        Assert.That(stopped.Usage.GeneratedTokens, Is.EqualTo(at + 1), "the stop token counts as generated");
        Assert.That(stopped.Text, Is.EqualTo(_model.Tokenizer.Decode(free.Tokens.Take(at), skipSpecialTokens: true)));
    }

    [Test]
    public async Task A_stop_sequence_cuts_the_text_where_it_starts_even_across_tokens()
    {
        using var probe = _model.CreateSession();
        var free = await probe.GenerateTextAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 40, StopTokenIds = [] });
        Assert.That(free.Text.Length, Is.GreaterThan(12), "greedy text of the random model");
        // A stop string that spans token boundaries: three characters around the middle of the text.
        string stop = free.Text.Substring(free.Text.Length / 2, 3);
        int cut = free.Text.IndexOf(stop, StringComparison.Ordinal);
        using var session = _model.CreateSession();
        var stopped = await session.GenerateTextAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 40, StopTokenIds = [], StopSequences = [stop] });
        Assert.That(stopped.FinishReason, Is.EqualTo(FinishReason.Stop));
        Assert.That(stopped.Text, Is.EqualTo(free.Text[..cut]));
    }

    [Test]
    public async Task A_follow_up_only_prefills_its_own_tokens_and_equals_recomputing_from_scratch()
    {
        using var session = _model.CreateSession();
        var first = await session.GenerateTextAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 5, StopTokenIds = [] });
        int before = session.Tokens.Count;
        var followUp = _model.Tokenizer.Encode(" And God said");
        var updates = await Collect(session.GenerateAsync(followUp, GenerationOptions.Greedy with { MaxTokens = 8, StopTokenIds = [] }));
        var usage = updates[^1].Usage!;
        Assert.That(usage.CachedTokens, Is.EqualTo(before - 1));
        Assert.That(usage.PromptTokens, Is.EqualTo(followUp.Count + 1), "the new tokens and the one left pending");

        // The same tokens in a fresh session, all at once.
        var all = session.Tokens.Take(before + followUp.Count).ToArray();
        using var fresh = _model.CreateSession();
        var again = await Collect(fresh.GenerateAsync(all, GenerationOptions.Greedy with { MaxTokens = 8, StopTokenIds = [] }));
        Assert.That(updates[..^1].Select(u => u.TokenId), Is.EqualTo(again[..^1].Select(u => u.TokenId)));
        Assert.That(first.Tokens, Has.Count.EqualTo(5));
    }

    [Test]
    public async Task When_the_context_is_full_generation_stops_with_ContextFull_and_a_prompt_that_does_not_fit_throws()
    {
        var ids = _model.Tokenizer.Encode(Prompt);
        int capacity = ids.Count + 4;
        using var session = _model.CreateSession(capacity: capacity);
        var result = await session.GenerateTextAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 100, StopTokenIds = [] });
        Assert.That(result.FinishReason, Is.EqualTo(FinishReason.ContextFull));
        Assert.That(result.Tokens, Has.Count.EqualTo(5), "4 tokens fill the state, a 5th comes from the last logits");
        Assert.That(session.CachedLength, Is.EqualTo(capacity));

        using var small = _model.CreateSession(capacity: 8);
        var e = Assert.ThrowsAsync<ContextFullException>(async () => await small.GenerateTextAsync(Prompt));
        Assert.That(e!.Message, Does.Contain("does not fit"));
        Assert.That(small.Tokens, Is.Empty, "nothing was added");
        Assert.That(small.CachedLength, Is.Zero);
    }

    [Test]
    public async Task Cancellation_stops_generation_and_leaves_a_usable_session()
    {
        using var session = _model.CreateSession();
        using var cts = new CancellationTokenSource();
        int seen = 0;
        Assert.ThrowsAsync(Is.InstanceOf<OperationCanceledException>(), async () =>
        {
            await foreach (var update in session.GenerateAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 50, StopTokenIds = [] }, null, cts.Token))
            {
                if (++seen == 3)
                    cts.Cancel();
            }
        });
        Assert.That(seen, Is.EqualTo(3));
        int kept = session.Tokens.Count;
        var next = await session.GenerateTextAsync(" more", GenerationOptions.Greedy with { MaxTokens = 2, StopTokenIds = [] });
        Assert.That(next.Tokens, Has.Count.EqualTo(2));
        Assert.That(session.Tokens.Count, Is.EqualTo(kept + _model.Tokenizer.Encode(" more").Count + 2));
    }

    [Test]
    public void One_generation_at_a_time_and_disposed_sessions_refuse_work()
    {
        var session = _model.CreateSession();
        var enumerator = session.GenerateAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 3 }).GetAsyncEnumerator();
        Assert.That(enumerator.MoveNextAsync().AsTask().Result, Is.True);
        Assert.Throws<InvalidOperationException>(() => session.Append([1, 2]));
        enumerator.DisposeAsync().AsTask().Wait();
        session.Append([1, 2]);
        session.Dispose();
        Assert.Throws<ObjectDisposedException>(() => session.Append([1]));
        Assert.Throws<ObjectDisposedException>(() => _ = session.State);
        session.Dispose();
    }

    [Test]
    public void Bad_prompts_are_refused_before_anything_changes()
    {
        using var session = _model.CreateSession();
        var e = Assert.Throws<HorizonException>(() => session.Append([1, 999]));
        Assert.That(e!.Message, Does.Contain("999").And.Contain("[0, 320)"));
        Assert.That(session.Tokens, Is.Empty);
        Assert.ThrowsAsync<HorizonException>(async () => await session.GenerateTextAsync(""));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.GenerateAsync([1], new GenerationOptions { TopP = 2 }));
    }

    [Test]
    public async Task Defaults_come_from_generation_config_when_no_options_are_given()
    {
        using var session = _model.CreateSession();
        var result = await session.GenerateTextAsync(Prompt, new GenerationOptions { MaxTokens = 3, Seed = 9 });
        Assert.That(result.Usage.GeneratedTokens, Is.LessThanOrEqualTo(3));
        // With no options: generation_config.json's sampling settings and its EOS ids [2, 0].
        using var other = _model.CreateSession();
        var updates = await Collect(other.GenerateAsync(Prompt));
        Assert.That(updates[^1].FinishReason, Is.AnyOf(FinishReason.Stop, FinishReason.Length));
        Assert.That(updates[..^1].Select(u => u.TokenId), Has.None.AnyOf(2, 0));
    }

    [Test]
    public async Task The_facade_generates_in_one_call()
    {
        var result = await _model.GenerateAsync(Prompt, GenerationOptions.Greedy with { MaxTokens = 4, StopTokenIds = [] });
        Assert.That(result.Tokens, Has.Count.EqualTo(4));
        Assert.That(result.Usage.PromptTokens, Is.EqualTo(_model.Tokenizer.Encode(Prompt).Count));
    }

    /// <summary>IProgress that reports on the calling thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
