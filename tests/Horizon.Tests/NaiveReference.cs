namespace Horizon.Tests;

/// <summary>
/// Float64 references written straight from the equations, with plain loops and no tiling, so they share no
/// code or evaluation order with the kernels they check. Shapes are row-major, written in words.
/// </summary>
internal static class NaiveReference
{
    /// <summary>y (rows, out) = x (rows, in) · Wᵀ + b, W (out, in), b (out) or null.</summary>
    public static double[] Linear(double[] x, int rows, double[] weight, int outFeatures, int inFeatures, double[]? bias)
    {
        var y = new double[rows * outFeatures];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < outFeatures; o++)
            {
                double sum = bias is null ? 0 : bias[o];
                for (int i = 0; i < inFeatures; i++)
                    sum += x[r * inFeatures + i] * weight[o * inFeatures + i];
                y[r * outFeatures + o] = sum;
            }
        return y;
    }

    /// <summary>y = x / sqrt(mean(x²) + eps) ⊙ γ per row; x (rows, dim).</summary>
    public static double[] RmsNorm(double[] x, int rows, double[] gamma, double eps)
    {
        int dim = gamma.Length;
        var y = new double[rows * dim];
        for (int r = 0; r < rows; r++)
        {
            double sumOfSquares = 0;
            for (int i = 0; i < dim; i++)
                sumOfSquares += x[r * dim + i] * x[r * dim + i];
            double inverseRms = 1.0 / Math.Sqrt(sumOfSquares / dim + eps);
            for (int i = 0; i < dim; i++)
                y[r * dim + i] = x[r * dim + i] * inverseRms * gamma[i];
        }
        return y;
    }

    /// <summary>
    /// Rotate-half RoPE on x (rows, heads, d): pair (i, i + d/2) of the token at position start + r turns by the
    /// angle position / factor · theta^(−2i/d).
    /// </summary>
    public static double[] Rope(double[] x, int rows, int heads, int headDim, int startPosition, double theta, double factor)
    {
        var y = (double[])x.Clone();
        int half = headDim / 2;
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++)
                {
                    double angle = (startPosition + r) / factor * Math.Pow(theta, -2.0 * i / headDim);
                    int baseIndex = (r * heads + h) * headDim;
                    double a = x[baseIndex + i], b = x[baseIndex + i + half];
                    y[baseIndex + i] = a * Math.Cos(angle) - b * Math.Sin(angle);
                    y[baseIndex + i + half] = b * Math.Cos(angle) + a * Math.Sin(angle);
                }
        return y;
    }

    /// <summary>
    /// Causal attention with the full score row: for query r (position start + r) and head h, scores over keys
    /// 0 … start + r of key/value head h / (heads / kvHeads), softmax, weighted sum of values.
    /// q (queries, heads, d), keys and values (keyCount, kvHeads, d); returns (queries, heads, d).
    /// </summary>
    public static double[] CausalAttention(double[] q, int queries, int heads, double[] keys, double[] values, int kvHeads, int headDim, int queryStart)
    {
        var output = new double[queries * heads * headDim];
        int group = heads / kvHeads;
        double scale = 1.0 / Math.Sqrt(headDim);
        for (int r = 0; r < queries; r++)
            for (int h = 0; h < heads; h++)
            {
                int kvHead = h / group;
                int visible = queryStart + r + 1;
                var scores = new double[visible];
                double max = double.NegativeInfinity;
                for (int t = 0; t < visible; t++)
                {
                    double dot = 0;
                    for (int i = 0; i < headDim; i++)
                        dot += q[(r * heads + h) * headDim + i] * keys[(t * kvHeads + kvHead) * headDim + i];
                    scores[t] = dot * scale;
                    max = Math.Max(max, scores[t]);
                }
                double sum = 0;
                for (int t = 0; t < visible; t++)
                {
                    scores[t] = Math.Exp(scores[t] - max);
                    sum += scores[t];
                }
                for (int t = 0; t < visible; t++)
                    for (int i = 0; i < headDim; i++)
                        output[(r * heads + h) * headDim + i] += scores[t] / sum * values[(t * kvHeads + kvHead) * headDim + i];
            }
        return output;
    }

    /// <summary>y = W_down (silu(W_gate x) ⊙ W_up x), silu(z) = z / (1 + e^−z); x (rows, hidden).</summary>
    public static double[] SwiGlu(double[] x, int rows, double[] gate, double[] up, double[] down, int hidden, int intermediate)
    {
        double[] g = Linear(x, rows, gate, intermediate, hidden, null);
        double[] u = Linear(x, rows, up, intermediate, hidden, null);
        var h = new double[g.Length];
        for (int i = 0; i < h.Length; i++)
            h[i] = g[i] / (1 + Math.Exp(-g[i])) * u[i];
        return Linear(h, rows, down, hidden, intermediate, null);
    }
}
