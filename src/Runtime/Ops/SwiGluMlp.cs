namespace Horizon.Ops;

/// <summary>Weights of a <c>swiglu_mlp</c> node: gate and up [intermediate, hidden], down [hidden, intermediate].</summary>
public sealed record SwiGluMlpWeights(Matrix Gate, Matrix Up, Matrix Down)
{
    public int Hidden => Gate.Cols;
    public int Intermediate => Gate.Rows;

    /// <summary>
    /// Weights from a fused gate-and-up tensor [2·intermediate, hidden], gate rows first and up rows second (legacy
    /// fla GLA's <c>mlp.gate_proj.weight</c>), and down [hidden, intermediate]. Gate and up are views of the fused
    /// tensor's memory, not copies.
    /// </summary>
    public static SwiGluMlpWeights FromFusedGateUp(Matrix gateUp, Matrix down)
    {
        ArgumentNullException.ThrowIfNull(gateUp);
        ArgumentNullException.ThrowIfNull(down);
        if (gateUp.Rows % 2 != 0)
            throw new ModelLoadException($"swiglu_mlp: fused gate/up tensor '{gateUp.Name}' has {gateUp.Rows} rows; gate and up need an even count");
        int intermediate = gateUp.Rows / 2;
        int half = checked(intermediate * gateUp.Cols * gateUp.DType.ByteSize());
        var gate = new Matrix($"{gateUp.Name}[0:{intermediate}]", intermediate, gateUp.Cols, gateUp.DType, gateUp.Data[..half]);
        var up = new Matrix($"{gateUp.Name}[{intermediate}:{2 * intermediate}]", intermediate, gateUp.Cols, gateUp.DType, gateUp.Data[half..]);
        if (down.Rows != gateUp.Cols || down.Cols != intermediate)
            throw new ModelLoadException($"swiglu_mlp: down '{down.Name}' is [{down.Rows}, {down.Cols}], expected [{gateUp.Cols}, {intermediate}] to match '{gateUp.Name}'");
        return new SwiGluMlpWeights(gate, up, down);
    }
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
