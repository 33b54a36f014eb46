namespace Horizon.Ops;

/// <summary>Which GELU a <c>gelu_mlp</c> uses, as PyTorch's <c>F.gelu(approximate=...)</c> names them.</summary>
public enum GeluApproximation
{
    /// <summary>Exact: GELU(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)) (Hendrycks &amp; Gimpel 2016, §2).</summary>
    None,
    /// <summary>GELU(x) ≈ ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (Hendrycks &amp; Gimpel 2016, §2). HyenaDNA's MLP uses this one.</summary>
    Tanh,
}

/// <summary>Weights of a <c>gelu_mlp</c> node: fc1 [intermediate, hidden] (+ bias), fc2 [hidden, intermediate] (+ bias)
/// (HyenaDNA: <c>mlp.fc1</c>, <c>mlp.fc2</c>, intermediate = <c>d_inner</c>).</summary>
public sealed record GeluMlpWeights(Matrix Fc1, float[]? Fc1Bias, Matrix Fc2, float[]? Fc2Bias)
{
    public int Hidden => Fc1.Cols;
    public int Intermediate => Fc1.Rows;
}

/// <summary>
/// <c>gelu_mlp</c>: y = W₂·GELU(W₁x + b₁) + b₂, the Transformer position-wise feed-forward network (Vaswani et al.
/// 2017, eq. 2) with GELU in place of ReLU.
/// </summary>
public static class GeluMlp
{
    /// <summary>x is (rows, hidden), y is (rows, hidden). y must not overlap x.</summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, GeluMlpWeights weights, GeluApproximation approximation, Span<float> y) =>
        Cpu.HyenaKernels.GeluMlp(x, rows, weights, approximation, y);
}
