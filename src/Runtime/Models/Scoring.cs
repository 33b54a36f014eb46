using System.Buffers;

namespace Horizon;

/// <summary>Per-token log-probabilities of a sequence: logprobs[i] = log p(tokens[i+1] | tokens[..i]).</summary>
public sealed record ScoreResult(IReadOnlyList<int> Tokens, double[] LogProbs)
{
    /// <summary>exp(−mean log-prob): the model's perplexity on the sequence.</summary>
    public double Perplexity => Math.Exp(-LogProbs.Average());
}

public static class Scoring
{
    /// <summary>
    /// Scores <paramref name="tokens"/> with a causal model. The prompt runs through the model in chunks of
    /// <paramref name="chunkSize"/> tokens (chunked prefill), so logits memory stays chunk × vocab however long
    /// the sequence is; the caches carry the context between chunks.
    /// </summary>
    public static ScoreResult Score(ICausalLanguageModel model, IReadOnlyList<int> tokens, int chunkSize = 256)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (tokens.Count < 2)
            throw new HorizonException($"scoring needs at least 2 tokens, got {tokens.Count}");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkSize);
        int vocab = model.VocabSize;
        for (int i = 0; i < tokens.Count; i++)
        {
            if ((uint)tokens[i] >= (uint)vocab)
                throw new HorizonException($"token id {tokens[i]} at position {i} is out of range [0, {vocab})");
        }

        var state = model.CreateState(tokens.Count);
        var ids = tokens.ToArray();
        var logProbs = new double[tokens.Count - 1];
        var logits = ArrayPool<float>.Shared.Rent(Math.Min(chunkSize, ids.Length) * vocab);
        try
        {
            for (int start = 0; start < ids.Length - 1; start += chunkSize)
            {
                // The last token's logits predict nothing we score, so it never needs to run.
                int count = Math.Min(chunkSize, ids.Length - 1 - start);
                model.Forward(ids.AsSpan(start, count), state, logits.AsSpan(0, count * vocab));
                for (int r = 0; r < count; r++)
                    logProbs[start + r] = LogSoftmaxAt(logits.AsSpan(r * vocab, vocab), ids[start + r + 1]);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(logits);
        }
        return new ScoreResult(ids, logProbs);
    }

    /// <summary>log softmax(logits)[target], accumulated in float64: logits[target] − max − log Σ exp(logit − max).</summary>
    public static double LogSoftmaxAt(ReadOnlySpan<float> logits, int target)
    {
        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float value in logits)
            sum += Math.Exp(value - max);
        return logits[target] - max - Math.Log(sum);
    }
}
