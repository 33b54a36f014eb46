using System.Globalization;
using System.Runtime.CompilerServices;
using Horizon.Generation;
using Microsoft.Extensions.AI;

namespace Horizon.Chat;

/// <summary>Settings of a <see cref="HorizonChatClient"/>.</summary>
public sealed record HorizonChatClientOptions
{
    /// <summary>Conversations whose session (state) is kept; the least recently used beyond this is freed (its history is kept and re-prefilled if it comes back).</summary>
    public int MaxSessions { get; init; } = 4;

    /// <summary>Conversations whose history is remembered at all; the oldest beyond this is forgotten.</summary>
    public int MaxConversations { get; init; } = 1024;

    /// <summary>Context capacity of each conversation's session; null: the model's default (<see cref="HorizonModel.CreateSession"/>).</summary>
    public int? Capacity { get; init; }

    /// <summary>Generation settings under the per-call <see cref="ChatOptions"/>, in place of the model's generation_config.json defaults (null: those).</summary>
    public GenerationOptions? DefaultOptions { get; init; }

    /// <summary>The chat format; null: from the tokenizer's chat template.</summary>
    public ChatFormat? Format { get; init; }

    /// <summary>The id reported as <see cref="ChatResponse.ModelId"/>; null: the model directory's name.</summary>
    public string? ModelId { get; init; }
}

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="HorizonModel"/>. Every response carries a
/// <see cref="ChatResponse.ConversationId"/>; a call that passes it back in <see cref="ChatOptions.ConversationId"/>
/// continues that conversation's session: the state already holds the earlier turns, so only the new messages
/// are prefilled (pass just the new messages, or the whole history: a history that starts with the stored one is
/// recognised). A call without it starts a new conversation from the messages given.
/// <para>
/// ChatOptions used: Temperature, TopP, TopK, MaxOutputTokens, StopSequences, Seed, Instructions (a system
/// message at the start of a conversation), and AdditionalProperties <c>min_p</c> and <c>repetition_penalty</c>.
/// Tools are refused (<see cref="NotSupportedException"/>); messages must be text.
/// </para>
/// </summary>
public sealed class HorizonChatClient : IChatClient
{
    private readonly HorizonModel _model;
    private readonly HorizonChatClientOptions _options;
    private readonly Dictionary<string, Conversation> _conversations = new(StringComparer.Ordinal);
    private readonly ChatClientMetadata _metadata;
    private long _clock;
    private bool _disposed;

    public HorizonChatClient(HorizonModel model, HorizonChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _options = options ?? new HorizonChatClientOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.MaxSessions);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.MaxConversations);
        Format = _options.Format ?? model.ChatFormat;
        ModelId = _options.ModelId ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(model.Directory)));
        _metadata = new ChatClientMetadata("horizon", null, ModelId);
    }

    public ChatFormat Format { get; }

    public string ModelId { get; }

    /// <summary>Tokens held by the session of conversation <paramref name="conversationId"/> (0 when it has none).</summary>
    public int CachedTokens(string conversationId)
    {
        lock (_conversations)
            return _conversations.TryGetValue(conversationId, out var c) && c.Session is { } s ? s.Tokens.Count : 0;
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
            updates.Add(update);
        return updates.ToChatResponse();
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (options?.Tools is { Count: > 0 })
            throw new NotSupportedException("Horizon's chat client does not call tools; remove ChatOptions.Tools");
        var turns = messages.Select(ToTurn).ToList();
        var generation = ToGenerationOptions(options);

        var conversation = Resolve(options?.ConversationId);
        await conversation.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var newTurns = conversation.History.Count > 0 && StartsWith(turns, conversation.History) ? turns.Skip(conversation.History.Count).ToList() : turns;
            if (newTurns.Count == 0)
                throw new ArgumentException("no new message to respond to", nameof(messages));
            if (conversation.History.Count == 0 && !string.IsNullOrWhiteSpace(options?.Instructions) && newTurns[0].Role != "system")
                newTurns.Insert(0, new ChatTurn("system", options!.Instructions!));

            string prompt;
            var session = conversation.Session;
            if (session is null)
            {
                session = conversation.Session = _model.CreateSession(_options.Capacity);
                prompt = Format.Render([.. conversation.History, .. newTurns], addGenerationPrompt: true);
                Touch(conversation);
            }
            else
            {
                prompt = Format.RenderContinuation(newTurns, addGenerationPrompt: true);
                Touch(conversation);
            }

            string responseId = "hz-" + Guid.NewGuid().ToString("N");
            string messageId = "hz-msg-" + Guid.NewGuid().ToString("N");
            var created = DateTimeOffset.UtcNow;
            var text = new System.Text.StringBuilder();
            GenerationUpdate? final = null;
            bool completed = false;
            try
            {
                // The rendered text carries its own special tokens (a Llama 3 BOS): encode it as it is.
                var promptIds = _model.Tokenizer.Encode(prompt);
                await foreach (var update in session.GenerateAsync(promptIds, generation, null, cancellationToken).ConfigureAwait(false))
                {
                    if (update.IsFinal)
                    {
                        final = update;
                        text.Append(update.Text);
                        if (update.Text.Length > 0)
                            yield return Update(update.Text, update);
                        break;
                    }
                    if (update.Text.Length == 0)
                        continue;
                    text.Append(update.Text);
                    yield return Update(update.Text, update);
                }
                completed = final is not null;
            }
            finally
            {
                if (!completed)
                {
                    // Cancelled or failed mid-turn: the state no longer matches the history; rebuild it next time.
                    session.Dispose();
                    conversation.Session = null;
                }
            }

            var usage = final!.Usage!;
            CloseTurn(conversation, session, usage, final.FinishReason!.Value);
            conversation.History.AddRange(newTurns);
            conversation.History.Add(new ChatTurn("assistant", text.ToString()));

            var details = new UsageDetails
            {
                InputTokenCount = usage.CachedTokens + usage.PromptTokens,
                CachedInputTokenCount = usage.CachedTokens,
                OutputTokenCount = usage.GeneratedTokens,
                TotalTokenCount = usage.CachedTokens + usage.PromptTokens + usage.GeneratedTokens,
            };
            var last = new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(details)])
            {
                RawRepresentation = final,
                ConversationId = conversation.Id,
                ResponseId = responseId,
                MessageId = messageId,
                CreatedAt = created,
                ModelId = ModelId,
                FinishReason = final.FinishReason == FinishReason.Stop ? ChatFinishReason.Stop : ChatFinishReason.Length,
                AdditionalProperties = new AdditionalPropertiesDictionary
                {
                    ["horizon.finish_reason"] = final.FinishReason.ToString()!.ToLowerInvariant(),
                    ["horizon.prefill_tokens_per_second"] = usage.PrefillTokensPerSecond,
                    ["horizon.decode_tokens_per_second"] = usage.DecodeTokensPerSecond,
                    ["horizon.seed"] = usage.Seed.ToString(CultureInfo.InvariantCulture),
                },
            };
            yield return last;

            // RawRepresentation: the session's GenerationUpdate (token id and text).
            ChatResponseUpdate Update(string piece, GenerationUpdate raw) => new(ChatRole.Assistant, piece)
            {
                RawRepresentation = raw,
                ConversationId = conversation.Id,
                ResponseId = responseId,
                MessageId = messageId,
                CreatedAt = created,
                ModelId = ModelId,
            };
        }
        finally
        {
            conversation.Gate.Release();
        }
    }

    /// <summary>
    /// Ends the assistant turn in the session as the template writes it, so the next turn's text follows on:
    /// after a generated end-of-turn token only the rest of <see cref="ChatFormat.EndOfTurn"/> is added. The tokens
    /// are run with the next turn's prompt. A session with no room for them is freed (rebuilt from history).
    /// </summary>
    private void CloseTurn(Conversation conversation, InferenceSession session, GenerationUsage usage, FinishReason finish)
    {
        string closing = Format.EndOfTurn;
        var tokens = session.Tokens;
        if (finish == FinishReason.Stop && usage.GeneratedTokens > 0 && tokens.Count > 0)
        {
            string? last = _model.Tokenizer.IdToToken(tokens[^1]);
            if (last is not null && Format.StopTokens.Contains(last) && closing.StartsWith(last, StringComparison.Ordinal))
                closing = closing[last.Length..];
        }
        if (closing.Length == 0)
            return;
        var ids = _model.Tokenizer.Encode(closing);
        if (ids.Count <= session.RoomLeft)
        {
            session.Append(ids);
        }
        else
        {
            session.Dispose();
            conversation.Session = null;
        }
    }

    private GenerationOptions ToGenerationOptions(ChatOptions? options)
    {
        var generation = _options.DefaultOptions is { } given
            ? given with { StopTokenIds = given.StopTokenIds ?? _model.GenerationConfig.EosTokenIds }
            : _model.GenerationConfig.ToOptions();
        var stopIds = Format.StopTokens.Select(t => _model.Tokenizer.TokenToId(t)).OfType<int>().ToArray();
        generation = generation with { ExtraStopTokenIds = [.. generation.ExtraStopTokenIds, .. stopIds] };
        var stops = new List<string>(generation.StopSequences);
        stops.AddRange(Format.StopSequences);
        if (options is not null)
        {
            if (options.Temperature is float t)
                generation = generation with { Temperature = t };
            if (options.TopP is float p)
                generation = generation with { TopP = p };
            if (options.TopK is int k)
                generation = generation with { TopK = k };
            if (options.MaxOutputTokens is int max)
                generation = generation with { MaxTokens = max };
            if (options.Seed is long seed)
                generation = generation with { Seed = unchecked((ulong)seed) };
            if (options.StopSequences is { } extra)
                stops.AddRange(extra);
            if (options.AdditionalProperties is { } properties)
            {
                if (properties.TryGetValue("min_p", out float minP))
                    generation = generation with { MinP = minP };
                if (properties.TryGetValue("repetition_penalty", out float penalty))
                    generation = generation with { RepetitionPenalty = penalty };
            }
        }
        generation = generation with { StopSequences = stops };
        generation.Validate();
        return generation;
    }

    private static ChatTurn ToTurn(ChatMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        foreach (var content in message.Contents)
        {
            if (content is not (TextContent or UsageContent or TextReasoningContent))
                throw new NotSupportedException($"Horizon's chat client reads text messages only; a {message.Role} message holds {content.GetType().Name}");
        }
        return new ChatTurn(message.Role.Value, message.Text);
    }

    private static bool StartsWith(List<ChatTurn> turns, List<ChatTurn> prefix)
    {
        if (turns.Count < prefix.Count)
            return false;
        for (int i = 0; i < prefix.Count; i++)
        {
            if (turns[i] != prefix[i])
                return false;
        }
        return true;
    }

    private Conversation Resolve(string? id)
    {
        lock (_conversations)
        {
            if (id is not null && _conversations.TryGetValue(id, out var known))
                return known;
            var conversation = new Conversation(id ?? "hz-conv-" + Guid.NewGuid().ToString("N"));
            _conversations[conversation.Id] = conversation;
            conversation.LastUsed = ++_clock;
            while (_conversations.Count > _options.MaxConversations)
            {
                var oldest = _conversations.Values.Where(c => c.Gate.CurrentCount == 1).MinBy(c => c.LastUsed);
                if (oldest is null)
                    break;
                oldest.Session?.Dispose();
                _conversations.Remove(oldest.Id);
            }
            return conversation;
        }
    }

    /// <summary>Marks a conversation used and frees the least recently used idle sessions beyond <see cref="HorizonChatClientOptions.MaxSessions"/>.</summary>
    private void Touch(Conversation conversation)
    {
        lock (_conversations)
        {
            conversation.LastUsed = ++_clock;
            var withSessions = _conversations.Values.Where(c => c.Session is not null).ToList();
            foreach (var idle in withSessions.Where(c => c != conversation && c.Gate.CurrentCount == 1).OrderBy(c => c.LastUsed))
            {
                if (withSessions.Count <= _options.MaxSessions)
                    break;
                idle.Session!.Dispose();
                idle.Session = null;
                withSessions.Remove(idle);
            }
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
            return null;
        if (serviceType == typeof(ChatClientMetadata))
            return _metadata;
        if (serviceType == typeof(HorizonModel))
            return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Frees every conversation's session; the model is not disposed (it is the caller's).</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        lock (_conversations)
        {
            foreach (var conversation in _conversations.Values)
            {
                if (conversation.Gate.CurrentCount == 1)
                    conversation.Session?.Dispose();
                conversation.Session = null;
            }
            _conversations.Clear();
        }
    }

    private sealed class Conversation(string id)
    {
        public string Id { get; } = id;
        public InferenceSession? Session { get; set; }
        public List<ChatTurn> History { get; } = [];
        public SemaphoreSlim Gate { get; } = new(1, 1);
        public long LastUsed { get; set; }
    }
}
