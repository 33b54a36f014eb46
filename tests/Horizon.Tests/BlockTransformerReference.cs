using Horizon.Ops;

namespace Horizon.Tests;

/// <summary>
/// Float64 references for <c>gpt_neox_layer</c> and <c>block_transformer</c>, written from the equations with plain
/// loops and sharing no code with the kernels: GPT-NeoX (Black et al. 2022, § 2.1; the Hugging Face GPTNeoXLayer
/// layout) over a whole sequence from position 0 with an explicit causal softmax per query, and the Block
/// Transformer (Ho et al. 2024, § 2) evaluated <b>token by token</b>: for every predicted token the block decoder
/// runs from scratch over the blocks before it and the token decoder from scratch over its local sequence
/// [prefix, earlier tokens of its block]; no cache, no batching, no masks across blocks. Shapes are row-major, in words.
/// </summary>
internal static class BlockTransformerReference
{
    /// <summary>One GPT-NeoX layer on x (n, hidden) at positions 0 … n − 1; returns y (n, hidden).</summary>
    public static double[] GptNeoXLayer(double[] x, int n, GptNeoXLayerWeights w, GptNeoXOptions o)
    {
        int d = o.Hidden;
        double[] attention = Attention(LayerNorm(x, n, w.InputLayerNorm, o.LayerNormEps), n, w.Attention, o);
        var y = new double[n * d];
        if (o.UseParallelResidual)
        {
            // y = x + attn(ln1(x)) + mlp(ln2(x))
            double[] mlp = Mlp(LayerNorm(x, n, w.PostAttentionLayerNorm, o.LayerNormEps), n, w.Mlp, o.Activation);
            for (int i = 0; i < y.Length; i++)
                y[i] = x[i] + attention[i] + mlp[i];
        }
        else
        {
            // h = x + attn(ln1(x)); y = h + mlp(ln2(h))
            var h = new double[n * d];
            for (int i = 0; i < h.Length; i++)
                h[i] = x[i] + attention[i];
            double[] mlp = Mlp(LayerNorm(h, n, w.PostAttentionLayerNorm, o.LayerNormEps), n, w.Mlp, o.Activation);
            for (int i = 0; i < y.Length; i++)
                y[i] = h[i] + mlp[i];
        }
        return y;
    }

    /// <summary>GPTNeoXModel on input embeddings x (n, hidden): every layer, then final_layer_norm.</summary>
    public static double[] GptNeoXStack(double[] x, int n, GptNeoXStackWeights w, GptNeoXOptions o)
    {
        double[] h = x;
        foreach (var layer in w.Layers)
            h = GptNeoXLayer(h, n, layer, o);
        return LayerNorm(h, n, w.FinalLayerNorm, o.LayerNormEps);
    }

    /// <summary>
    /// Block Transformer logits (n, V) for <paramref name="tokens"/> after <paramref name="padding"/> pads: row t is the
    /// distribution of the token after tokens[t]; NaN when that token is in block 0.
    /// </summary>
    public static double[] Logits(int[] tokens, BlockTransformerWeights w, BlockTransformerOptions o, int padding)
    {
        int blockLength = o.BlockLength, prefix = o.PrefixLength, vocab = o.VocabSize;
        int blockHidden = o.BlockDecoder.Hidden, tokenHidden = o.TokenDecoder.Hidden, lookup = o.EmbedderHidden;
        var stream = Enumerable.Repeat(o.PadTokenId, padding).Concat(tokens).ToArray();
        var logits = new double[tokens.Length * vocab];
        for (int t = 0; t < tokens.Length; t++)
        {
            int target = padding + t + 1;           // stream position of the token row t predicts
            int block = target / blockLength, offset = target % blockLength;
            if (block == 0)
            {
                Array.Fill(logits, double.NaN, t * vocab, vocab);
                continue;
            }
            // Embedder (§ 2.1): e_c = concat_r E[s_{c·L_B + r}] for the blocks c = 0 … block − 1 before the target.
            var embeds = new double[block * blockHidden];
            for (int c = 0; c < block; c++)
                for (int r = 0; r < blockLength; r++)
                {
                    double[] row = Row(w.EmbedderEmbeddings, stream[c * blockLength + r]);
                    Array.Copy(row, 0, embeds, c * blockHidden + r * lookup, lookup);
                }
            // Block decoder (§ 2.2): the context embedding of block − 1 is the last output row.
            double[] contexts = GptNeoXStack(embeds, block, w.BlockDecoder, o.BlockDecoder);
            double[] context = contexts[((block - 1) * blockHidden)..(block * blockHidden)];
            // Expansion (Conv1d, kernel 1): R prefix vectors of width D_T, consecutive in W_x g + b_x.
            double[] prefixVectors = Linear(context, 1, w.ExpansionWeight, w.ExpansionBias);
            // Token decoder (§ 2.3): [prefix_0 … prefix_{R−1}, T[s_{b·L_B}] … T[s_{b·L_B + offset − 1}]].
            int localRows = prefix + offset;
            var local = new double[localRows * tokenHidden];
            Array.Copy(prefixVectors, local, prefix * tokenHidden);
            for (int r = 0; r < offset; r++)
                Array.Copy(Row(w.TokenEmbeddings, stream[block * blockLength + r]), 0, local, (prefix + r) * tokenHidden, tokenHidden);
            double[] hidden = GptNeoXStack(local, localRows, w.TokenDecoder, o.TokenDecoder);
            double[] last = hidden[((localRows - 1) * tokenHidden)..(localRows * tokenHidden)];
            Array.Copy(Linear(last, 1, w.LmHead, null), 0, logits, t * vocab, vocab);
        }
        return logits;
    }

    // ---------------------------------------------------------------- pieces

    /// <summary>
    /// GPT-NeoX attention: per head h, q, k, v = the fused projection's outputs h·3d + [0, d), [d, 2d), [2d, 3d);
    /// RoPE on their first rotary_dim dimensions (pairs m, m + rot/2, angle p·θ^(−2m/rot)); causal softmax with
    /// scale 1/√d; dense.
    /// </summary>
    public static double[] Attention(double[] x, int n, GptNeoXAttentionWeights w, GptNeoXOptions o)
    {
        int hidden = o.Hidden, heads = o.Heads, d = o.HeadDim;
        double[] fused = Linear(x, n, w.QueryKeyValue, w.QueryKeyValueBias); // (n, heads, 3, d)
        double[] Part(int position, int head, int which)
        {
            double[] v = fused.AsSpan((position * 3 * hidden) + (head * 3 * d) + (which * d), d).ToArray();
            return which == 2 ? v : Rotate(v, position, o.Rope.RotaryDim, o.Rope.Theta, o.Rope.Scaling.Factor);
        }
        var attended = new double[n * hidden];
        for (int head = 0; head < heads; head++)
        {
            for (int i = 0; i < n; i++)
            {
                double[] q = Part(i, head, 0);
                var scores = new double[i + 1];
                double max = double.NegativeInfinity;
                for (int j = 0; j <= i; j++)
                {
                    double[] k = Part(j, head, 1);
                    double s = 0;
                    for (int m = 0; m < d; m++)
                        s += q[m] * k[m];
                    scores[j] = s / Math.Sqrt(d);
                    max = Math.Max(max, scores[j]);
                }
                double sum = 0;
                for (int j = 0; j <= i; j++)
                    sum += scores[j] = Math.Exp(scores[j] - max);
                for (int j = 0; j <= i; j++)
                {
                    double[] v = Part(j, head, 2);
                    for (int m = 0; m < d; m++)
                        attended[i * hidden + head * d + m] += scores[j] / sum * v[m];
                }
            }
        }
        return Linear(attended, n, w.Dense, w.DenseBias);
    }

    private static double[] Rotate(double[] v, int position, int rotaryDim, double theta, double factor)
    {
        var y = (double[])v.Clone();
        int half = rotaryDim / 2;
        for (int m = 0; m < half; m++)
        {
            double angle = position / factor * Math.Pow(theta, -2.0 * m / rotaryDim);
            y[m] = v[m] * Math.Cos(angle) - v[m + half] * Math.Sin(angle);
            y[m + half] = v[m + half] * Math.Cos(angle) + v[m] * Math.Sin(angle);
        }
        return y;
    }

    private static double[] Mlp(double[] x, int n, GeluMlpWeights w, GeluApproximation approximation)
    {
        double[] h = Linear(x, n, w.Fc1, w.Fc1Bias);
        for (int i = 0; i < h.Length; i++)
        {
            double v = h[i];
            h[i] = approximation == GeluApproximation.None
                ? 0.5 * v * (1 + Erf(v / Math.Sqrt(2)))
                : 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
        }
        return Linear(h, n, w.Fc2, w.Fc2Bias);
    }

    public static double[] LayerNorm(double[] x, int n, LayerNormWeights w, double eps)
    {
        int d = w.Dim;
        var y = new double[n * d];
        for (int r = 0; r < n; r++)
        {
            double mean = 0, variance = 0;
            for (int i = 0; i < d; i++)
                mean += x[r * d + i];
            mean /= d;
            for (int i = 0; i < d; i++)
                variance += (x[r * d + i] - mean) * (x[r * d + i] - mean);
            variance /= d;
            for (int i = 0; i < d; i++)
                y[r * d + i] = (x[r * d + i] - mean) / Math.Sqrt(variance + eps) * w.Gamma[i] + w.Beta[i];
        }
        return y;
    }

    /// <summary>y (n, out) = x (n, in) · Wᵀ + b.</summary>
    public static double[] Linear(double[] x, int n, Matrix weight, float[]? bias)
    {
        var y = new double[n * weight.Rows];
        var row = new float[weight.Cols];
        for (int o = 0; o < weight.Rows; o++)
        {
            weight.ReadRow(o, row);
            for (int r = 0; r < n; r++)
            {
                double s = bias is null ? 0 : bias[o];
                for (int i = 0; i < weight.Cols; i++)
                    s += x[r * weight.Cols + i] * row[i];
                y[r * weight.Rows + o] = s;
            }
        }
        return y;
    }

    private static double[] Row(Matrix table, int id)
    {
        var row = new float[table.Cols];
        table.ReadRow(id, row);
        return Array.ConvertAll(row, v => (double)v);
    }

    /// <summary>erf(x) = (2/√π)·e^(−x²)·Σ_n 2ⁿx^(2n+1)/(1·3⋯(2n+1)), all terms of one sign; ±1 beyond |x| = 6.</summary>
    private static double Erf(double x)
    {
        if (Math.Abs(x) > 6)
            return Math.Sign(x);
        double term = x, sum = x;
        for (int n = 0; n < 1000 && Math.Abs(term) > 1e-18 * Math.Abs(sum); n++)
        {
            term *= 2 * x * x / (2 * n + 3);
            sum += term;
        }
        return 2 / Math.Sqrt(Math.PI) * Math.Exp(-x * x) * sum;
    }
}

/// <summary>Random small Block Transformers and GPT-NeoX layers for the tests (F32 weights, O(1) activations).</summary>
internal static class BlockTransformerSetup
{
    /// <summary>Sizes of one GPT-NeoX stack: hidden, heads, intermediate, rotary dims, layers, residual form, GELU.</summary>
    public sealed record Stack(int Hidden, int Heads, int Intermediate, int RotaryDim, int Layers, bool Parallel, GeluApproximation Activation)
    {
        public GptNeoXOptions Options(double theta = 10000) =>
            new(Hidden, Heads, Intermediate, new RopeTable(Hidden / Heads, theta, RopeScaling.None, RotaryDim))
            {
                UseParallelResidual = Parallel,
                Activation = Activation,
                LayerNormEps = 1e-5f,
            };
    }

    public static GptNeoXLayerWeights Layer(Random random, GptNeoXOptions o, string prefix, bool biases = true)
    {
        int d = o.Hidden, i = o.Intermediate;
        return new GptNeoXLayerWeights(
            Norm(random, d),
            new GptNeoXAttentionWeights(
                Linear(random, prefix + "attention.query_key_value.weight", 3 * d, d),
                biases ? Floats(random, 3 * d, 0.2f) : null,
                Linear(random, prefix + "attention.dense.weight", d, d),
                biases ? Floats(random, d, 0.1f) : null),
            Norm(random, d),
            new GeluMlpWeights(
                Linear(random, prefix + "mlp.dense_h_to_4h.weight", i, d), biases ? Floats(random, i, 0.3f) : null,
                Linear(random, prefix + "mlp.dense_4h_to_h.weight", d, i), biases ? Floats(random, d, 0.1f) : null));
    }

    public static GptNeoXStackWeights StackWeights(Random random, GptNeoXOptions o, int layers, string prefix) =>
        new(Enumerable.Range(0, layers).Select(l => Layer(random, o, $"{prefix}gpt_neox.layers.{l}.")).ToArray(), Norm(random, o.Hidden));

    /// <summary>A random model: vocab V, block length L_B, prefix R, block and token decoder stacks.</summary>
    public static (BlockTransformerWeights Weights, BlockTransformerOptions Options) Model(
        int seed, int vocab, int blockLength, int prefix, Stack block, Stack token, int padTokenId = 0)
    {
        var random = new Random(seed);
        var blockOptions = block.Options();
        var tokenOptions = token.Options(theta: 500);
        var options = new BlockTransformerOptions(blockLength, prefix, vocab, blockOptions, block.Layers, tokenOptions, token.Layers)
        {
            PadTokenId = padTokenId,
        };
        var weights = new BlockTransformerWeights(
            Matrix.FromFloats("embedder.embeddings.weight", vocab, block.Hidden / blockLength, Floats(random, vocab * (block.Hidden / blockLength), 1.5f)),
            StackWeights(random, blockOptions, block.Layers, "block_decoder."),
            Linear(random, "token_decoder.expansion_layer.weight", prefix * token.Hidden, block.Hidden),
            Floats(random, prefix * token.Hidden, 0.2f),
            Matrix.FromFloats("token_decoder.gpt_neox.embed_in.weight", vocab, token.Hidden, Floats(random, vocab * token.Hidden, 1.5f)),
            StackWeights(random, tokenOptions, token.Layers, "token_decoder."),
            Linear(random, "token_decoder.embed_out.weight", vocab, token.Hidden, gain: 3));
        return (weights, options);
    }

    public static float[] Floats(Random random, int count, float scale)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    /// <summary>[rows, cols] uniform with variance gain²/cols, so a unit-variance input gives ~gain-variance outputs.</summary>
    public static Matrix Linear(Random random, string name, int rows, int cols, float gain = 1) =>
        Matrix.FromFloats(name, rows, cols, Floats(random, rows * cols, gain * MathF.Sqrt(3f / cols)));

    /// <summary>γ in [0.5, 1.5) and β in [−0.2, 0.2): a γ or β that is not applied shows.</summary>
    public static LayerNormWeights Norm(Random random, int dim) =>
        new(Enumerable.Range(0, dim).Select(_ => (float)(0.5 + random.NextDouble())).ToArray(), Floats(random, dim, 0.2f));
}
