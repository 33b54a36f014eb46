using Horizon.Cuda;
using NUnit.Framework;

namespace Horizon.Gpu.Tests;

/// <summary>
/// The one device context of the test run (device 0's primary context) and the launchers, made once before the
/// first test and released after the last.
/// </summary>
[SetUpFixture]
public sealed class Gpu
{
    private static CudaContext? s_context;
    private static CudaOps? s_ops;

    public static CudaContext Context => s_context ?? throw new InvalidOperationException("no CUDA context: the set-up fixture did not run");

    public static CudaOps Ops => s_ops ?? throw new InvalidOperationException("no CUDA context: the set-up fixture did not run");

    [OneTimeSetUp]
    public void Start()
    {
        s_context = CudaContext.CreatePrimary(0);
        s_ops = new CudaOps(s_context);
        s_ops.Preload(); // module JIT compilation happens here, once, and a PTX problem fails every test with its message
        Log.Write($"# {s_context}");
    }

    [OneTimeTearDown]
    public void Stop()
    {
        s_ops?.Dispose();
        s_context?.Dispose();
    }
}

/// <summary>
/// Figures the tests measure (errors, timings), one line each, to the file named by HORIZON_GPU_LOG when set (the
/// device recipe brings it back) and to the test's own output.
/// </summary>
public static class Log
{
    private static readonly object Gate = new();

    public static void Write(string line)
    {
        TestContext.Out.WriteLine(line);
        string? path = Environment.GetEnvironmentVariable("HORIZON_GPU_LOG");
        if (string.IsNullOrEmpty(path))
            return;
        lock (Gate)
            File.AppendAllText(path, line + Environment.NewLine);
    }
}

/// <summary>Random inputs, bf16 rounding and error measures shared by the tests.</summary>
public static class Data
{
    /// <summary>n standard-normal floats (Box-Muller), like torch.randn.</summary>
    public static float[] Normal(Random random, int n, float scale = 1f)
    {
        var values = new float[n];
        for (int i = 0; i < n; i += 2)
        {
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            double radius = Math.Sqrt(-2.0 * Math.Log(u1));
            values[i] = (float)(radius * Math.Cos(2 * Math.PI * u2)) * scale;
            if (i + 1 < n)
                values[i + 1] = (float)(radius * Math.Sin(2 * Math.PI * u2)) * scale;
        }
        return values;
    }

    /// <summary>n floats uniform in [−scale, scale).</summary>
    public static float[] Uniform(Random random, int n, float scale = 1f)
    {
        var values = new float[n];
        for (int i = 0; i < n; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    public static BFloat16[] ToBf16(ReadOnlySpan<float> values)
    {
        var result = new BFloat16[values.Length];
        BFloat16.FromSingle(values, result);
        return result;
    }

    public static float[] ToFloat(ReadOnlySpan<BFloat16> values)
    {
        var result = new float[values.Length];
        BFloat16.ToSingle(values, result);
        return result;
    }

    /// <summary>The values rounded to bf16 and widened back (what a bf16 tensor of them holds).</summary>
    public static float[] RoundToBf16(ReadOnlySpan<float> values) => ToFloat(ToBf16(values));

    public static double MaxAbsError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length));
        double worst = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double e = Math.Abs((double)actual[i] - expected[i]);
            if (double.IsNaN(e))
                return double.NaN;
            worst = Math.Max(worst, e);
        }
        return worst;
    }

    public static double MaxAbs(ReadOnlySpan<float> values)
    {
        double worst = 0;
        foreach (float v in values)
            worst = Math.Max(worst, Math.Abs(v));
        return worst;
    }

    /// <summary>max|actual − expected| / max|expected| (the CPU kernel tests' measure).</summary>
    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected) =>
        MaxAbsError(actual, expected) / Math.Max(MaxAbs(expected), 1e-30);

    public static void AssertAllFinite(ReadOnlySpan<float> values, string what)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
                Assert.Fail($"{what}: element {i} is {values[i]} (not written, or not finite)");
        }
    }
}
