using Horizon.Cuda;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Gpu.Tests;

/// <summary>Long runs do not leak device memory: free memory (cuMemGetInfo) is the same before and after 1000 forwards.</summary>
[Category("Gpu")]
public class MemoryTests
{
    [Test]
    public void Thousand_forwards_of_an_op_chain_leave_device_memory_unchanged()
    {
        var context = Gpu.Context;
        var ops = Gpu.Ops;
        const int vocab = 503, dim = 256, tokens = 37, heads = 4, headDim = 64;
        var random = new Random(3);
        using var table = context.Upload<BFloat16>(Data.ToBf16(Data.Normal(random, vocab * dim)));
        using var gamma = context.Upload<BFloat16>(Data.ToBf16(Data.Uniform(random, dim)));
        using var ids = context.Upload<int>(Enumerable.Range(0, tokens).Select(i => (i * 31) % vocab).ToArray());
        using var frequencies = context.Upload<double>(new RopeTable(headDim, 10000, RopeScaling.None).InverseFrequencies);
        using var stream = context.CreateStream();

        void Forward()
        {
            // A layer's worth of ops, every buffer allocated and freed inside the forward.
            using var x = context.Allocate<BFloat16>(tokens * dim);
            using var h = context.Allocate<BFloat16>(tokens * dim);
            using var o = context.Allocate<BFloat16>(tokens * dim);
            using var logProbs = context.Allocate<float>(tokens * dim);
            ops.Embedding(table, vocab, dim, ids, tokens, x, stream);
            ops.RmsNorm(x, gamma, h, tokens, dim, 1e-6f, stream);
            ops.Rope(h, tokens, heads, headDim, headDim, 0, frequencies, stream);
            ops.AttentionPrefill(h, h, h, o, 1, tokens, tokens, heads, heads, headDim, 0, stream: stream);
            ops.SwiGlu(o, h, o, tokens * dim, stream);
            ops.Add(x, o, tokens * dim, stream);
            ops.LogSoftmax(x, logProbs, tokens, dim, stream);
            stream.Synchronize();
        }

        for (int i = 0; i < 10; i++)
            Forward();
        // Objects of earlier tests that were not disposed must not be finalized (and freed) in the middle.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        context.Synchronize();
        var (before, _) = context.GetMemoryInfo();
        for (int i = 0; i < 1000; i++)
            Forward();
        context.Synchronize();
        var (after, _) = context.GetMemoryInfo();
        Log.Write($"memory: free before {before} B, after 1000 forwards {after} B");
        Assert.That(after, Is.EqualTo(before));
    }
}
