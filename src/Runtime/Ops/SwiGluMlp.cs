namespace Horizon.Ops;

/// <summary>Weights of a <c>swiglu_mlp</c> node: gate and up [intermediate, hidden], down [hidden, intermediate].</summary>
public sealed record SwiGluMlpWeights(Matrix Gate, Matrix Up, Matrix Down)
{
    public int Hidden => Gate.Cols;
    public int Intermediate => Gate.Rows;
}

/// <summary>
/// <c>swiglu_mlp</c>: y = W_down (silu(W_gate x) ⊙ W_up x) (Shazeer 2020, "GLU Variants", eq. 6 with Swish₁).
/// </summary>
public static class SwiGluMlp
{
    /// <summary>x is (rows, hidden), y is (rows, hidden). y must not overlap x.</summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, SwiGluMlpWeights weights, Span<float> y) =>
        Cpu.CpuKernels.SwiGluMlp(x, rows, weights, y);
}
