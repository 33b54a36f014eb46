namespace Horizon.Ops;

/// <summary>Weights of a <c>layer_norm</c> node: the per-channel scale γ [dim] and shift β [dim]
/// (HF <c>nn.LayerNorm</c>: <c>{name}.weight</c>, <c>{name}.bias</c>).</summary>
public sealed record LayerNormWeights(float[] Gamma, float[] Beta)
{
    public int Dim => Gamma.Length;
}

/// <summary>
/// <c>layer_norm</c>: y = (x − μ) / sqrt(σ² + eps) ⊙ γ + β, with μ and σ² the mean and the biased variance of
/// each row (Ba, Kiros &amp; Hinton 2016, Layer Normalization, eq. 4; PyTorch <c>nn.LayerNorm</c>).
/// </summary>
public static class LayerNorm
{
    /// <summary>x is (rows, dim) row-major, y is (rows, dim); dim = γ.Length. x and y may be the same span.</summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, LayerNormWeights weights, float eps, Span<float> y) =>
        Cpu.HyenaKernels.LayerNorm(x, rows, weights.Gamma, weights.Beta, eps, y);
}
