using Horizon.Cpu;
using Horizon.Cuda;
using NUnit.Framework;

namespace Horizon.Gpu.Tests;

/// <summary>
/// <see cref="CudaGemm.Linear{TIn, TOut}"/> (cuBLAS, y = x·Wᵀ with W in the Hugging Face (out, in) layout) against the
/// CPU's <see cref="CpuKernels.Linear"/> on the same bf16- or fp16-rounded inputs: float32 output within 1e-4
/// (max|Δ| / max|ref|: float32 accumulation in another order), 16-bit output within 1e-2. Sizes that are not tile
/// multiples; outputs poisoned with NaN first. And the cuBLAS probe that <c>horizon doctor</c> prints. The fallback
/// without cuBLAS (native/gemm.cu, <see cref="CudaOps.Linear{TIn, TOut}"/>, <see cref="CudaGemmBackend.Kernels"/>): every
/// kernel path against a float64 product of the same rounded inputs, rows 1, 3, 77, 300 (edges of the 128-row tiles and
/// of the 8-row rows kernel), out 65 and 1000, in 64, 96, 4096 and, on the rows kernel, in not a multiple of 8.
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

    // ---------------------------------------------------------------- the fallback without cuBLAS (native/gemm.cu)

    /// <summary>y = x·Wᵀ in float64 from the (already rounded) inputs: the reference of the fallback kernels.</summary>
    private static float[] Float64Linear(float[] x, int rows, float[] w, int outFeatures, int inFeatures)
    {
        var y = new float[rows * outFeatures];
        Parallel.For(0, rows, r =>
        {
            for (int n = 0; n < outFeatures; n++)
            {
                double s = 0;
                for (int k = 0; k < inFeatures; k++)
                    s += (double)x[r * inFeatures + k] * w[n * inFeatures + k];
                y[r * outFeatures + n] = (float)s;
            }
        });
        return y;
    }

    /// <summary>
    /// Every path of <see cref="CudaOps.Linear{TIn, TOut}"/> (Auto, TensorCores, Rows) into float32 and into the input
    /// type, against the float64 product. float32 output: max|Δ| / max|ref| ≤ max(1e-5, in·2⁻²⁴) (the worst case of
    /// float32 accumulation; measured ≤ 7.2e-6 at in = 4096); 16-bit output: ≤ 1e-2 (bf16 rounding is 2⁻⁹ of the value,
    /// fp16 2⁻¹²).
    /// </summary>
    private static void CheckFallback<T>(int rows, int outFeatures, int inFeatures, Func<float[], float[]> round, Func<float[], T[]> convert,
        Func<T[], float[]> widen, string type) where T : unmanaged
    {
        var random = new Random(rows * 31 + outFeatures * 7 + inFeatures + type.Length);
        float[] x = round(Data.Normal(random, rows * inFeatures));
        float[] w = round(Data.Normal(random, outFeatures * inFeatures, 0.05f));
        float[] expected = Float64Linear(x, rows, w, outFeatures, inFeatures);
        var ops = Gpu.Ops;
        using var dx = Context.Upload<T>(convert(x));
        using var dw = Context.Upload<T>(convert(w));
        using var y32 = Context.Allocate<float>(expected.Length);
        using var y16 = Context.Allocate<T>(expected.Length);
        // The worst-case bound of float32 accumulation, in·2⁻²⁴ of the largest |y| (at least 1e-5); measured far under it.
        double float32Tolerance = Math.Max(1e-5, inFeatures * Math.Pow(2, -24));
        var paths = inFeatures % 8 == 0
            ? new[] { CudaLinearPath.Auto, CudaLinearPath.TensorCores, CudaLinearPath.Rows }
            : new[] { CudaLinearPath.Auto, CudaLinearPath.Rows };
        foreach (var path in paths)
        {
            y32.Fill(0xFF);
            y16.Fill(0xFF);
            ops.Linear(dx, rows, dw, outFeatures, inFeatures, y32, null, path);
            ops.Linear(dx, rows, dw, outFeatures, inFeatures, y16, null, path);
            AssertClose($"gemm.cu linear {type}→f32 {path} rows={rows} out={outFeatures} in={inFeatures}", y32.ToArray(), expected, float32Tolerance);
            AssertClose($"gemm.cu linear {type}→{type} {path} rows={rows} out={outFeatures} in={inFeatures}", widen(y16.ToArray()), expected, 1e-2);
        }
    }

    [Test]
    public void Fallback_bf16_matches_float64([Values(1, 3, 77, 300)] int rows, [Values(65, 1000)] int outFeatures, [Values(64, 96, 4096)] int inFeatures) =>
        CheckFallback(rows, outFeatures, inFeatures, v => Data.RoundToBf16(v), v => Data.ToBf16(v), v => Data.ToFloat(v), "bf16");

    [Test]
    public void Fallback_fp16_matches_float64([Values(1, 3, 77, 300)] int rows, [Values(65, 1000)] int outFeatures, [Values(64, 96, 4096)] int inFeatures) =>
        CheckFallback(rows, outFeatures, inFeatures, RoundToHalf, ToHalf, v => v.Select(h => (float)h).ToArray(), "fp16");

    [TestCase(77, 65, 333)]
    [TestCase(5, 7, 3)]
    [TestCase(130, 129, 1001)]
    public void Fallback_takes_any_in_on_the_rows_kernel(int rows, int outFeatures, int inFeatures)
    {
        CheckFallback(rows, outFeatures, inFeatures, v => Data.RoundToBf16(v), v => Data.ToBf16(v), v => Data.ToFloat(v), "bf16");
        CheckFallback(rows, outFeatures, inFeatures, RoundToHalf, ToHalf, v => v.Select(h => (float)h).ToArray(), "fp16");
        using var x = Context.Allocate<BFloat16>((long)rows * inFeatures);
        using var w = Context.Allocate<BFloat16>((long)outFeatures * inFeatures);
        using var y = Context.Allocate<float>((long)rows * outFeatures);
        Assert.Throws<ArgumentException>(() => Gpu.Ops.Linear(x, rows, w, outFeatures, inFeatures, y, null, CudaLinearPath.TensorCores));
    }

    [Test]
    public void CudaGemm_on_the_kernel_backend_is_the_fallback_and_auto_takes_cublas_here()
    {
        const int rows = 33, outFeatures = 200, inFeatures = 128;
        var random = new Random(9);
        float[] x = Data.RoundToBf16(Data.Normal(random, rows * inFeatures));
        float[] w = Data.RoundToBf16(Data.Normal(random, outFeatures * inFeatures, 0.05f));
        float[] expected = Float64Linear(x, rows, w, outFeatures, inFeatures);
        using var dx = Context.Upload<BFloat16>(Data.ToBf16(x));
        using var dw = Context.Upload<BFloat16>(Data.ToBf16(w));
        using var y = Context.Allocate<float>(expected.Length);
        using (var kernels = new CudaGemm(Context, CudaGemmBackend.Kernels, Gpu.Ops))
        {
            Assert.That(kernels.Backend, Is.EqualTo(CudaGemmBackend.Kernels));
            Assert.That(kernels.LibraryPath, Is.Null);
            y.Fill(0xFF);
            kernels.Linear(dx, rows, dw, outFeatures, inFeatures, y);
            AssertClose("CudaGemm(Kernels) bf16→f32", y.ToArray(), expected, 1e-5);
            using var f = Context.Allocate<float>(16);
            Assert.That(Assert.Throws<NotSupportedException>(() => kernels.Linear(f, 4, f, 4, 4, f))!.Message, Does.Contain("Single"));
        }
        using (var own = new CudaGemm(Context, CudaGemmBackend.Kernels)) // makes and disposes its own CudaOps
        {
            y.Fill(0xFF);
            own.Linear(dx, rows, dw, outFeatures, inFeatures, y);
            AssertClose("CudaGemm(Kernels, own ops) bf16→f32", y.ToArray(), expected, 1e-5);
        }
        using var auto = new CudaGemm(Context);
        Assert.That(auto.Backend, Is.EqualTo(CudaGemmBackend.Cublas), auto.FallbackReason);
        Assert.That(auto.FallbackReason, Is.Null);
    }
}

/// <summary>
/// The fallback GEMM (native/gemm.cu) against cuBLAS in the same run (category GpuBench): device events, median of 10
/// after 3 warm-ups, TFLOP/s = 2·rows·out·in / time; both outputs compared with each other (max|Δ| / max|ref|).
/// </summary>
[Category("GpuBench")]
public class GemmBenchmark
{
    internal static double Median(CudaStream stream, Action launch, int warmup = 3, int repeats = 10)
    {
        var context = Gpu.Context;
        using var start = context.CreateEvent();
        using var end = context.CreateEvent();
        for (int i = 0; i < warmup; i++)
            launch();
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            start.Record(stream);
            launch();
            end.Record(stream);
            times[i] = CudaEvent.ElapsedMilliseconds(start, end);
        }
        Array.Sort(times);
        return times[repeats / 2];
    }

    [TestCase(4096, 4096, 4096)]
    [TestCase(1, 14336, 4096)]
    [TestCase(1, 4096, 14336)]
    [TestCase(16, 4096, 4096)]
    [TestCase(512, 4096, 4096)]
    public void Fallback_against_cublas(int rows, int outFeatures, int inFeatures)
    {
        var context = Gpu.Context;
        var ops = Gpu.Ops;
        var random = new Random(rows + outFeatures + inFeatures);
        using var x = context.Upload<BFloat16>(Data.ToBf16(Data.Normal(random, rows * inFeatures)));
        using var w = context.Upload<BFloat16>(Data.ToBf16(Data.Normal(random, outFeatures * inFeatures, 0.05f)));
        using var yOurs = context.Allocate<BFloat16>((long)rows * outFeatures);
        using var yBlas = context.Allocate<BFloat16>((long)rows * outFeatures);
        using var stream = context.CreateStream();
        using var blas = new CudaGemm(context, CudaGemmBackend.Cublas);
        using var ours = new CudaGemm(context, CudaGemmBackend.Kernels, ops);
        double flops = 2.0 * rows * outFeatures * inFeatures, bytes = 2.0 * ((double)rows * inFeatures + (double)outFeatures * inFeatures + (double)rows * outFeatures);
        double tOurs = Median(stream, () => ours.Linear(x, rows, w, outFeatures, inFeatures, yOurs, stream));
        double tBlas = Median(stream, () => blas.Linear(x, rows, w, outFeatures, inFeatures, yBlas, stream));
        stream.Synchronize();
        double diff = Data.RelativeError(Data.ToFloat(yOurs.ToArray()), Data.ToFloat(yBlas.ToArray()));
        var tc = ops.Gemm.LinearBf16Bf16Kernel;
        var rowsKernel = ops.Gemm.LinearRowsBf16Bf16Kernel;
        Log.Write($"bench gemm bf16→bf16 rows={rows} out={outFeatures} in={inFeatures}: fallback {tOurs * 1000:F1} us = {flops / tOurs / 1e9:F1} TFLOP/s " +
                  $"({bytes / tOurs / 1e6:F0} GB/s); cuBLAS {tBlas * 1000:F1} us = {flops / tBlas / 1e9:F1} TFLOP/s ({bytes / tBlas / 1e6:F0} GB/s); " +
                  $"ratio {tBlas / tOurs:F2}; outputs differ by {diff:E2} (bf16 rounding); linear_bf16_bf16 {tc.Registers} regs {tc.LocalBytes} B local, " +
                  $"linear_rows_bf16_bf16 {rowsKernel.Registers} regs {rowsKernel.LocalBytes} B local");
        Assert.That(diff, Is.LessThanOrEqualTo(1e-2));
    }
}
