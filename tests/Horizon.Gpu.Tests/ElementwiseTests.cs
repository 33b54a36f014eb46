using Horizon.Cpu;
using Horizon.Cuda;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Gpu.Tests;

/// <summary>
/// Each elementwise and row-wise CUDA op against the CPU backend (<see cref="CpuKernels"/>) on random inputs of odd
/// sizes (not multiples of 32, of the 256-thread blocks or of the grid-stride step). float32 kernels must match
/// within 1e-5 (max|Δ| / max|ref|), bf16 kernels within 1e-2 of the CPU run on the same bf16-rounded inputs (their
/// outputs are rounded to bf16: half an ulp is 2⁻⁹ of the value). Outputs are poisoned with NaN first.
/// </summary>
[Category("Gpu")]
public class ElementwiseTests
{
    private const double Float32Tolerance = 1e-5;
    private const double Bf16Tolerance = 1e-2;

    private static CudaContext Context => Gpu.Context;
    private static CudaOps Ops => Gpu.Ops;

    [Test]
    public void RmsNorm_f32_matches_cpu([Values(1, 37)] int rows, [Values(64, 1001, 4096)] int dim)
    {
        var random = new Random(10 + rows * 7 + dim);
        float[] x = Data.Normal(random, rows * dim), gamma = Data.Uniform(random, dim, 2f);
        var expected = new float[x.Length];
        CpuKernels.RmsNorm(x, rows, gamma, 1e-6f, expected);

        using var dx = Context.Upload<float>(x);
        using var dGamma = Context.Upload<float>(gamma);
        using var dy = Context.Allocate<float>(x.Length);
        dy.Fill(0xFF);
        Ops.RmsNorm(dx, dGamma, dy, rows, dim, 1e-6f);
        float[] actual = dy.ToArray();
        Data.AssertAllFinite(actual, "rms_norm_f32");
        double error = Data.RelativeError(actual, expected);
        Log.Write($"rms_norm_f32 rows={rows} dim={dim}: rel err {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(Float32Tolerance));
    }

    [Test]
    public void RmsNorm_bf16_matches_cpu([Values(3, 37)] int rows, [Values(1001, 4096)] int dim)
    {
        var random = new Random(20 + rows * 7 + dim);
        float[] x = Data.RoundToBf16(Data.Normal(random, rows * dim)), gamma = Data.RoundToBf16(Data.Uniform(random, dim, 2f));
        var expected = new float[x.Length];
        CpuKernels.RmsNorm(x, rows, gamma, 1e-5f, expected);

        using var dx = Context.Upload<BFloat16>(Data.ToBf16(x));
        using var dGamma = Context.Upload<BFloat16>(Data.ToBf16(gamma));
        Ops.RmsNorm(dx, dGamma, dx, rows, dim, 1e-5f); // in place
        float[] actual = Data.ToFloat(dx.ToArray());
        double error = Data.RelativeError(actual, expected);
        Log.Write($"rms_norm_bf16 rows={rows} dim={dim}: rel err {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(Bf16Tolerance));
    }

    [Test]
    public void Rope_f32_matches_cpu([Values(1, 19)] int rows, [Values(3)] int heads, [Values(64, 80, 130)] int headDim, [Values(0, 100_003)] int start)
    {
        var random = new Random(30 + rows + headDim + start);
        var table = new RopeTable(headDim, 10000.0, RopeScaling.None);
        float[] x = Data.Normal(random, rows * heads * headDim);
        float[] expected = (float[])x.Clone();
        CpuKernels.Rope(expected, rows, heads, headDim, start, table);

        using var dx = Context.Upload<float>(x);
        using var dFreq = Context.Upload<double>(table.InverseFrequencies);
        Ops.Rope(dx, rows, heads, headDim, table.RotaryDim, start, dFreq);
        float[] actual = dx.ToArray();
        double error = Data.RelativeError(actual, expected);
        Log.Write($"rope_f32 rows={rows} heads={heads} d={headDim} start={start}: rel err {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(Float32Tolerance));
    }

    [Test]
    public void Rope_partial_rotary_matches_cpu_and_leaves_the_tail([Values(16, 24, 64)] int rotaryDim)
    {
        // GPT-NeoX rotary_pct: only the first rotary_dim dimensions of each 64-wide head rotate.
        const int rows = 21, heads = 3, headDim = 64, start = 5;
        var random = new Random(35 + rotaryDim);
        var table = new RopeTable(headDim, 10000.0, RopeScaling.None, rotaryDim);
        float[] x = Data.Normal(random, rows * heads * headDim);
        float[] expected = (float[])x.Clone();
        CpuKernels.Rope(expected, rows, heads, headDim, start, table);

        using var dx = Context.Upload<float>(x);
        using var dFreq = Context.Upload<double>(table.InverseFrequencies);
        Ops.Rope(dx, rows, heads, headDim, table.RotaryDim, start, dFreq);
        float[] actual = dx.ToArray();
        double error = Data.RelativeError(actual, expected);
        Log.Write($"rope_f32 partial rotary_dim={rotaryDim}/{headDim}: rel err {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(Float32Tolerance));
        for (int i = 0; i < x.Length; i++)
        {
            if (i % headDim >= rotaryDim)
                Assert.That(actual[i], Is.EqualTo(x[i]), $"element {i} is past rotary_dim and must pass through");
        }
    }

    [Test]
    public void Rope_bf16_matches_cpu([Values(128)] int headDim, [Values(7)] int start)
    {
        const int rows = 33, heads = 5;
        var random = new Random(40 + headDim + start);
        var table = new RopeTable(headDim, 500000.0, new RopeScaling("linear", 4.0));
        float[] x = Data.RoundToBf16(Data.Normal(random, rows * heads * headDim));
        float[] expected = (float[])x.Clone();
        CpuKernels.Rope(expected, rows, heads, headDim, start, table);

        using var dx = Context.Upload<BFloat16>(Data.ToBf16(x));
        using var dFreq = Context.Upload<double>(table.InverseFrequencies);
        Ops.Rope(dx, rows, heads, headDim, table.RotaryDim, start, dFreq);
        double error = Data.RelativeError(Data.ToFloat(dx.ToArray()), expected);
        Log.Write($"rope_bf16 rows={rows} heads={heads} d={headDim}: rel err {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(Bf16Tolerance));
    }

    [Test]
    public void Embedding_f32_and_bf16_copy_rows_exactly()
    {
        const int vocab = 1000, dim = 333, count = 77;
        var random = new Random(50);
        float[] table = Data.RoundToBf16(Data.Normal(random, vocab * dim)); // bf16-exact, so both dtypes compare exactly
        int[] tokens = Enumerable.Range(0, count).Select(i => i % 5 == 0 ? 0 : random.Next(vocab)).ToArray();
        tokens[^1] = vocab - 1;
        var expected = new float[count * dim];
        CpuKernels.Embedding(Matrix.FromFloats("embed", vocab, dim, table), tokens, expected);

        using var dTokens = Context.Upload<int>(tokens);
        using var dTable = Context.Upload<float>(table);
        using var dy = Context.Allocate<float>(count * dim);
        dy.Fill(0xFF);
        Ops.Embedding(dTable, vocab, dim, dTokens, count, dy);
        Assert.That(dy.ToArray(), Is.EqualTo(expected), "embedding_f32");

        using var dTable16 = Context.Upload<BFloat16>(Data.ToBf16(table));
        using var dy16 = Context.Allocate<BFloat16>(count * dim);
        dy16.Fill(0xFF);
        Ops.Embedding(dTable16, vocab, dim, dTokens, count, dy16);
        Assert.That(Data.ToFloat(dy16.ToArray()), Is.EqualTo(expected), "embedding_bf16");
    }

    [Test]
    public void Embedding_of_an_id_out_of_range_is_a_row_of_nan()
    {
        const int vocab = 10, dim = 5;
        int[] tokens = [3, vocab, -1];
        using var dTokens = Context.Upload<int>(tokens);
        using var dTable = Context.Upload<float>(Data.Uniform(new Random(51), vocab * dim));
        using var dy = Context.Allocate<float>(tokens.Length * dim);
        Ops.Embedding(dTable, vocab, dim, dTokens, tokens.Length, dy);
        float[] y = dy.ToArray();
        Assert.That(y.Take(dim).All(float.IsFinite), Is.True);
        Assert.That(y.Skip(dim).All(float.IsNaN), Is.True);
    }

    [Test]
    public void Add_matches_cpu_exactly([Values(1, 100_003, 3_000_017)] int n)
    {
        var random = new Random(60 + n);
        float[] acc = Data.Normal(random, n), x = Data.Normal(random, n);
        float[] expected = (float[])acc.Clone();
        CpuKernels.Add(expected, x);

        using var dAcc = Context.Upload<float>(acc);
        using var dx = Context.Upload<float>(x);
        Ops.Add(dAcc, dx, n);
        Assert.That(dAcc.ToArray(), Is.EqualTo(expected), "add_f32");

        // bf16: one float32 add of the two bf16 values, rounded once to bf16: the same on both sides.
        float[] acc16 = Data.RoundToBf16(acc), x16 = Data.RoundToBf16(x);
        float[] expected16 = (float[])acc16.Clone();
        CpuKernels.Add(expected16, x16);
        using var dAcc16 = Context.Upload<BFloat16>(Data.ToBf16(acc16));
        using var dx16 = Context.Upload<BFloat16>(Data.ToBf16(x16));
        Ops.Add(dAcc16, dx16, n);
        Assert.That(Data.ToFloat(dAcc16.ToArray()), Is.EqualTo(Data.RoundToBf16(expected16)), "add_bf16");
    }

    [Test]
    public void SwiGlu_matches_reference([Values(1, 65_537)] int n)
    {
        // The CPU backend fuses silu(gate) ⊙ up into SwiGluMlp between its GEMMs; the elementwise part is checked
        // against float64 here.
        var random = new Random(70 + n);
        float[] gate = Data.Normal(random, n, 3f), up = Data.Normal(random, n);
        var expected = new float[n];
        for (int i = 0; i < n; i++)
            expected[i] = (float)(gate[i] / (1 + Math.Exp(-(double)gate[i])) * up[i]);

        using var dGate = Context.Upload<float>(gate);
        using var dUp = Context.Upload<float>(up);
        using var dh = Context.Allocate<float>(n);
        dh.Fill(0xFF);
        Ops.SwiGlu(dGate, dUp, dh, n);
        double error = Data.RelativeError(dh.ToArray(), expected);
        Log.Write($"swiglu_f32 n={n}: rel err {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(Float32Tolerance));

        float[] gate16 = Data.RoundToBf16(gate), up16 = Data.RoundToBf16(up);
        for (int i = 0; i < n; i++)
            expected[i] = (float)(gate16[i] / (1 + Math.Exp(-(double)gate16[i])) * up16[i]);
        using var dGate16 = Context.Upload<BFloat16>(Data.ToBf16(gate16));
        using var dUp16 = Context.Upload<BFloat16>(Data.ToBf16(up16));
        Ops.SwiGlu(dGate16, dUp16, dUp16, n); // in place over up
        double error16 = Data.RelativeError(Data.ToFloat(dUp16.ToArray()), expected);
        Log.Write($"swiglu_bf16 n={n}: rel err {error16:E2}");
        Assert.That(error16, Is.LessThanOrEqualTo(Bf16Tolerance));
    }

    [Test]
    public void LogSoftmax_matches_cpu_scoring([Values(1, 5)] int rows, [Values(1000, 32_003)] int cols)
    {
        var random = new Random(80 + rows + cols);
        float[] logits = Data.RoundToBf16(Data.Normal(random, rows * cols, 4f)); // bf16-exact: both dtypes see the same input

        using var dLogits = Context.Upload<float>(logits);
        using var dLogits16 = Context.Upload<BFloat16>(Data.ToBf16(logits));
        using var dy = Context.Allocate<float>(rows * cols);
        foreach (bool bf16 in new[] { false, true })
        {
            dy.Fill(0xFF);
            if (bf16)
                Ops.LogSoftmax(dLogits16, dy, rows, cols);
            else
                Ops.LogSoftmax(dLogits, dy, rows, cols);
            float[] actual = dy.ToArray();
            Data.AssertAllFinite(actual, "log_softmax");
            double worst = 0;
            for (int r = 0; r < rows; r++)
            {
                var row = logits.AsSpan(r * cols, cols);
                // Every 7th target through the CPU backend's own log-softmax (float64 accumulation).
                for (int target = r % 7; target < cols; target += 7)
                    worst = Math.Max(worst, Math.Abs(actual[r * cols + target] - Scoring.LogSoftmaxAt(row, target)));
            }
            Log.Write($"log_softmax_{(bf16 ? "bf16" : "f32")} rows={rows} cols={cols}: max abs err {worst:E2}");
            Assert.That(worst, Is.LessThanOrEqualTo(1e-4), "log-probs of magnitude ~10-40: float32 keeps ~1e-6 relative");
        }
    }
}
