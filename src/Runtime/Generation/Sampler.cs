using System.Numerics.Tensors;

namespace Horizon.Generation;

/// <summary>
/// SplitMix64: a small, fast generator whose sequence depends only on the seed (not on the .NET version), so a
/// seed gives the same text everywhere.
/// </summary>
public sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}

/// <summary>Picks next tokens from logits by the steps of <see cref="GenerationOptions"/> (see there for the equations).</summary>
public sealed class Sampler
{
    private readonly GenerationOptions _options;
    private readonly SplitMix64 _random;
    private float[] _work = [];
    private int[] _order = [];
    private float[] _keys = [];
    private HashSet<int>? _seen;

    public Sampler(GenerationOptions options, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _random = new SplitMix64(seed);
        Seed = seed;
    }

    public ulong Seed { get; }

    /// <summary>
    /// Whether a device sampler can make this sampler's choices (<see cref="IDeviceSamplingModel"/>): temperature and
    /// top-p only, no top-k, min-p, repetition penalty or logits processors.
    /// </summary>
    public bool DeviceCompatible => _options.TopK == 0 && _options.MinP == 0 && _options.RepetitionPenalty == 1f && _options.LogitsProcessors.Count == 0;

    /// <summary>
    /// The uniform draw <see cref="Sample"/> would make for this step (none at temperature ≤ 0, where it takes the
    /// argmax): for a device sampler, so that a seed gives the same text on either side.
    /// </summary>
    public double NextUniform() => _options.Temperature <= 0 ? 0 : _random.NextDouble();

    /// <summary>The options' temperature and top-p, for a device sampler.</summary>
    public (float Temperature, float TopP) DeviceParameters => (_options.Temperature, _options.TopP);

    /// <summary>
    /// Picks the next id. <paramref name="logits"/> (one row, vocab wide) is changed in place by the penalty and
    /// processors; <paramref name="context"/> is every token so far, the first <paramref name="promptLength"/> of
    /// them before this generation.
    /// </summary>
    public int Sample(Span<float> logits, ReadOnlySpan<int> context, int promptLength)
    {
        if (_options.RepetitionPenalty != 1f)
            ApplyRepetitionPenalty(logits, context, _options.RepetitionPenalty, _seen ??= []);
        if (_options.LogitsProcessors.Count > 0)
        {
            var step = new LogitsStep(context, promptLength);
            foreach (var processor in _options.LogitsProcessors)
                processor.Process(in step, logits);
        }
        if (_options.Temperature <= 0)
            return ArgMax(logits);
        return Draw(logits);
    }

    /// <summary>z ← z / r for z &gt; 0, else z · r, once for each distinct id of <paramref name="context"/>.</summary>
    public static void ApplyRepetitionPenalty(Span<float> logits, ReadOnlySpan<int> context, float penalty, HashSet<int>? scratch = null)
    {
        var seen = scratch ?? [];
        seen.Clear();
        foreach (int id in context)
        {
            if ((uint)id >= (uint)logits.Length || !seen.Add(id))
                continue;
            float z = logits[id];
            logits[id] = z > 0 ? z / penalty : z * penalty;
        }
    }

    /// <summary>The id of the largest logit, the smallest id on a tie; throws when every id is −∞ or NaN.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = -1;
        float max = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] > max)
            {
                max = logits[i];
                best = i;
            }
        }
        if (best < 0)
            throw new HorizonException("every token id is masked (all logits are −∞ or NaN): nothing to pick");
        return best;
    }

    /// <summary>
    /// The probabilities sampling draws from after temperature, top-k, top-p and min-p (zeros for removed ids,
    /// the rest renormalised to sum 1), written to <paramref name="probabilities"/>. Public so tests can check the
    /// equations; <see cref="Sample"/> uses it.
    /// </summary>
    public void Distribution(ReadOnlySpan<float> logits, Span<float> probabilities)
    {
        int n = logits.Length;
        float temperature = _options.Temperature;
        float max = float.NegativeInfinity;
        foreach (float z in logits)
        {
            if (z > max)
                max = z;
        }
        if (float.IsNegativeInfinity(max) || float.IsNaN(max))
            throw new HorizonException("every token id is masked (all logits are −∞ or NaN): nothing to pick");
        // p ∝ exp((z − max) / T), in float64 for the sums.
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            double p = float.IsNaN(logits[i]) ? 0 : Math.Exp((logits[i] - max) / (double)temperature);
            probabilities[i] = (float)p;
            sum += p;
        }

        int topK = _options.TopK;
        bool needOrder = (topK > 0 && topK < n) || _options.TopP < 1f;
        if (needOrder)
        {
            if (_order.Length < n)
            {
                _order = new int[n];
                _keys = new float[n];
            }
            var order = _order.AsSpan(0, n);
            var keys = _keys.AsSpan(0, n);
            for (int i = 0; i < n; i++)
            {
                order[i] = i;
                keys[i] = -probabilities[i];
            }
            // Most probable first (an introsort on the primitive keys); equal probabilities by id.
            keys.Sort(order);
            for (int start = 0; start < n;)
            {
                int end = start + 1;
                while (end < n && keys[end] == keys[start])
                    end++;
                if (end - start > 1)
                    order[start..end].Sort();
                start = end;
            }

            int keep = n;
            if (topK > 0 && topK < n)
            {
                float kth = (-keys[topK - 1]);
                keep = topK;
                while (keep < n && (-keys[keep]) == kth)
                    keep++;
            }
            if (_options.TopP < 1f)
            {
                double total = 0;
                for (int r = 0; r < keep; r++)
                    total += (-keys[r]);
                double running = 0;
                int kept = 0;
                // Keep an id while the mass before it is < p: the fewest ids reaching p.
                while (kept < keep && running < _options.TopP * total)
                {
                    running += (-keys[kept]);
                    kept++;
                }
                keep = Math.Max(1, kept);
            }
            for (int r = keep; r < n; r++)
                probabilities[order[r]] = 0;
        }
        if (_options.MinP > 0)
        {
            float top = TensorPrimitives.Max(probabilities);
            float threshold = _options.MinP * top;
            for (int i = 0; i < n; i++)
            {
                if (probabilities[i] < threshold)
                    probabilities[i] = 0;
            }
        }
        sum = 0;
        for (int i = 0; i < n; i++)
            sum += probabilities[i];
        for (int i = 0; i < n; i++)
            probabilities[i] = (float)(probabilities[i] / sum);
    }

    private int Draw(ReadOnlySpan<float> logits)
    {
        if (_work.Length < logits.Length)
            _work = new float[logits.Length];
        var probabilities = _work.AsSpan(0, logits.Length);
        Distribution(logits, probabilities);
        double u = _random.NextDouble();
        double running = 0;
        int last = -1;
        for (int i = 0; i < probabilities.Length; i++)
        {
            if (probabilities[i] <= 0)
                continue;
            last = i;
            running += probabilities[i];
            if (running > u)
                return i;
        }
        return last; // rounding left the sum just under u
    }
}
