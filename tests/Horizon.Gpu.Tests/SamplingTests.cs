using Horizon.Cuda;
using Horizon.Generation;
using NUnit.Framework;

namespace Horizon.Gpu.Tests;

/// <summary>
/// <see cref="CudaOps.SampleGreedy"/> and <see cref="CudaOps.SampleTopP"/> against the CPU's
/// <see cref="Sampler"/>: the chosen id must be the CPU's, exactly. Greedy against <see cref="Sampler.ArgMax"/> on
/// random rows with planted ties (lowest id wins), masked (−∞, NaN) ids and vocabularies that are not multiples of the
/// 1024-thread block. Top-p two ways: end to end, the CPU sampler with seed s against the device given
/// <c>new SplitMix64(s).NextDouble()</c> (the draw that sampler makes); and along the whole distribution, one row
/// repeated with evenly spaced u, against <see cref="Sampler.Distribution"/> and the sampler's draw rule. Temperatures
/// below and above 1, p = 1 (no truncation), tiny p (the argmax), and logits on a coarse grid, so that the nucleus ends
/// inside a large group of equal probabilities (ties kept by id). Outputs are poisoned first.
/// </summary>
[Category("Gpu")]
public class SamplingTests
{
    private static CudaContext Context => Gpu.Context;
    private static CudaOps Ops => Gpu.Ops;

    private const int Poison = -7;

    private static float[] Logits(Random random, int vocab, float scale, bool coarse)
    {
        float[] z = Data.Normal(random, vocab, scale);
        if (coarse)
        {
            // A grid of 0.5 / scale steps: a few dozen distinct values, thousands of ids each.
            for (int i = 0; i < z.Length; i++)
                z[i] = MathF.Round(z[i] * 2f / scale) * 0.5f;
        }
        return z;
    }

    private static int[] Run(Action<CudaDeviceVariable<int>> launch, int rows)
    {
        using var tokens = Context.Allocate<int>(rows);
        tokens.CopyToDevice(Enumerable.Repeat(Poison, rows).ToArray());
        launch(tokens);
        return tokens.ToArray();
    }

    [Test]
    public void Greedy_matches_cpu_argmax_with_ties_and_masks([Values(1000, 50_257, 262_144)] int vocab)
    {
        const int rows = 12;
        var random = new Random(100 + vocab);
        var logits = new float[rows * vocab];
        var expected = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            var row = logits.AsSpan(r * vocab, vocab);
            Logits(random, vocab, 2f, coarse: r % 3 == 1).CopyTo(row); // coarse rows: the maximum itself is often tied
            switch (r)
            {
                case 0: // a planted tie at the maximum: the lower id wins
                {
                    int a = random.Next(vocab), b = random.Next(vocab);
                    row[a] = row[b] = 100f;
                    break;
                }
                case 2: // the last id is the unique maximum
                    row[vocab - 1] = 100f;
                    break;
                case 3: // the first id is the maximum, tied with the last
                    row[0] = row[vocab - 1] = 100f;
                    break;
                case 4: // masked ids: −∞ and NaN everywhere but a few
                    for (int i = 0; i < vocab; i++)
                        row[i] = i % 2 == 0 ? float.NegativeInfinity : float.NaN;
                    row[vocab / 3 | 1] = -5f;
                    row[vocab / 2 | 1] = -4f;
                    break;
                case 5: // every id masked: the CPU throws, the device answers −1
                    row.Fill(float.NegativeInfinity);
                    row[vocab / 2] = float.NaN;
                    break;
                case 6: // all equal: id 0
                    row.Fill(0.25f);
                    break;
            }
            expected[r] = r == 5 ? -1 : Sampler.ArgMax(row);
        }
        Assert.Throws<HorizonException>(() => Sampler.ArgMax(logits.AsSpan(5 * vocab, vocab)));

        using var dLogits = Context.Upload<float>(logits);
        int[] actual = Run(tokens => Ops.SampleGreedy(dLogits, rows, vocab, tokens), rows);
        Log.Write($"sample_argmax_f32 vocab={vocab}: {actual.Zip(expected).Count(p => p.First == p.Second)}/{rows} match the CPU");
        Assert.That(actual, Is.EqualTo(expected));

        // temperature ≤ 0 is greedy through SampleTopP too, as on the CPU.
        using var uniforms = Context.Upload<double>(new double[rows]);
        using var work = Context.Allocate<float>((long)rows * vocab);
        int[] viaTopP = Run(tokens => Ops.SampleTopP(dLogits, rows, vocab, 0f, 0.9f, uniforms, tokens, work), rows);
        Assert.That(viaTopP, Is.EqualTo(expected));
    }

    [TestCase(50_257, 1.0f, 0.9f, false)]
    [TestCase(50_257, 0.7f, 0.95f, false)]
    [TestCase(50_257, 1.5f, 0.5f, true)]
    [TestCase(151_936, 1.0f, 1.0f, false)]
    [TestCase(151_936, 0.8f, 1e-6f, false)]
    [TestCase(262_144, 2.0f, 0.99f, true)]
    [TestCase(1000, 1.0f, 0.8f, true)]
    [TestCase(1000, 0.5f, 1.0f, true)]
    public void TopP_matches_the_cpu_sampler_given_its_draw(int vocab, float temperature, float topP, bool coarse)
    {
        const int rows = 24;
        var random = new Random(vocab + (int)(temperature * 1000) + (int)(topP * 1e6f));
        var options = new GenerationOptions { Temperature = temperature, TopP = topP };
        var logits = new float[rows * vocab];
        var uniforms = new double[rows];
        var expected = new int[rows];
        var nucleus = new int[rows];
        var probabilities = new float[vocab];
        for (int r = 0; r < rows; r++)
        {
            var row = logits.AsSpan(r * vocab, vocab);
            Logits(random, vocab, r % 2 == 0 ? 3f : 1.5f, coarse).CopyTo(row);
            if (r == 1) // masked ids take no part
            {
                for (int i = 0; i < vocab; i += 7)
                    row[i] = i % 2 == 0 ? float.NegativeInfinity : float.NaN;
            }
            ulong seed = (ulong)(1000 * vocab + r);
            uniforms[r] = new SplitMix64(seed).NextDouble(); // the draw the sampler with this seed makes first
            var sampler = new Sampler(options, seed);
            expected[r] = sampler.Sample(row.ToArray(), [], 0);
            sampler.Distribution(row, probabilities);
            nucleus[r] = probabilities.Count(p => p > 0);
            if (topP < 1e-3f)
                Assert.That(expected[r], Is.EqualTo(Sampler.ArgMax(row)), "tiny p is the argmax");
        }

        using var dLogits = Context.Upload<float>(logits);
        using var dUniforms = Context.Upload<double>(uniforms);
        using var work = Context.Allocate<float>((long)rows * vocab);
        int[] actual = Run(tokens => Ops.SampleTopP(dLogits, rows, vocab, temperature, topP, dUniforms, tokens, work), rows);
        Array.Sort(nucleus);
        Log.Write($"sample_top_p_f32 vocab={vocab} T={temperature} p={topP}{(coarse ? " coarse" : "")}: " +
                  $"{actual.Zip(expected).Count(p => p.First == p.Second)}/{rows} match the CPU sampler; nucleus sizes {nucleus[0]}..{nucleus[^1]}");
        Assert.That(actual, Is.EqualTo(expected));
    }

    [TestCase(50_257, 1.0f, 0.9f, false, 512)]
    [TestCase(50_257, 0.9f, 0.6f, true, 512)]
    [TestCase(151_936, 1.2f, 1.0f, false, 128)]
    public void TopP_follows_the_cpu_distribution_along_u(int vocab, float temperature, float topP, bool coarse, int draws)
    {
        var random = new Random(7 * vocab + draws);
        float[] row = Logits(random, vocab, 2.5f, coarse);
        var probabilities = new float[vocab];
        new Sampler(new GenerationOptions { Temperature = temperature, TopP = topP }, 0).Distribution(row, probabilities);
        var uniforms = new double[draws];
        var expected = new int[draws];
        for (int d = 0; d < draws; d++)
        {
            double u = (d + 0.5) / draws;
            uniforms[d] = u;
            // The CPU sampler's draw: the first id whose running float64 sum exceeds u, the last id with p > 0 otherwise.
            double running = 0;
            int last = -1, chosen = -1;
            for (int i = 0; i < vocab && chosen < 0; i++)
            {
                if (probabilities[i] <= 0)
                    continue;
                last = i;
                running += probabilities[i];
                if (running > u)
                    chosen = i;
            }
            expected[d] = chosen >= 0 ? chosen : last;
        }

        var logits = new float[(long)draws * vocab];
        for (int d = 0; d < draws; d++)
            row.CopyTo(logits.AsSpan(d * vocab, vocab));
        using var dLogits = Context.Upload<float>(logits);
        using var dUniforms = Context.Upload<double>(uniforms);
        using var work = Context.Allocate<float>((long)draws * vocab);
        int[] actual = Run(tokens => Ops.SampleTopP(dLogits, draws, vocab, temperature, topP, dUniforms, tokens, work), draws);
        int distinct = expected.Distinct().Count();
        Log.Write($"sample_top_p_f32 along u: vocab={vocab} T={temperature} p={topP}{(coarse ? " coarse" : "")}: " +
                  $"{actual.Zip(expected).Count(p => p.First == p.Second)}/{draws} match, {distinct} distinct ids, nucleus {probabilities.Count(p => p > 0)}");
        Assert.That(distinct, Is.GreaterThan(draws / 8), "the draws cover the distribution");
        Assert.That(actual, Is.EqualTo(expected));
    }

    [Test]
    public void TopP_answers_minus_one_for_a_fully_masked_row_and_refuses_bad_arguments()
    {
        const int vocab = 3000;
        var logits = new float[2 * vocab];
        logits.AsSpan(0, vocab).Fill(float.NegativeInfinity);
        logits[17] = float.NaN;
        Data.Normal(new Random(5), vocab).CopyTo(logits.AsSpan(vocab));
        using var dLogits = Context.Upload<float>(logits);
        using var uniforms = Context.Upload<double>([0.3, 0.3]);
        using var work = Context.Allocate<float>(2 * vocab);
        int[] actual = Run(tokens => Ops.SampleTopP(dLogits, 2, vocab, 1f, 0.9f, uniforms, tokens, work), 2);
        Assert.That(actual[0], Is.EqualTo(-1));
        Assert.That(actual[1], Is.InRange(0, vocab - 1));

        using var tokens = Context.Allocate<int>(2);
        Assert.Throws<ArgumentOutOfRangeException>(() => Ops.SampleTopP(dLogits, 2, vocab, 1f, 0f, uniforms, tokens, work));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ops.SampleTopP(dLogits, 2, vocab, 1f, 1.5f, uniforms, tokens, work));
        Assert.Throws<ArgumentException>(() => Ops.SampleTopP(dLogits, 2, vocab, 1f, 0.9f, uniforms, tokens, Context.Allocate<float>(vocab)));
    }
}

/// <summary>Timings of the sampling kernels (category GpuBench): device events, median of 10 after 3 warm-ups.</summary>
[Category("GpuBench")]
public class SamplingBenchmark
{
    [TestCase(1, 151_936)]
    [TestCase(32, 151_936)]
    [TestCase(1, 262_144)]
    public void Sampling(int rows, int vocab)
    {
        var context = Gpu.Context;
        var ops = Gpu.Ops;
        var random = new Random(rows + vocab);
        using var logits = context.Upload<float>(Data.Normal(random, rows * vocab, 2f));
        using var uniforms = context.Upload<double>(Enumerable.Range(0, rows).Select(i => random.NextDouble()).ToArray());
        using var tokens = context.Allocate<int>(rows);
        using var work = context.Allocate<float>((long)rows * vocab);
        using var stream = context.CreateStream();
        double greedy = GemmBenchmark.Median(stream, () => ops.SampleGreedy(logits, rows, vocab, tokens, stream));
        double topP = GemmBenchmark.Median(stream, () => ops.SampleTopP(logits, rows, vocab, 0.8f, 0.9f, uniforms, tokens, work, stream));
        double all = GemmBenchmark.Median(stream, () => ops.SampleTopP(logits, rows, vocab, 0.8f, 1.0f, uniforms, tokens, work, stream));
        Log.Write($"bench sampling rows={rows} vocab={vocab}: greedy {greedy * 1000:F1} us, top-p 0.9 {topP * 1000:F1} us, top-p 1 {all * 1000:F1} us " +
                  $"(logits {rows * (long)vocab * 4 / greedy / 1e6:F0} GB/s for greedy)");
    }
}
