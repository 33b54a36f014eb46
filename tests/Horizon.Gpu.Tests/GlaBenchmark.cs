using System.Globalization;
using Horizon.Cuda;
using NUnit.Framework;

namespace Horizon.Gpu.Tests;

/// <summary>
/// GLA prefill throughput (category GpuBench): <see cref="CudaOps.GlaChunkPrefill{T}"/> at the gla-340M head shapes
/// (B = 1, 4 heads, d_k 128, d_v 256: hidden 1024) for 2K–64K tokens, against Horizon's flash attention prefill at
/// the same width (causal, 8 heads × 128 = 1024, bf16) in the same run. Each line goes to HORIZON_BENCH_OUT;
/// gla_reference.py adds PyTorch's scaled_dot_product_attention (FLASH backend) at the same shapes, in the same call,
/// and prints the table (docs/performance.md, "CUDA (issue 4)").
/// </summary>
[Category("GpuBench")]
public class GlaBenchmark
{
    private const int Heads = 4, HeadKDim = 128, HeadVDim = 256, AttentionHeads = 8, AttentionDim = 128;

    [TestCase(2048)]
    [TestCase(4096)]
    [TestCase(8192)]
    [TestCase(16384)]
    [TestCase(32768)]
    [TestCase(65536)]
    public void Prefill_against_flash_attention_at_the_same_width(int n)
    {
        var context = Gpu.Context;
        var ops = Gpu.Ops;
        var random = new Random(9);
        using var stream = context.CreateStream();

        // GLA, bf16 q/k/v/o, float32 log-gates and state.
        using var q = context.Allocate<BFloat16>((long)n * Heads * HeadKDim);
        using var k = context.Allocate<BFloat16>((long)n * Heads * HeadKDim);
        using var v = context.Allocate<BFloat16>((long)n * Heads * HeadVDim);
        using var g = context.Allocate<float>((long)n * Heads * HeadKDim);
        using var state = context.Allocate<float>(Heads * HeadKDim * HeadVDim);
        using var o = context.Allocate<BFloat16>((long)n * Heads * HeadVDim);
        var plan = CudaOps.PlanGlaPrefill(1, n, Heads, HeadKDim, HeadVDim);
        using var workspace = context.Allocate<float>(plan.WorkspaceFloats);
        AttentionBenchmark.Fill(q, random);
        AttentionBenchmark.Fill(k, random);
        AttentionBenchmark.Fill(v, random);
        FillGates(g, random);
        state.Fill(0);
        double gla = AttentionBenchmark.MedianMilliseconds(stream, () =>
            ops.GlaChunkPrefill(q, k, v, g, state, o, 1, n, Heads, Heads, HeadKDim, HeadVDim, workspace, stream: stream));

        // Softmax attention at the same width: 8 heads of 128.
        long elements = (long)n * AttentionHeads * AttentionDim;
        using var aq = context.Allocate<BFloat16>(elements);
        using var ak = context.Allocate<BFloat16>(elements);
        using var av = context.Allocate<BFloat16>(elements);
        using var ao = context.Allocate<BFloat16>(elements);
        AttentionBenchmark.Fill(aq, random);
        AttentionBenchmark.Fill(ak, random);
        AttentionBenchmark.Fill(av, random);
        double attention = AttentionBenchmark.MedianMilliseconds(stream, () =>
            ops.AttentionPrefill(aq, ak, av, ao, 1, n, n, AttentionHeads, AttentionHeads, AttentionDim, 0, stream: stream));

        AttentionBenchmark.Write(string.Create(CultureInfo.InvariantCulture,
            $"gla\t{n}\t{gla:F4}\t{n / (gla * 1e-3):F0}\t{attention:F4}\t{n / (attention * 1e-3):F0}"));
    }

    /// <summary>Log-gates in [−0.1, 0) from a repeated random tile (the values do not change the kernels' work).</summary>
    private static void FillGates(CudaDeviceVariable<float> variable, Random random)
    {
        const int tile = 1 << 20;
        var values = Data.Uniform(random, tile, 0.05f).Select(x => x - 0.05f).ToArray();
        for (long offset = 0; offset < variable.Size; offset += tile)
            variable.CopyToDevice(values.AsSpan(0, (int)Math.Min(tile, variable.Size - offset)), offset);
    }
}
