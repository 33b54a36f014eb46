using Horizon.Ops;

namespace Horizon.Tests;

/// <summary>
/// The float64 state of the naive references: S per query head (heads, d_k, d_v), deliberately not shared across a
/// key/value group as the kernel does, and the whole history of pre-convolution q/k/v inputs.
/// </summary>
public sealed class GlaReferenceState
{
    public GlaReferenceState(int heads, int headKDim, int headVDim)
    {
        S = new double[heads][];
        for (int h = 0; h < heads; h++)
            S[h] = new double[headKDim * headVDim];
    }

    public double[][] S { get; }

    public List<double[]> QueryInputs { get; } = [];
    public List<double[]> KeyInputs { get; } = [];
    public List<double[]> ValueInputs { get; } = [];
}

/// <summary>
/// Naive float64 references written token by token from the equations (Yang et al. 2024, GLA §4.1 and §4.4;
/// fla's GLABlock conventions): no chunking, no shared kernel code with Horizon.Cpu.GlaKernels.
/// </summary>
public static class GlaReference
{
    /// <summary>y (out) = W x + bias for one token; W is [out, in] read row by row.</summary>
    public static double[] Linear(double[] x, Matrix w, float[]? bias = null)
    {
        var row = new float[w.Cols];
        var y = new double[w.Rows];
        for (int o = 0; o < w.Rows; o++)
        {
            w.ReadRow(o, row);
            double acc = bias is null ? 0.0 : bias[o];
            for (int i = 0; i < w.Cols; i++)
                acc += row[i] * x[i];
            y[o] = acc;
        }
        return y;
    }

    public static double Silu(double z) => z / (1.0 + Math.Exp(-z));

    public static double LogSigmoid(double z) => z >= 0 ? -Math.Log(1.0 + Math.Exp(-z)) : z - Math.Log(1.0 + Math.Exp(z));

    /// <summary>silu(depthwise causal conv) of the newest input in history: Σ_j W[c, j]·x_{n−1−(width−1)+j}[c].</summary>
    public static double[] ConvNewest(List<double[]> history, ShortConvWeights conv)
    {
        int n = history.Count;
        var y = new double[conv.Channels];
        for (int c = 0; c < conv.Channels; c++)
        {
            double acc = conv.Bias is null ? 0.0 : conv.Bias[c];
            for (int j = 0; j < conv.Width; j++)
            {
                int index = n - 1 - (conv.Width - 1) + j;
                if (index >= 0)
                    acc += conv.Weight[c * conv.Width + j] * history[index][c];
            }
            y[c] = Silu(acc);
        }
        return y;
    }

    /// <summary>x (rows, hidden) → y (rows, hidden) through the whole <c>gla</c> layer, advancing the state.</summary>
    public static double[] Gla(float[] x, int rows, GlaWeights w, GlaOptions o, GlaReferenceState state)
    {
        int d = o.Hidden, dk = o.HeadKDim, dv = o.HeadVDim, group = o.Heads / o.KvHeads;
        var y = new double[rows * d];
        for (int t = 0; t < rows; t++)
        {
            var xt = new double[d];
            for (int i = 0; i < d; i++)
                xt[i] = x[t * d + i];
            var q = Linear(xt, w.Query);
            var k = Linear(xt, w.Key);
            var v = Linear(xt, w.Value);
            if (o.ConvSize > 0)
            {
                state.QueryInputs.Add(q);
                state.KeyInputs.Add(k);
                state.ValueInputs.Add(v);
                q = ConvNewest(state.QueryInputs, w.QueryConv!);
                k = ConvNewest(state.KeyInputs, w.KeyConv!);
                v = ConvNewest(state.ValueInputs, w.ValueConv!);
            }
            var gk = Linear(Linear(xt, w.GateDown), w.GateUp, w.GateBias);
            for (int i = 0; i < gk.Length; i++)
            {
                gk[i] = LogSigmoid(gk[i]) / o.GateLogitNormalizer;
                if (o.ClampMin is double c)
                    gk[i] = Math.Max(gk[i], c);
            }

            var heads = new double[o.Heads * dv];
            for (int h = 0; h < o.Heads; h++)
            {
                int kvh = h / group;
                var s = state.S[h];
                // S_t = Diag(α_t) S_{t−1} + k_tᵀ v_t
                for (int i = 0; i < dk; i++)
                {
                    double alpha = Math.Exp(gk[kvh * dk + i]);
                    for (int j = 0; j < dv; j++)
                        s[i * dv + j] = alpha * s[i * dv + j] + k[kvh * dk + i] * v[kvh * dv + j];
                }
                // o_t = (d_k^{−½} q_t) S_t
                for (int j = 0; j < dv; j++)
                {
                    double acc = 0;
                    for (int i = 0; i < dk; i++)
                        acc += q[h * dk + i] / Math.Sqrt(dk) * s[i * dv + j];
                    heads[h * dv + j] = acc;
                }
            }

            double[]? gate = o.UseOutputGate ? Linear(xt, w.OutputGate!) : null;
            NormAndGate(heads, o.Heads, dv, w.NormWeight, o.NormEps, gate);
            var yt = Linear(heads, w.Output);
            Array.Copy(yt, 0, y, t * d, d);
        }
        return y;
    }

    /// <summary>x (rows, hidden) → y (rows, hidden) through the <c>linear_attention</c> layer (α ≡ 1).</summary>
    public static double[] LinearAttention(float[] x, int rows, LinearAttentionWeights w, LinearAttentionOptions o, GlaReferenceState state)
    {
        int d = o.Hidden, dk = o.HeadKDim, dv = o.HeadVDim, group = o.Heads / o.KvHeads;
        double scale = o.Scale ?? 1.0 / Math.Sqrt(dk);
        var y = new double[rows * d];
        for (int t = 0; t < rows; t++)
        {
            var xt = new double[d];
            for (int i = 0; i < d; i++)
                xt[i] = x[t * d + i];
            var q = Linear(xt, w.Query);
            var k = Linear(xt, w.Key);
            var v = Linear(xt, w.Value);
            var heads = new double[o.Heads * dv];
            for (int h = 0; h < o.Heads; h++)
            {
                int kvh = h / group;
                var s = state.S[h];
                for (int i = 0; i < dk; i++)
                    for (int j = 0; j < dv; j++)
                        s[i * dv + j] += k[kvh * dk + i] * v[kvh * dv + j];
                for (int j = 0; j < dv; j++)
                {
                    double acc = 0;
                    for (int i = 0; i < dk; i++)
                        acc += scale * q[h * dk + i] * s[i * dv + j];
                    heads[h * dv + j] = acc;
                }
            }
            double[]? gate = w.OutputGate is null ? null : Linear(xt, w.OutputGate);
            if (o.OutputNorm)
                NormAndGate(heads, o.Heads, dv, w.NormWeight, o.NormEps, gate);
            else if (gate is not null)
                for (int i = 0; i < heads.Length; i++)
                    heads[i] *= Silu(gate[i]);
            var yt = Linear(heads, w.Output);
            Array.Copy(yt, 0, y, t * d, d);
        }
        return y;
    }

    /// <summary>Per head: o ← o / sqrt(mean(o²) + eps) · γ, then o ← o · swish(gate) if there is a gate.</summary>
    private static void NormAndGate(double[] o, int heads, int dv, float[]? gamma, double eps, double[]? gate)
    {
        for (int h = 0; h < heads; h++)
        {
            double ms = 0;
            for (int j = 0; j < dv; j++)
                ms += o[h * dv + j] * o[h * dv + j];
            double inv = 1.0 / Math.Sqrt(ms / dv + eps);
            for (int j = 0; j < dv; j++)
            {
                double value = o[h * dv + j] * inv * (gamma is null ? 1.0 : gamma[j]);
                if (gate is not null)
                    value *= Silu(gate[h * dv + j]);
                o[h * dv + j] = value;
            }
        }
    }
}
