using Horizon.Cpu;
using Horizon.Cuda;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Gpu.Tests;

/// <summary>
/// The GLA kernels (native/gla.cu) against the CPU GLA core, <see cref="GlaKernels.Mix"/> (chunked form, chunk 64,
/// and the recurrent form), on random inputs with a random starting state: lengths that are not chunk or sub-chunk
/// multiples, GQA/MQA groups, head sizes that are not tile multiples, no gates (linear attention), gates strong enough
/// to make b reach −10³ inside a chunk, a prefill continued in two calls, and the recurrent decode kernel token by
/// token equal to the prefill. float32: max|Δ| / max|ref| ≤ 1e-4 for outputs and states; bf16 (inputs rounded to bf16,
/// the CPU run on the same rounded values): ≤ 1e-2 for the bf16 outputs, 1e-4 for the float32 state. Outputs and the
/// workspace are poisoned with NaN first.
/// </summary>
[Category("Gpu")]
public class GlaTests
{
    private const double Float32Tolerance = 1e-4;
    private const double Bf16Tolerance = 1e-2;

    private static CudaContext Context => Gpu.Context;
    private static CudaOps Ops => Gpu.Ops;

    private sealed record Problem(int Batch, int Rows, int Heads, int KvHeads, int Dk, int Dv, float[] Q, float[] K, float[] V, float[]? G, float[] S0)
    {
        public float Scale => 1f / MathF.Sqrt(Dk);
    }

    /// <summary>Random q, k, v ~ N(0, 1), log-gates in [−gateScale, 0) (null: no gates), state ~ N(0, 0.1²).</summary>
    private static Problem Make(int seed, int batch, int rows, int heads, int kvHeads, int dk, int dv, float gateScale = 0.5f, bool gated = true, bool bf16 = false)
    {
        var random = new Random(seed);
        float[] Round(float[] x) => bf16 ? Data.RoundToBf16(x) : x;
        float[] q = Round(Data.Normal(random, batch * rows * heads * dk));
        float[] k = Round(Data.Normal(random, batch * rows * kvHeads * dk));
        float[] v = Round(Data.Normal(random, batch * rows * kvHeads * dv));
        float[]? g = null;
        if (gated)
        {
            g = Data.Uniform(random, batch * rows * kvHeads * dk, 0.5f);
            for (int i = 0; i < g.Length; i++)
                g[i] = -(g[i] + 0.5f) * gateScale; // in [−gateScale, 0)
        }
        float[] s0 = Data.Normal(random, batch * kvHeads * dk * dv, 0.1f);
        return new Problem(batch, rows, heads, kvHeads, dk, dv, q, k, v, g, s0);
    }

    /// <summary>The CPU core per sequence: (o, final state). chunk 64 = the chunked form, 0 = the recurrent form.</summary>
    private static (float[] O, float[] S) Cpu(Problem p, int chunk = CudaOps.GlaChunk)
    {
        int qn = p.Rows * p.Heads * p.Dk, kn = p.Rows * p.KvHeads * p.Dk, vn = p.Rows * p.KvHeads * p.Dv, on = p.Rows * p.Heads * p.Dv, sn = p.KvHeads * p.Dk * p.Dv;
        var o = new float[p.Batch * on];
        var s = (float[])p.S0.Clone();
        for (int b = 0; b < p.Batch; b++)
        {
            var state = s.AsSpan(b * sn, sn).ToArray();
            var output = new float[on];
            GlaKernels.Mix(p.Q.AsSpan(b * qn, qn).ToArray(), p.K.AsSpan(b * kn, kn).ToArray(), p.V.AsSpan(b * vn, vn).ToArray(),
                p.G?.AsSpan(b * kn, kn).ToArray(), p.Rows, p.Heads, p.KvHeads, p.Dk, p.Dv, p.Scale, chunk, state, output);
            state.CopyTo(s, b * sn);
            output.CopyTo(o, b * on);
        }
        return (o, s);
    }

    /// <summary>GlaChunkPrefill on the GPU in T (float or BFloat16): (o widened to float, final state).</summary>
    private static (float[] O, float[] S) GpuPrefill<T>(Problem p, Func<float[], T[]> convert, Func<T[], float[]> widen) where T : unmanaged
    {
        using var q = Context.Upload<T>(convert(p.Q));
        using var k = Context.Upload<T>(convert(p.K));
        using var v = Context.Upload<T>(convert(p.V));
        using var g = p.G is null ? null : Context.Upload<float>(p.G);
        using var s = Context.Upload<float>(p.S0);
        using var o = Context.Allocate<T>((long)p.Batch * p.Rows * p.Heads * p.Dv);
        var plan = CudaOps.PlanGlaPrefill(p.Batch, p.Rows, p.KvHeads, p.Dk, p.Dv);
        using var workspace = Context.Allocate<float>(Math.Max(1, plan.WorkspaceFloats));
        o.Fill(0xFF);
        workspace.Fill(0xFF);
        Ops.GlaChunkPrefill(q, k, v, g, s, o, p.Batch, p.Rows, p.Heads, p.KvHeads, p.Dk, p.Dv, workspace);
        Context.Synchronize();
        return (widen(o.ToArray()), s.ToArray());
    }

    private static (float[] O, float[] S) GpuPrefillF32(Problem p) => GpuPrefill<float>(p, x => x, x => x);

    private static void AssertClose(string what, float[] actual, float[] expected, double tolerance)
    {
        Data.AssertAllFinite(actual, what);
        double error = Data.RelativeError(actual, expected);
        Log.Write($"{what}: rel err {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(tolerance), what);
    }

    public static IEnumerable<TestCaseData> Shapes()
    {
        // batch, rows, heads, kvHeads, d_k, d_v
        yield return new TestCaseData(1, 1, 2, 2, 64, 64).SetName("gla one token");
        yield return new TestCaseData(1, 200, 4, 4, 128, 256).SetName("gla 340M heads 200 tokens");
        yield return new TestCaseData(2, 77, 4, 2, 48, 72).SetName("gla GQA odd sizes 77 tokens");
        yield return new TestCaseData(1, 130, 2, 1, 256, 96).SetName("gla MQA d_k 256 130 tokens");
        yield return new TestCaseData(3, 129, 3, 3, 40, 100).SetName("gla batch 3 129 tokens");
        yield return new TestCaseData(1, 64, 2, 2, 32, 64).SetName("gla exactly one chunk");
        yield return new TestCaseData(1, 1000, 2, 2, 128, 128).SetName("gla 1000 tokens");
    }

    [TestCaseSource(nameof(Shapes))]
    public void Chunk_prefill_f32_matches_the_cpu(int batch, int rows, int heads, int kvHeads, int dk, int dv)
    {
        var p = Make(rows * 31 + dk + dv + batch, batch, rows, heads, kvHeads, dk, dv);
        var (o, s) = Cpu(p);
        var (go, gs) = GpuPrefillF32(p);
        AssertClose($"gla_chunk_prefill_f32 b={batch} n={rows} h={heads}/{kvHeads} dk={dk} dv={dv} output", go, o, Float32Tolerance);
        AssertClose($"gla_chunk_prefill_f32 b={batch} n={rows} h={heads}/{kvHeads} dk={dk} dv={dv} state", gs, s, Float32Tolerance);
    }

    [TestCaseSource(nameof(Shapes))]
    public void Chunk_prefill_bf16_matches_the_cpu(int batch, int rows, int heads, int kvHeads, int dk, int dv)
    {
        var p = Make(rows * 17 + dk + dv + batch, batch, rows, heads, kvHeads, dk, dv, bf16: true);
        var (o, s) = Cpu(p);
        var (go, gs) = GpuPrefill<BFloat16>(p, x => Data.ToBf16(x), x => Data.ToFloat(x));
        AssertClose($"gla_chunk_prefill_bf16 b={batch} n={rows} h={heads}/{kvHeads} dk={dk} dv={dv} output", go, o, Bf16Tolerance);
        AssertClose($"gla_chunk_prefill_bf16 b={batch} n={rows} h={heads}/{kvHeads} dk={dk} dv={dv} state", gs, s, Float32Tolerance);
    }

    [Test]
    public void Chunk_prefill_without_gates_is_linear_attention()
    {
        var p = Make(3, 1, 150, 4, 2, 64, 80, gated: false);
        var (o, s) = Cpu(p);
        var (go, gs) = GpuPrefillF32(p);
        AssertClose("gla_chunk_prefill_f32 ungated output", go, o, Float32Tolerance);
        AssertClose("gla_chunk_prefill_f32 ungated state", gs, s, Float32Tolerance);
    }

    [Test]
    public void Strongly_negative_gates_stay_finite_and_match()
    {
        // Gates down to −20 per token: b reaches about −10³ inside a chunk; every exponent the kernels take is ≤ 0.
        var p = Make(4, 1, 190, 2, 2, 64, 64, gateScale: 20f);
        var (o, s) = Cpu(p);
        var (go, gs) = GpuPrefillF32(p);
        AssertClose("gla_chunk_prefill_f32 strong gates output", go, o, Float32Tolerance);
        AssertClose("gla_chunk_prefill_f32 strong gates state", gs, s, Float32Tolerance);
    }

    [Test]
    public void Recurrent_decode_matches_the_cpu_recurrent_form()
    {
        var p = Make(5, 2, 70, 4, 2, 128, 96);
        var (o, s) = Cpu(p, chunk: 0);
        using var q = Context.Upload<float>(p.Q);
        using var k = Context.Upload<float>(p.K);
        using var v = Context.Upload<float>(p.V);
        using var g = Context.Upload<float>(p.G!);
        using var state = Context.Upload<float>(p.S0);
        using var output = Context.Allocate<float>(o.Length);
        output.Fill(0xFF);
        Ops.GlaRecurrentDecode(q, k, v, g, state, output, p.Batch, p.Rows, p.Heads, p.KvHeads, p.Dk, p.Dv);
        AssertClose("gla_recurrent_decode_f32 70 tokens output", output.ToArray(), o, Float32Tolerance);
        AssertClose("gla_recurrent_decode_f32 70 tokens state", state.ToArray(), s, Float32Tolerance);
    }

    [Test]
    public void Decode_token_by_token_equals_prefill()
    {
        // One sequence: the prefill of 150 tokens, and 150 decode steps of one token each from the same state.
        var p = Make(6, 1, 150, 4, 4, 128, 256);
        var (prefillO, prefillS) = GpuPrefillF32(p);

        int qRow = p.Heads * p.Dk, kRow = p.KvHeads * p.Dk, vRow = p.KvHeads * p.Dv, oRow = p.Heads * p.Dv;
        using var q = Context.Allocate<float>(qRow);
        using var k = Context.Allocate<float>(kRow);
        using var v = Context.Allocate<float>(vRow);
        using var g = Context.Allocate<float>(kRow);
        using var state = Context.Upload<float>(p.S0);
        using var o = Context.Allocate<float>(oRow);
        var decodeO = new float[prefillO.Length];
        for (int t = 0; t < p.Rows; t++)
        {
            q.CopyToDevice(p.Q.AsSpan(t * qRow, qRow));
            k.CopyToDevice(p.K.AsSpan(t * kRow, kRow));
            v.CopyToDevice(p.V.AsSpan(t * vRow, vRow));
            g.CopyToDevice(p.G.AsSpan(t * kRow, kRow));
            o.Fill(0xFF);
            Ops.GlaRecurrentDecode(q, k, v, g, state, o, 1, 1, p.Heads, p.KvHeads, p.Dk, p.Dv);
            o.CopyToHost(decodeO.AsSpan(t * oRow, oRow));
        }
        AssertClose("gla decode x150 vs prefill output", decodeO, prefillO, Float32Tolerance);
        AssertClose("gla decode x150 vs prefill state", state.ToArray(), prefillS, Float32Tolerance);
    }

    [Test]
    public void Prefill_in_two_calls_equals_one_call()
    {
        var p = Make(7, 1, 137, 2, 1, 64, 128);
        var (whole, wholeState) = GpuPrefillF32(p);
        int split = 100;
        var first = p with
        {
            Rows = split,
            Q = p.Q[..(split * p.Heads * p.Dk)],
            K = p.K[..(split * p.KvHeads * p.Dk)],
            V = p.V[..(split * p.KvHeads * p.Dv)],
            G = p.G![..(split * p.KvHeads * p.Dk)],
        };
        var (o1, s1) = GpuPrefillF32(first);
        var second = p with
        {
            Rows = p.Rows - split,
            Q = p.Q[(split * p.Heads * p.Dk)..],
            K = p.K[(split * p.KvHeads * p.Dk)..],
            V = p.V[(split * p.KvHeads * p.Dv)..],
            G = p.G![(split * p.KvHeads * p.Dk)..],
            S0 = s1,
        };
        var (o2, s2) = GpuPrefillF32(second);
        AssertClose("gla prefill 100 + 37 vs 137 output", [.. o1, .. o2], whole, Float32Tolerance);
        AssertClose("gla prefill 100 + 37 vs 137 state", s2, wholeState, Float32Tolerance);
    }

    [Test]
    public void Prefill_gives_the_same_result_on_every_run()
    {
        var p = Make(8, 1, 700, 4, 4, 128, 256);
        var (o, s) = GpuPrefillF32(p);
        for (int run = 0; run < 3; run++)
        {
            var (again, againState) = GpuPrefillF32(p);
            Assert.That(again, Is.EqualTo(o), $"run {run + 2}: output");
            Assert.That(againState, Is.EqualTo(s), $"run {run + 2}: state");
        }
    }

    [Test]
    public void A_head_k_dim_over_256_is_refused()
    {
        using var x = Context.Allocate<float>(512 * 4);
        using var w = Context.Allocate<float>(1);
        var e = Assert.Throws<NotSupportedException>(() => Ops.GlaChunkPrefill(x, x, x, null, x, x, 1, 1, 1, 1, 512, 4, w));
        Assert.That(e!.Message, Does.Contain("head_k_dim 512"));
    }
}
