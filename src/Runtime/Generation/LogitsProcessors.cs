namespace Horizon.Generation;

/// <summary>What a logits processor sees at one step.</summary>
/// <param name="context">Every token of the session so far: the prompt(s), then what this call generated.</param>
/// <param name="promptLength">How many of <paramref name="context"/> came before this call's first generated token.</param>
public readonly ref struct LogitsStep(ReadOnlySpan<int> context, int promptLength)
{
    public ReadOnlySpan<int> Context { get; } = context;
    public int PromptLength { get; } = promptLength;

    /// <summary>The tokens this call generated so far.</summary>
    public ReadOnlySpan<int> Generated => Context[PromptLength..];
}

/// <summary>
/// Changes the next-token logits before sampling, once per step: mask ids with −∞ (a monitor that forbids
/// what would break a grammar or a rule), bias them, or rewrite them. Runs on the generation thread; a
/// processor that keeps state across steps belongs to one generation at a time.
/// </summary>
public interface ILogitsProcessor
{
    void Process(in LogitsStep step, Span<float> logits);
}

/// <summary>Forbids ids: their logits become −∞.</summary>
public sealed class BannedTokensProcessor(IEnumerable<int> ids) : ILogitsProcessor
{
    private readonly int[] _ids = ids.ToArray();

    public void Process(in LogitsStep step, Span<float> logits)
    {
        foreach (int id in _ids)
        {
            if ((uint)id < (uint)logits.Length)
                logits[id] = float.NegativeInfinity;
        }
    }
}

/// <summary>Allows only the ids a function returns for the step (e.g. a monitor's legal continuations); the others become −∞.</summary>
public sealed class AllowedTokensProcessor : ILogitsProcessor
{
    public delegate IReadOnlyCollection<int> AllowedIds(ReadOnlySpan<int> context, int promptLength);

    private readonly AllowedIds _allowed;

    public AllowedTokensProcessor(AllowedIds allowed) => _allowed = allowed ?? throw new ArgumentNullException(nameof(allowed));

    /// <summary>The same ids at every step.</summary>
    public AllowedTokensProcessor(IEnumerable<int> ids)
    {
        var set = ids.ToHashSet();
        _allowed = (_, _) => set;
    }

    public void Process(in LogitsStep step, Span<float> logits)
    {
        var allowed = _allowed(step.Context, step.PromptLength);
        if (allowed.Count == 0)
            throw new HorizonException("the logits processor allows no token at this step");
        var keep = new float[allowed.Count];
        int i = 0;
        foreach (int id in allowed)
            keep[i++] = (uint)id < (uint)logits.Length ? logits[id] : float.NegativeInfinity;
        logits.Fill(float.NegativeInfinity);
        i = 0;
        foreach (int id in allowed)
        {
            if ((uint)id < (uint)logits.Length)
                logits[id] = keep[i];
            i++;
        }
    }
}

/// <summary>Adds a fixed bias to the logits of some ids (OpenAI's logit_bias): z[id] ← z[id] + bias.</summary>
public sealed class LogitBiasProcessor(IReadOnlyDictionary<int, float> bias) : ILogitsProcessor
{
    public void Process(in LogitsStep step, Span<float> logits)
    {
        foreach (var (id, value) in bias)
        {
            if ((uint)id < (uint)logits.Length)
                logits[id] += value;
        }
    }
}
