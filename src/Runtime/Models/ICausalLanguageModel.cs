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

/// <summary>
/// A model that can leave out the logits of every row but the last: what generation needs after a prefill chunk
/// (the next token's distribution). On CUDA it runs the output head on one row and copies one row back instead of
/// (rows, vocab). <see cref="InferenceSession"/> uses it when the model has it.
/// </summary>
public interface ILastLogitsModel : ICausalLanguageModel
{
    /// <summary>As <see cref="ICausalLanguageModel.Forward"/>, but writes only the last token's logits (vocab floats).</summary>
    void ForwardLast(ReadOnlySpan<int> tokens, IModelState state, Span<float> lastLogits);
}

/// <summary>
/// A model that picks the next token where its logits are (the CUDA backend): greedy, or temperature with top-p, the
/// CPU <see cref="Horizon.Generation.Sampler"/>'s exact rule given the same uniform draw; one id comes back instead of a row of
/// logits. <see cref="InferenceSession"/> uses it when the options ask for nothing else (no top-k, min-p,
/// repetition penalty or logits processors).
/// </summary>
public interface IDeviceSamplingModel : ILastLogitsModel
{
    /// <summary>The largest vocabulary the device sampler takes.</summary>
    int MaxSamplingVocab { get; }

    /// <summary>
    /// Runs <paramref name="tokens"/> after <paramref name="state"/> and returns the next id drawn from the last row:
    /// the argmax when <paramref name="temperature"/> ≤ 0, else the top-p nucleus of softmax(z / T) at
    /// <paramref name="uniform"/> ∈ [0, 1) (the value <see cref="Horizon.Generation.SplitMix64.NextDouble"/> gives the CPU sampler).
    /// </summary>
    /// <exception cref="HorizonException">Every logit of the row is −∞ or NaN.</exception>
    int ForwardAndSample(ReadOnlySpan<int> tokens, IModelState state, float temperature, float topP, double uniform);
}

