using System.Globalization;
using Horizon.Cuda;
using NUnit.Framework;

namespace Horizon.Gpu.Tests;

/// <summary>
/// Timings of the attention kernels (category GpuBench, not part of the Gpu tests): device events around each
/// launch after warm-up, median of the repeats. Each line goes to HORIZON_BENCH_OUT (tab-separated) for
/// sdpa_reference.py, which times PyTorch's scaled_dot_product_attention on the same shapes in the same call and
/// prints the side-by-side table (docs/performance.md, section "CUDA (issue 4)").
/// </summary>
[Category("GpuBench")]
public class AttentionBenchmark
{
    private const int Warmup = 3, Repeats = 20;

    internal static void Write(string line)
    {
        Log.Write(line);
        string? path = Environment.GetEnvironmentVariable("HORIZON_BENCH_OUT");
        if (!string.IsNullOrEmpty(path))
            File.AppendAllText(path, line + Environment.NewLine);
    }

    internal static double MedianMilliseconds(CudaStream stream, Action launch)
    {
        var context = Gpu.Context;
        using var start = context.CreateEvent();
        using var end = context.CreateEvent();
        for (int i = 0; i < Warmup; i++)
            launch();
        var times = new double[Repeats];
        for (int i = 0; i < Repeats; i++)
        {
            start.Record(stream);
            launch();
            end.Record(stream);
            times[i] = CudaEvent.ElapsedMilliseconds(start, end);
        }
        Array.Sort(times);
        return times[Repeats / 2];
    }

    [TestCase(4, 16, 4096, 128)]
    [TestCase(4, 16, 4096, 64)]
    [TestCase(1, 16, 16384, 128)]
    public void Prefill(int batch, int heads, int n, int headDim)
    {
        var context = Gpu.Context;
        var random = new Random(7);
        long elements = (long)batch * n * heads * headDim;
        using var q = context.Upload<BFloat16>(Data.ToBf16(Data.Normal(random, (int)elements)));
        using var k = context.Upload<BFloat16>(Data.ToBf16(Data.Normal(random, (int)elements)));
        using var v = context.Upload<BFloat16>(Data.ToBf16(Data.Normal(random, (int)elements)));
        using var o = context.Allocate<BFloat16>(elements);
        using var stream = context.CreateStream();
        double ms = MedianMilliseconds(stream, () => Gpu.Ops.AttentionPrefill(q, k, v, o, batch, n, n, heads, heads, headDim, 0, stream: stream));
        // Causal: half of the 4·B·H·N²·D multiply-adds of full attention (FlashAttention's convention).
        double flops = 4.0 * batch * heads * n * (double)n * headDim / 2;
        Write(string.Create(CultureInfo.InvariantCulture, $"prefill\t{batch}\t{heads}\t{n}\t{headDim}\t{ms:F4}\t{flops / (ms * 1e-3) / 1e12:F1}"));
    }

    [TestCase(1, 32, 32, 128, 4096)]
    [TestCase(1, 32, 8, 128, 4096)]
    [TestCase(1, 32, 32, 128, 65536)]
    [TestCase(1, 32, 8, 128, 65536)]
    [TestCase(1, 32, 32, 128, 262144)]
    [TestCase(1, 32, 8, 128, 262144)]
    public void Decode(int batch, int heads, int kvHeads, int headDim, int keyCount)
    {
        var context = Gpu.Context;
        var random = new Random(8);
        long kvElements = (long)batch * keyCount * kvHeads * headDim;
        double bytes = 2.0 * kvElements * 2; // K and V read once
        // The timed steps rotate over enough copies of the cache (≥ 256 MB in all) that a step's K and V are not
        // still in the 60 MB L2 from the step before (sdpa_reference.py does the same for PyTorch).
        int copies = (int)Math.Clamp(Math.Ceiling(256e6 / bytes), 1, 16);
        var ks = new CudaDeviceVariable<BFloat16>[copies];
        var vs = new CudaDeviceVariable<BFloat16>[copies];
        try
        {
            for (int c = 0; c < copies; c++)
            {
                // K and V of one random tile repeated: their values do not change the kernel's work, and filling GBs
                // from the host would cost more than the timing.
                ks[c] = context.Allocate<BFloat16>(kvElements);
                vs[c] = context.Allocate<BFloat16>(kvElements);
                if (c == 0)
                {
                    Fill(ks[0], random);
                    Fill(vs[0], random);
                }
                else
                {
                    ks[c].CopyToDevice(ks[0]);
                    vs[c].CopyToDevice(vs[0]);
                }
            }
            using var q = context.Upload<BFloat16>(Data.ToBf16(Data.Normal(random, batch * heads * headDim)));
            using var o = context.Allocate<BFloat16>(batch * heads * headDim);
            var plan = Gpu.Ops.PlanAttentionDecode(batch, heads, kvHeads, headDim, keyCount);
            // Split counts around the automatic one (one full wave): half, two, four and eight times as many.
            int[] sweep = keyCount >= 65536 ? [Math.Max(1, plan.Splits / 2), 2 * plan.Splits, 4 * plan.Splits, 8 * plan.Splits] : [];
            long workspaceFloats = plan.WorkspaceFloats;
            foreach (int splits in sweep)
                workspaceFloats = Math.Max(workspaceFloats, Gpu.Ops.PlanAttentionDecode(batch, heads, kvHeads, headDim, keyCount, splits).WorkspaceFloats);
            using var workspace = context.Allocate<float>(workspaceFloats);
            using var stream = context.CreateStream();

            string Time(string tag, int splits)
            {
                var used = Gpu.Ops.PlanAttentionDecode(batch, heads, kvHeads, headDim, keyCount, splits);
                int step = 0;
                double ms = MedianMilliseconds(stream, () =>
                {
                    int c = step++ % copies;
                    Gpu.Ops.AttentionDecode(q, ks[c], vs[c], o, batch, heads, kvHeads, headDim, keyCount, keyCount, workspace, stream: stream, splits: splits);
                });
                return string.Create(CultureInfo.InvariantCulture,
                    $"{tag}\t{batch}\t{heads}/{kvHeads}\t{keyCount}\t{headDim}\t{ms:F4}\t{bytes / (ms * 1e-3) / 1e9:F0}\tsplits={used.Splits}x{used.KeysPerSplit}");
            }

            Write(Time("decode", 0));
            foreach (int splits in sweep)
                Write(Time("decode_splits", splits));
        }
        finally
        {
            foreach (var variable in ks)
                variable?.Dispose();
            foreach (var variable in vs)
                variable?.Dispose();
        }
    }

    internal static void Fill(CudaDeviceVariable<BFloat16> variable, Random random)
    {
        const int tile = 1 << 20;
        var values = Data.ToBf16(Data.Normal(random, tile));
        for (long offset = 0; offset < variable.Size; offset += tile)
            variable.CopyToDevice(values.AsSpan(0, (int)Math.Min(tile, variable.Size - offset)), offset);
    }
}
