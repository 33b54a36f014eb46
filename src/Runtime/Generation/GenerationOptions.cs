namespace Horizon.Generation;

/// <summary>
/// How to pick each next token and when to stop. Sampling runs, on each step's logits z (float32, one per id):
/// <list type="number">
/// <item>repetition penalty r: for every id already in the context, z ← z / r when z &gt; 0, else z · r;</item>
/// <item>the <see cref="LogitsProcessors"/>, in order (they may mask ids with −∞ or change any logit);</item>
/// <item>greedy when <see cref="Temperature"/> ≤ 0: the id of the largest logit (the smallest id on a tie);</item>
/// <item>else temperature T: z ← z / T, p = softmax(z);</item>
/// <item>top-k: keep the k largest logits (and every id tied with the k-th);</item>
/// <item>top-p: keep the fewest most probable ids whose probabilities sum to ≥ p (always at least one);</item>
/// <item>min-p: keep the ids with p ≥ min_p · max p;</item>
/// <item>draw u ∈ [0, 1) from a SplitMix64 generator seeded with <see cref="Seed"/> and take the first kept id (in id
/// order) at which the running sum of the renormalised probabilities exceeds u.</item>
/// </list>
/// The same seed, options and prompt give the same tokens. See docs/generation.md.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Greedy decoding (temperature 0) with the other defaults.</summary>
    public static GenerationOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>Most tokens to generate (stop tokens count); default 256.</summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>Softmax temperature; 0 or less means greedy. Default 1.</summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Keep only the k most probable ids; 0 turns it off.</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus sampling threshold in (0, 1]; 1 turns it off.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Keep ids with probability ≥ MinP × the largest probability; 0 turns it off.</summary>
    public float MinP { get; init; }

    /// <summary>CTRL-style repetition penalty over the context's ids (prompt and generated); 1 turns it off.</summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Seed of the sampler; null draws a fresh seed (reported in the result).</summary>
    public ulong? Seed { get; init; }

    /// <summary>Strings that end generation; the text returned stops before the first one found.</summary>
    public IReadOnlyList<string> StopSequences { get; init; } = [];

    /// <summary>Ids that end generation (their text is not returned); null: the model's EOS ids.</summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Ids that end generation in addition to <see cref="StopTokenIds"/> (a chat format's end-of-turn token).</summary>
    public IReadOnlyList<int> ExtraStopTokenIds { get; init; } = [];

    /// <summary>Called on each step's logits after the repetition penalty, before sampling.</summary>
    public IReadOnlyList<ILogitsProcessor> LogitsProcessors { get; init; } = [];

    /// <summary>Leave special tokens (other than stop tokens, which never show) out of the text. Default true.</summary>
    public bool SkipSpecialTokens { get; init; } = true;

    /// <summary>Throws when an option is out of its range.</summary>
    public void Validate()
    {
        if (MaxTokens < 0)
            throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, "max tokens must be ≥ 0");
        if (float.IsNaN(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "temperature must be a number");
        if (TopK < 0)
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "top-k must be ≥ 0");
        if (!(TopP is > 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "top-p must be in (0, 1]");
        if (!(MinP is >= 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(MinP), MinP, "min-p must be in [0, 1]");
        if (!(RepetitionPenalty > 0))
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "repetition penalty must be > 0");
        foreach (var stop in StopSequences)
        {
            if (string.IsNullOrEmpty(stop))
                throw new ArgumentException("stop sequences must not be empty", nameof(StopSequences));
        }
    }
}

/// <summary>Why generation ended.</summary>
public enum FinishReason
{
    /// <summary>A stop token (EOS, end of turn) or a stop sequence.</summary>
    Stop,

    /// <summary><see cref="GenerationOptions.MaxTokens"/> tokens were generated.</summary>
    Length,

    /// <summary>
    /// The session's context is full: the next token would not fit in the state (the policy: generation stops
    /// here, the tokens so far are kept; a further prompt that does not fit throws <see cref="ContextFullException"/>).
    /// </summary>
    ContextFull,
}

/// <summary>Counts and timings of one generation call.</summary>
/// <param name="PromptTokens">Tokens run through the model before the first new token (the new prompt, and any tokens left pending by an earlier call).</param>
/// <param name="CachedTokens">Tokens already in the session's state, reused without recomputation.</param>
/// <param name="GeneratedTokens">Tokens generated, stop tokens included.</param>
/// <param name="PrefillTime">Wall time of the prefill.</param>
/// <param name="DecodeTime">Wall time from the end of prefill to the last token.</param>
/// <param name="Seed">The sampler's seed (drawn when none was given).</param>
public sealed record GenerationUsage(int PromptTokens, int CachedTokens, int GeneratedTokens, TimeSpan PrefillTime, TimeSpan DecodeTime, ulong Seed)
{
    /// <summary>Prompt tokens per second of prefill (0 when there was none).</summary>
    public double PrefillTokensPerSecond => PromptTokens == 0 || PrefillTime <= TimeSpan.Zero ? 0 : PromptTokens / PrefillTime.TotalSeconds;

    /// <summary>Generated tokens per second of decoding (0 when there was none).</summary>
    public double DecodeTokensPerSecond => GeneratedTokens == 0 || DecodeTime <= TimeSpan.Zero ? 0 : GeneratedTokens / DecodeTime.TotalSeconds;
}

/// <summary>
/// One item of a streamed generation: a generated token and the text it completes (possibly empty: part of a
/// character, or text held back while it may start a stop sequence), or — last, with <see cref="TokenId"/> −1 —
/// the remaining text with the <see cref="FinishReason"/> and <see cref="Usage"/>.
/// </summary>
public sealed record GenerationUpdate(int TokenId, string Text)
{
    public FinishReason? FinishReason { get; init; }
    public GenerationUsage? Usage { get; init; }

    /// <summary>True for the last update, the one with the finish reason and usage.</summary>
    public bool IsFinal => FinishReason is not null;
}

/// <summary>What a whole generation produced.</summary>
public sealed record GenerationResult(string Text, IReadOnlyList<int> Tokens, FinishReason FinishReason, GenerationUsage Usage);

/// <summary>A prompt that does not fit in the room a session has left.</summary>
public sealed class ContextFullException : HorizonException
{
    public ContextFullException(string message) : base(message) { }
}
