using System.Text.Json;
using Horizon.Chat;
using Horizon.Tokenization;
using Microsoft.Extensions.AI;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// Chat formats against transformers' Jinja renders of the same templates, and the IChatClient driven as
/// Microsoft.Extensions.AI consumers drive one (ChatClientBuilder pipeline, history lists, streaming,
/// ConversationId), on the random-weight test model.
/// </summary>
public class ChatTests
{
    private HorizonModel _model = null!;

    [OneTimeSetUp]
    public void Load() => _model = GenerationTestModel.Load();

    [OneTimeTearDown]
    public void Unload() => _model.Dispose();

    private static string Golden(params string[] parts) => Path.Combine([RepositoryPaths.Golden, "tokenizers", .. parts]);

    [TestCase("chatml")]
    [TestCase("llama3")]
    public void Formats_render_as_the_jinja_templates_do(string name)
    {
        using var json = JsonDocument.Parse(File.ReadAllBytes(Golden("chat", "expected.json")));
        var entry = json.RootElement.GetProperty("templates").GetProperty(name);
        var tokenizer = HorizonTokenizer.Load(Golden(entry.GetProperty("tokenizer").GetString()!));
        var format = ChatFormat.FromTemplate(entry.GetProperty("chat_template").GetString(), tokenizer);
        Assert.That(format.Name, Is.EqualTo(name));
        int count = 0;
        foreach (var render in entry.GetProperty("renders").EnumerateArray())
        {
            var turns = render.GetProperty("messages").EnumerateArray()
                .Select(m => new ChatTurn(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToArray();
            string text = format.Render(turns, render.GetProperty("add_generation_prompt").GetBoolean());
            Assert.That(text, Is.EqualTo(render.GetProperty("text").GetString()), $"render {count}");
            var ids = render.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.That(tokenizer.Encode(text), Is.EqualTo(ids), $"ids of render {count}");
            count++;
        }
        Assert.That(count, Is.EqualTo(8));
    }

    [TestCase("chatml")]
    [TestCase("llama3")]
    [TestCase("plain")]
    public void A_continuation_after_a_closed_assistant_turn_equals_rendering_the_whole_conversation(string name)
    {
        var format = name switch { "chatml" => ChatFormat.ChatMl("Be brief."), "llama3" => ChatFormat.Llama3(), _ => ChatFormat.Plain };
        var history = new[] { new ChatTurn("user", "Hi"), new ChatTurn("assistant", "Hello!") };
        var next = new[] { new ChatTurn("user", "How are you?") };
        string whole = format.Render([.. history, .. next], true);
        string prompt = format.Render(history[..1], true);
        // What the model generates after the prompt: the plain format's "Assistant:" is followed by a space in the text.
        string generated = name == "plain" ? " " + history[1].Content : history[1].Content;
        string incremental = prompt + generated + format.EndOfTurn + format.RenderContinuation(next, true);
        Assert.That(incremental, Is.EqualTo(whole));
    }

    [Test]
    public void The_default_system_prompt_of_a_chatml_template_is_used_only_without_a_system_message()
    {
        var format = _model.ChatFormat;
        Assert.That(format.Render([new ChatTurn("user", "x")], false), Does.StartWith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"));
        Assert.That(format.Render([new ChatTurn("system", "S"), new ChatTurn("user", "x")], false), Does.StartWith("<|im_start|>system\nS<|im_end|>\n<|im_start|>user"));
    }

    [Test]
    public void Unknown_templates_are_refused_with_a_clear_error_and_no_template_means_plain()
    {
        var e = Assert.Throws<HorizonException>(() => ChatFormat.FromTemplate("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}"));
        Assert.That(e!.Message, Does.Contain("unsupported chat template").And.Contain("ChatML").And.Contain("Llama 3"));
        Assert.Throws<HorizonException>(() => ChatFormat.FromTemplate("<|im_start|>{{ '<think>' }}<|im_end|>"));
        Assert.Throws<HorizonException>(() => ChatFormat.FromTemplate("<|start_header_id|>Cutting Knowledge Date<|eot_id|>"));
        Assert.That(ChatFormat.FromTemplate(null).Name, Is.EqualTo("plain"));
        Assert.That(ChatFormat.FromTemplate("  ").Name, Is.EqualTo("plain"));
    }

    private IChatClient Client(HorizonChatClientOptions? options = null) =>
        // As an app builds its client: the provider wrapped in the Microsoft.Extensions.AI pipeline.
        _model.AsChatClient(options).AsBuilder()
            .ConfigureOptions(o => o.Temperature ??= 0f)
            .UseFunctionInvocation()
            .Build();

    [Test]
    public async Task A_consumer_keeps_history_streams_and_continues_by_conversation_id()
    {
        using var client = Client();
        var options = new ChatOptions { MaxOutputTokens = 6 };
        List<ChatMessage> history = [new(ChatRole.System, "You are terse."), new(ChatRole.User, "Say hello.")];

        ChatResponse first = await client.GetResponseAsync(history, options);
        Assert.That(first.ConversationId, Is.Not.Null.And.Not.Empty);
        Assert.That(first.Messages, Has.Count.EqualTo(1));
        Assert.That(first.Messages[0].Role, Is.EqualTo(ChatRole.Assistant));
        Assert.That(first.FinishReason, Is.AnyOf(ChatFinishReason.Length, ChatFinishReason.Stop));
        Assert.That(first.Usage, Is.Not.Null);
        Assert.That(first.Usage!.CachedInputTokenCount, Is.Zero);
        Assert.That(first.Usage.OutputTokenCount, Is.InRange(1, 6));
        string prompt1 = _model.ChatFormat.Render([new ChatTurn("system", "You are terse."), new ChatTurn("user", "Say hello.")], true);
        Assert.That(first.Usage.InputTokenCount, Is.EqualTo(_model.Tokenizer.Encode(prompt1).Count));
        history.AddMessages(first);

        // Continue the conversation as stateful providers are continued: its id and only the new message.
        var followUp = new ChatMessage(ChatRole.User, "Again, please.");
        var streamed = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync([followUp], new ChatOptions { MaxOutputTokens = 6, ConversationId = first.ConversationId }))
            streamed.Add(update);
        history.Add(followUp);
        history.AddMessages(streamed);
        ChatResponse second = streamed.ToChatResponse();

        Assert.That(streamed.Select(u => u.ConversationId).Distinct(), Is.EqualTo(new[] { first.ConversationId }));
        Assert.That(second.Text, Is.EqualTo(string.Concat(streamed.Select(u => u.Text))));
        Assert.That(second.FinishReason, Is.Not.Null);
        var usage = second.Usage!;
        long cached = first.Usage.InputTokenCount!.Value + first.Usage.OutputTokenCount!.Value - 1;
        Assert.That(usage.CachedInputTokenCount, Is.EqualTo(cached), "turn 1 is reused from the state");
        string closing = first.FinishReason == ChatFinishReason.Stop ? "\n" : "<|im_end|>\n";
        int newTokens = 1 + _model.Tokenizer.Encode(closing).Count + _model.Tokenizer.Encode(_model.ChatFormat.RenderContinuation([new ChatTurn("user", "Again, please.")], true)).Count;
        Assert.That(usage.InputTokenCount - usage.CachedInputTokenCount, Is.EqualTo(newTokens), "only the new turn is prefilled");
        Assert.That(history, Has.Count.EqualTo(5));

        // The whole history with the id also works: the stored prefix is recognised.
        var third = await client.GetResponseAsync([.. history, new ChatMessage(ChatRole.User, "And once more.")], new ChatOptions { MaxOutputTokens = 3, ConversationId = first.ConversationId });
        Assert.That(third.Usage!.CachedInputTokenCount, Is.GreaterThan(usage.InputTokenCount!.Value));
    }

    [Test]
    public async Task Seeded_sampling_through_chat_options_is_reproducible_and_stop_sequences_apply()
    {
        using var client = Client();
        var options = new ChatOptions { Temperature = 1f, TopP = 0.95f, TopK = 40, Seed = 77, MaxOutputTokens = 12, AdditionalProperties = new() { ["min_p"] = 0.01f, ["repetition_penalty"] = 1.1f } };
        var a = await client.GetResponseAsync("Tell me about the earth.", options);
        var b = await client.GetResponseAsync("Tell me about the earth.", options);
        Assert.That(b.Text, Is.EqualTo(a.Text));
        Assert.That(a.ConversationId, Is.Not.EqualTo(b.ConversationId), "without a conversation id each call is a new conversation");
        Assert.That(a.Text.Length, Is.GreaterThanOrEqualTo(4));
        string stop = a.Text.Substring(2, 2);
        var c = await client.GetResponseAsync("Tell me about the earth.", new ChatOptions { Temperature = 1f, TopP = 0.95f, TopK = 40, Seed = 77, MaxOutputTokens = 12, StopSequences = [stop], AdditionalProperties = options.AdditionalProperties });
        Assert.That(c.Text, Is.EqualTo(a.Text[..a.Text.IndexOf(stop, StringComparison.Ordinal)]));
        Assert.That(c.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
    }

    [Test]
    public void Tools_and_non_text_messages_are_refused()
    {
        using var client = Client();
        var tool = AIFunctionFactory.Create(() => 42, "answer");
        Assert.ThrowsAsync<NotSupportedException>(async () => await client.GetResponseAsync("hi", new ChatOptions { Tools = [tool] }));
        var message = new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1, 2 }, "image/png")]);
        Assert.ThrowsAsync<NotSupportedException>(async () => await client.GetResponseAsync([message]));
    }

    [Test]
    public void The_client_describes_itself_and_exposes_the_model()
    {
        using var client = _model.AsChatClient(new HorizonChatClientOptions { ModelId = "test-model" });
        var metadata = client.GetService<ChatClientMetadata>();
        Assert.That(metadata!.ProviderName, Is.EqualTo("horizon"));
        Assert.That(metadata.DefaultModelId, Is.EqualTo("test-model"));
        Assert.That(client.GetService<HorizonModel>(), Is.SameAs(_model));
        Assert.That(client.GetService<HorizonChatClient>(), Is.SameAs(client));
    }

    [Test]
    public async Task Sessions_beyond_the_limit_are_freed_and_rebuilt_from_history()
    {
        var horizon = _model.AsChatClient(new HorizonChatClientOptions { MaxSessions = 1 });
        using IChatClient client = horizon;
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 3 };
        var a = await client.GetResponseAsync("first conversation", options);
        var b = await client.GetResponseAsync("second conversation", options);
        Assert.That(horizon.CachedTokens(a.ConversationId!), Is.Zero, "freed: one session at a time");
        Assert.That(horizon.CachedTokens(b.ConversationId!), Is.GreaterThan(0));
        var again = await client.GetResponseAsync("more", new ChatOptions { Temperature = 0, MaxOutputTokens = 3, ConversationId = a.ConversationId });
        Assert.That(again.Usage!.CachedInputTokenCount, Is.Zero, "rebuilt from the remembered history");
        Assert.That(again.Usage.InputTokenCount, Is.GreaterThan(a.Usage!.InputTokenCount!.Value));
    }

    [Test]
    public void Cancelling_a_streamed_response_throws_and_the_next_turn_rebuilds()
    {
        using var client = Client();
        using var cts = new CancellationTokenSource();
        Assert.ThrowsAsync(Is.InstanceOf<OperationCanceledException>(), async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync("go on", new ChatOptions { MaxOutputTokens = 40 }, cts.Token))
                cts.Cancel();
        });
    }
}
