namespace Horizon.Ops;

/// <summary>Weights of an <c>rms_norm</c> node: the per-channel scale γ [dim].</summary>
public sealed record RmsNormWeights(float[] Gamma);

/// <summary>
/// <c>rms_norm</c>: y = x / sqrt(mean(x²) + eps) ⊙ γ over the last dimension (Zhang &amp; Sennrich 2019, eq. 4).
/// </summary>
public static class RmsNorm
{
    /// <summary>x is (rows, dim) row-major, y is (rows, dim); dim = γ.Length. x and y may be the same span.</summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, RmsNormWeights weights, float eps, Span<float> y) =>
        Cpu.CpuKernels.RmsNorm(x, rows, weights.Gamma, eps, y);
}
