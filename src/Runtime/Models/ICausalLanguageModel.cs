namespace Horizon;

/// <summary>
/// A decoder-only language model generated from a spec. <see cref="Forward"/> appends tokens to a state (the
/// per-layer caches) and writes one row of logits per token.
/// </summary>
public interface ICausalLanguageModel : IDisposable
{
    /// <summary>Architecture name (the <c>architectures</c> entry of config.json), sizes, parameter count and dtypes.</summary>
    ModelInfo Info { get; }

    int VocabSize { get; }

    /// <summary>Creates an empty state that can hold up to <paramref name="capacity"/> tokens.</summary>
    IModelState CreateState(int capacity);

    /// <summary>
    /// Runs <paramref name="tokens"/> (n ids) after what <paramref name="state"/> already holds and writes logits
    /// [n, vocab] row-major into <paramref name="logits"/>. Ids out of range throw before any state changes.
    /// </summary>
    void Forward(ReadOnlySpan<int> tokens, IModelState state, Span<float> logits);
}

/// <summary>The per-session state of a model: caches of every layer and how many tokens they hold.</summary>
public interface IModelState
{
    /// <summary>Number of tokens the state has seen.</summary>
    int Length { get; }

    /// <summary>Most tokens the state can hold.</summary>
    int Capacity { get; }

    /// <summary>Forgets every token.</summary>
    void Reset();
}

/// <summary>What <c>horizon inspect</c> shows about a loaded model.</summary>
public sealed record ModelInfo(
    string Architecture,
    string SpecName,
    IReadOnlyList<KeyValuePair<string, string>> Sizes,
    long ParameterCount,
    IReadOnlyDictionary<string, long> ParametersByDType);
