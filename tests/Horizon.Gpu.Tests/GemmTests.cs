using Horizon.Cpu;
using Horizon.Cuda;
using NUnit.Framework;

namespace Horizon.Gpu.Tests;

/// <summary>
/// <see cref="CudaGemm.Linear{TIn, TOut}"/> (cuBLAS, y = x·Wᵀ with W in the Hugging Face (out, in) layout) against the
/// CPU's <see cref="CpuKernels.Linear"/> on the same bf16- or fp16-rounded inputs: float32 output within 1e-4
/// (max|Δ| / max|ref|: float32 accumulation in another order), 16-bit output within 1e-2. Sizes that are not tile
/// multiples; outputs poisoned with NaN first. And the cuBLAS probe that <c>horizon doctor</c> prints.
/// </summary>
[Category("Gpu")]
public class GemmTests
{
    private static CudaContext Context => Gpu.Context;

    private static float[] RoundToHalf(float[] values) => values.Select(v => (float)(Half)v).ToArray();

    private static Half[] ToHalf(float[] values) => values.Select(v => (Half)v).ToArray();

    private static float[] CpuLinear(float[] x, int rows, float[] w, int outFeatures, int inFeatures)
    {
        var y = new float[rows * outFeatures];
        CpuKernels.Linear(x, rows, Matrix.FromFloats("w", outFeatures, inFeatures, w), default, y);
        return y;
    }

    private static void AssertClose(string what, float[] actual, float[] expected, double tolerance)
    {
        Data.AssertAllFinite(actual, what);
        double error = Data.RelativeError(actual, expected);
        Log.Write($"{what}: rel err {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(tolerance), what);
    }

    [TestCase(1, 64, 64)]
    [TestCase(5, 7, 3)]
    [TestCase(37, 1000, 333)]
    [TestCase(256, 2048, 1024)]
    public void Linear_bf16_matches_cpu(int rows, int outFeatures, int inFeatures)
    {
        var random = new Random(rows + outFeatures * 3 + inFeatures * 7);
        float[] x = Data.RoundToBf16(Data.Normal(random, rows * inFeatures));
        float[] w = Data.RoundToBf16(Data.Normal(random, outFeatures * inFeatures, 0.05f));
        float[] expected = CpuLinear(x, rows, w, outFeatures, inFeatures);

        using var gemm = new CudaGemm(Context);
        using var dx = Context.Upload<BFloat16>(Data.ToBf16(x));
        using var dw = Context.Upload<BFloat16>(Data.ToBf16(w));
        using var y32 = Context.Allocate<float>(expected.Length);
        using var y16 = Context.Allocate<BFloat16>(expected.Length);
        y32.Fill(0xFF);
        y16.Fill(0xFF);
        gemm.Linear(dx, rows, dw, outFeatures, inFeatures, y32);
        gemm.Linear(dx, rows, dw, outFeatures, inFeatures, y16);
        AssertClose($"cublas linear bf16→f32 rows={rows} out={outFeatures} in={inFeatures}", y32.ToArray(), expected, 1e-4);
        AssertClose($"cublas linear bf16→bf16 rows={rows} out={outFeatures} in={inFeatures}", Data.ToFloat(y16.ToArray()), expected, 1e-2);
    }

    [TestCase(3, 100, 65)]
    [TestCase(64, 512, 256)]
    public void Linear_fp16_matches_cpu(int rows, int outFeatures, int inFeatures)
    {
        var random = new Random(rows * 11 + outFeatures + inFeatures);
        float[] x = RoundToHalf(Data.Normal(random, rows * inFeatures));
        float[] w = RoundToHalf(Data.Normal(random, outFeatures * inFeatures, 0.05f));
        float[] expected = CpuLinear(x, rows, w, outFeatures, inFeatures);

        using var gemm = new CudaGemm(Context);
        using var stream = Context.CreateStream();
        using var dx = Context.Upload<Half>(ToHalf(x));
        using var dw = Context.Upload<Half>(ToHalf(w));
        using var y32 = Context.Allocate<float>(expected.Length);
        using var y16 = Context.Allocate<Half>(expected.Length);
        y32.Fill(0xFF);
        y16.Fill(0xFF);
        gemm.Linear(dx, rows, dw, outFeatures, inFeatures, y32, stream);
        gemm.Linear(dx, rows, dw, outFeatures, inFeatures, y16, stream);
        stream.Synchronize();
        AssertClose($"cublas linear fp16→f32 rows={rows} out={outFeatures} in={inFeatures}", y32.ToArray(), expected, 1e-4);
        AssertClose($"cublas linear fp16→fp16 rows={rows} out={outFeatures} in={inFeatures}", y16.ToArray().Select(h => (float)h).ToArray(), expected, 1e-2);
    }

    [Test]
    public void Unsupported_types_are_refused_by_name()
    {
        using var gemm = new CudaGemm(Context);
        using var x = Context.Allocate<float>(16);
        using var b = Context.Allocate<BFloat16>(16);
        using var h = Context.Allocate<Half>(16);
        Assert.That(Assert.Throws<NotSupportedException>(() => gemm.Linear(x, 4, x, 4, 4, x))!.Message, Does.Contain("Single"));
        Assert.That(Assert.Throws<NotSupportedException>(() => gemm.Linear(b, 4, b, 4, 4, h))!.Message, Does.Contain("Half"));
    }

    [Test]
    public void The_probe_finds_cublas_here_and_says_where_it_looked_when_it_does_not()
    {
        var probe = CudaBlas.Probe();
        Log.Write($"# cuBLAS: {probe.Description}");
        Assert.That(probe.Found, Is.True, probe.Description);
        Assert.That(probe.Path, Does.Contain("cublas"));
        using (var gemm = new CudaGemm(Context))
            Log.Write($"# CudaGemm uses {gemm.LibraryPath}");

        var missing = CudaBlas.Probe(["/nonexistent-horizon-cuda"]);
        Assert.That(missing.Found, Is.False);
        Assert.That(missing.Description, Does.StartWith("cuBLAS not found (tried /nonexistent-horizon-cuda (no such folder))"));
        Assert.That(CudaDiagnostics.Describe().ToString(), Does.Contain("cuBLAS: ").And.Contain("used by CudaGemm"));
    }
}
