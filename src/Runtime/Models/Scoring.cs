using System.Buffers;

namespace Horizon;

/// <summary>
/// Per-token log-probabilities of a sequence: logprobs[i] = log p(tokens[i+1] | tokens[..i]), or NaN where the model
/// makes no prediction (a two-level model's first block, see <see cref="IBlockModelState"/>).
/// </summary>
public sealed record ScoreResult(IReadOnlyList<int> Tokens, double[] LogProbs)
{
    /// <summary>The positions that have a log-prob (every one, except a two-level model's first block).</summary>
    public int DefinedCount => LogProbs.Count(lp => !double.IsNaN(lp));

    /// <summary>
    /// exp(−mean log-prob) over the defined positions: the model's perplexity on the sequence. Positions without a
    /// prediction (NaN) are left out rather than poisoning the mean; NaN only when no position is defined.
    /// </summary>
    public double Perplexity
    {
        get
        {
            double sum = 0;
            int defined = 0;
            foreach (double lp in LogProbs)
            {
                if (double.IsNaN(lp))
                    continue;
                sum += lp;
                defined++;
            }
            return defined == 0 ? double.NaN : Math.Exp(-sum / defined);
        }
    }
}

public static class Scoring
{
    /// <summary>
    /// Scores <paramref name="tokens"/> with a causal model. The prompt runs through the model in chunks of
    /// <paramref name="chunkSize"/> tokens (chunked prefill), so logits memory stays chunk × vocab however long
    /// the sequence is; the caches carry the context between chunks. A row of logits that is NaN (no prediction: a
    /// two-level model's first block) gives a NaN log-prob, which <see cref="ScoreResult.Perplexity"/> leaves out.
    /// </summary>
    /// <param name="model">The model; a state is created for the whole sequence.</param>
    /// <param name="tokens">At least 2 token ids.</param>
    /// <param name="chunkSize">Tokens per Forward call.</param>
    /// <param name="firstBlockPadding">For a two-level model (<see cref="IBlockModelState"/>): the pad tokens P before
    /// token 0; null: the state's default (L − 1, which defines every log-prob). Any other model refuses a value.</param>
    public static ScoreResult Score(ICausalLanguageModel model, IReadOnlyList<int> tokens, int chunkSize = 256, int? firstBlockPadding = null)
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
        if (firstBlockPadding is int padding)
        {
            if (state is not IBlockModelState blocks)
                throw new ArgumentException($"{model.GetType().Name} is not a two-level model: it has no first-block padding", nameof(firstBlockPadding));
            try
            {
                blocks.Reset(padding);
            }
            catch (ArgumentOutOfRangeException e)
            {
                // The padding comes from the caller's input (e.g. horizon score --first-block-padding): report it as bad input.
                throw new HorizonException($"first-block padding {padding}: {e.Message.Split(" (Parameter")[0]}");
            }
        }
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
                {
                    var row = logits.AsSpan(r * vocab, vocab);
                    logProbs[start + r] = float.IsNaN(row[0]) ? double.NaN : LogSoftmaxAt(row, ids[start + r + 1]);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(logits);
            // A device state (CUDA) holds device memory the GC does not see: give it back now.
            (state as IDisposable)?.Dispose();
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
