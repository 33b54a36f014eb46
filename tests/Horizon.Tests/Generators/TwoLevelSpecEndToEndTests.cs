using System.Reflection;
using System.Runtime.InteropServices;
using Horizon.Cpu;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Tests.Generators;

/// <summary>
/// A two-level spec whose levels mix kinds (a GPT-NeoX block decoder with a parallel residual and a tanh GELU; a token
/// decoder of Llama-style attention, RMSNorm and SwiGLU, with a tied head, a literal pad token and the prefix projection
/// stored as a kernel-1 Conv1d [R·D_T, D_B, 1]), end to end: compiled by the generator harness, loaded from a synthetic
/// checkpoint, and checked against (a) a reference composed from the ops that recomputes every prediction from scratch
/// (the block decoder over the blocks before it, the token decoder over [prefix, the block's earlier tokens]), so the
/// generated orchestration is checked for a mixer kind the Block Transformer op does not have, and (b) decode token by
/// token, uneven chunks and a mid-block fork against one prefill; with first-block paddings 2 and 0.
/// </summary>
public class TwoLevelSpecEndToEndTests
{
    private const int Vocab = 40, BlockLength = 3, Prefix = 2, BlockDim = 24, TokenDim = 16, PadToken = 1, Tokens = 31;
    private const float Eps = 1e-5f;

    private const string Spec = """
        {
          "model": "MixedLevelsModel",
          "namespace": "Horizon.Tests.Specs",
          "architectures": ["MixedLevelsForCausalLM"],
          "symbols": {
            "vocab": { "config": "vocab_size" },
            "block_length": { "config": "block_length" },
            "prefix_tokens": { "config": "token_decoder.expansion_ratio" },
            "block_dim": { "config": "block_decoder.config.hidden_size" },
            "token_dim": { "config": "token_decoder.config.hidden_size" },
            "act": { "config": "block_decoder.config.hidden_act", "type": "gelu", "default": "gelu" }
          },
          "levels": {
            "block_decoder": {
              "embedding": { "kind": "lookup_concat", "name": "embedder", "weight": "embedder.weight", "vocab": "vocab", "dim": "block_dim", "block_length": "block_length", "pad_token": 1 },
              "blocks": [
                {
                  "name": "block_layers", "repeat": 2, "prefix": "block.{layer}.", "parallel_residual": true,
                  "mixer_norm": { "kind": "layer_norm", "name": "ln1", "weight": "ln1.weight", "eps": 1e-5 },
                  "mixer": { "kind": "gpt_neox_attention", "name": "attention", "heads": 3, "rotary_pct": 0.5, "rope_theta": 10000, "weights": { "query_key_value": "qkv", "output": "dense" } },
                  "mlp_norm": { "kind": "layer_norm", "name": "ln2", "weight": "ln2.weight", "eps": 1e-5 },
                  "mlp": { "kind": "gelu_mlp", "name": "mlp", "intermediate": 32, "approximation": "act", "weights": { "fc1": "fc1", "fc2": "fc2" } }
                }
              ],
              "final_norm": { "kind": "layer_norm", "name": "block_norm", "weight": "block.norm.weight", "bias": "block.norm.bias", "eps": 1e-5 }
            },
            "token_decoder": {
              "embedding": { "name": "token_embed", "weight": "token.embed.weight", "vocab": "vocab", "dim": "token_dim" },
              "prefix_projection": { "name": "expansion", "prefix_tokens": "prefix_tokens", "weight": "expansion.weight" },
              "blocks": [
                {
                  "name": "token_layers", "repeat": 2, "prefix": "token.{layer}.",
                  "mixer_norm": { "kind": "rms_norm", "name": "attn_norm", "weight": "attn_norm.weight", "eps": 1e-5 },
                  "mixer": { "kind": "attention", "name": "attn", "heads": 2, "kv_heads": 1, "head_dim": 8, "rope": "config", "weights": { "query": "q", "key": "k", "value": "v", "output": "o" } },
                  "mlp_norm": { "kind": "rms_norm", "name": "mlp_norm", "weight": "mlp_norm.weight", "eps": 1e-5 },
                  "mlp": { "kind": "swiglu_mlp", "name": "mlp", "intermediate": 24, "weights": { "gate": "gate", "up": "up", "down": "down" } }
                }
              ],
              "final_norm": { "kind": "rms_norm", "name": "norm", "weight": "token.norm.weight", "eps": 1e-5 }
            }
          },
          "lm_head": { "name": "lm_head", "tied": true }
        }
        """;

    private const string Config = """
        { "architectures": ["MixedLevelsForCausalLM"], "vocab_size": 40, "block_length": 3, "rope_theta": 500.0,
          "block_decoder": { "config": { "hidden_size": 24, "hidden_act": "gelu_new" } },
          "token_decoder": { "expansion_ratio": 2, "config": { "hidden_size": 16 } } }
        """;

    private static string _directory = "";
    private static Func<string, ICausalLanguageModel> _load = null!;

    [OneTimeSetUp]
    public void CompileAndWriteCheckpoint()
    {
        var (run, output) = GeneratorHarness.Run((GeneratorHarness.SpecPath("mixed-levels.model.json"), Spec));
        Assert.That(run.Diagnostics.Select(d => d.ToString()), Is.Empty);
        Assert.That(GeneratorHarness.CompileProblems(output).Select(d => d.ToString()), Is.Empty);
        using var image = new MemoryStream();
        var emitted = output.Emit(image);
        Assert.That(emitted.Success, string.Join("\n", emitted.Diagnostics));
        var load = Assembly.Load(image.ToArray()).GetType("Horizon.Tests.Specs.MixedLevelsModel", throwOnError: true)!.GetMethod("Load", [typeof(string)])!;
        _load = directory =>
        {
            try
            {
                return (ICausalLanguageModel)load.Invoke(null, [directory])!;
            }
            catch (TargetInvocationException e) when (e.InnerException is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
                throw;
            }
        };

        var random = new Random(21);
        var tensors = new List<(string Name, SafeTensorsDType DType, long[] Shape, byte[] Data)>();
        void Add(string name, long[] shape, float scale, float offset = 0)
        {
            var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
            for (int i = 0; i < values.Length; i++)
                values[i] = offset + scale * (float)(2 * random.NextDouble() - 1);
            tensors.Add((name, SafeTensorsDType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray()));
        }
        void Linear(string name, int rows, int cols) => Add(name, [rows, cols], 1.7f / MathF.Sqrt(cols));
        void Scale(string name, int length) => Add(name, [length], 0.5f, 1f);

        Add("embedder.weight", [Vocab, BlockDim / BlockLength], 1f);
        for (int l = 0; l < 2; l++)
        {
            Scale($"block.{l}.ln1.weight", BlockDim);
            Scale($"block.{l}.ln2.weight", BlockDim);
            Linear($"block.{l}.qkv.weight", 3 * BlockDim, BlockDim);
            Linear($"block.{l}.dense.weight", BlockDim, BlockDim);
            Linear($"block.{l}.fc1.weight", 32, BlockDim);
            Linear($"block.{l}.fc2.weight", BlockDim, 32);
        }
        Scale("block.norm.weight", BlockDim);
        Add("block.norm.bias", [BlockDim], 0.2f);
        Add("expansion.weight", [Prefix * TokenDim, BlockDim, 1], 1.7f / MathF.Sqrt(BlockDim));
        Add("token.embed.weight", [Vocab, TokenDim], 1f);
        for (int l = 0; l < 2; l++)
        {
            Scale($"token.{l}.attn_norm.weight", TokenDim);
            Scale($"token.{l}.mlp_norm.weight", TokenDim);
            Linear($"token.{l}.q.weight", 16, TokenDim);
            Linear($"token.{l}.k.weight", 8, TokenDim);
            Linear($"token.{l}.v.weight", 8, TokenDim);
            Linear($"token.{l}.o.weight", TokenDim, 16);
            Linear($"token.{l}.gate.weight", 24, TokenDim);
            Linear($"token.{l}.up.weight", 24, TokenDim);
            Linear($"token.{l}.down.weight", TokenDim, 24);
        }
        Scale("token.norm.weight", TokenDim);

        _directory = Path.Combine(Path.GetTempPath(), "horizon-two-level", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_directory);
        File.WriteAllText(Path.Combine(_directory, "config.json"), Config);
        SafeTensorsWriter.Write(Path.Combine(_directory, "model.safetensors"), tensors);
    }

    [OneTimeTearDown]
    public void DeleteCheckpoint()
    {
        if (_directory.Length > 0 && Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }

    private static int[] TokenIds(int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, Tokens).Select(_ => random.Next(Vocab)).ToArray();
    }

    private static IBlockModelState NewState(ICausalLanguageModel model, int padding)
    {
        var state = (IBlockModelState)model.CreateState(Tokens);
        state.Reset(padding);
        return state;
    }

    // ---- The reference: every prediction from scratch, through the ops ------------------------------------------

    private static float[] ReferenceLogits(ModelDirectory d, int[] tokens, int padding)
    {
        var embedder = d.Matrix("embedder.weight", Vocab, BlockDim / BlockLength);
        var tokenEmbedding = d.Matrix("token.embed.weight", Vocab, TokenDim);
        var neox = GptNeoXAttention.CreateOptions(d.Config, BlockDim, "block", 3, "heads", 0.5f, "rotary", 10000f, "theta");
        var attention = new AttentionOptions(TokenDim, 2, 1, 8, RopeTable.FromConfig(d.Config, 8));
        var expansion = WeightConversion.ToSingleArray(d.Get("expansion.weight").Data.Span, WeightDType.F32);
        var expansionMatrix = new Matrix("expansion", Prefix * TokenDim, BlockDim, WeightDType.F32, MemoryMarshal.AsBytes(expansion.AsSpan()).ToArray());
        int[] stream = [.. Enumerable.Repeat(PadToken, padding), .. tokens];
        var logits = new float[tokens.Length * Vocab];

        for (int t = 0; t < tokens.Length; t++)
        {
            int target = padding + t + 1, block = target / BlockLength, offset = target % BlockLength;
            if (block == 0)
            {
                logits.AsSpan(t * Vocab, Vocab).Fill(float.NaN);
                continue;
            }
            // The block decoder over blocks 0 … block − 1, from scratch: its last row is g_{block−1}.
            var x = new float[block * BlockDim];
            for (int b = 0; b < block; b++)
                for (int r = 0; r < BlockLength; r++)
                    embedder.ReadRow(stream[b * BlockLength + r], x.AsSpan(b * BlockDim + r * (BlockDim / BlockLength), BlockDim / BlockLength));
            for (int l = 0; l < 2; l++)
            {
                string p = $"block.{l}.";
                var ln1 = new LayerNormWeights(d.Vector(p + "ln1.weight", BlockDim), new float[BlockDim]);
                var ln2 = new LayerNormWeights(d.Vector(p + "ln2.weight", BlockDim), new float[BlockDim]);
                var normed = new float[x.Length];
                var attended = new float[x.Length];
                var mlp = new float[x.Length];
                LayerNorm.Forward(x, block, ln1, Eps, normed);
                GptNeoXAttention.Forward(normed, block, new GptNeoXAttentionWeights(d.Matrix(p + "qkv.weight", 3 * BlockDim, BlockDim), null, d.Matrix(p + "dense.weight", BlockDim, BlockDim), null),
                    neox, new KvCache(block, 3, 8), attended);
                LayerNorm.Forward(x, block, ln2, Eps, normed);
                GeluMlp.Forward(normed, block, new GeluMlpWeights(d.Matrix(p + "fc1.weight", 32, BlockDim), null, d.Matrix(p + "fc2.weight", BlockDim, 32), null), GeluApproximation.Tanh, mlp);
                for (int i = 0; i < x.Length; i++)
                    x[i] += attended[i] + mlp[i]; // parallel residual
            }
            var g = new float[BlockDim];
            LayerNorm.Forward(x.AsSpan((block - 1) * BlockDim, BlockDim), 1, new LayerNormWeights(d.Vector("block.norm.weight", BlockDim), d.Vector("block.norm.bias", BlockDim)), Eps, g);

            // The token decoder over [prefix rows, the block's tokens before the target], from scratch.
            int rows = Prefix + offset;
            var h = new float[rows * TokenDim];
            CpuKernels.Linear(g, 1, expansionMatrix, default, h.AsSpan(0, Prefix * TokenDim));
            for (int r = 0; r < offset; r++)
                tokenEmbedding.ReadRow(stream[block * BlockLength + r], h.AsSpan((Prefix + r) * TokenDim, TokenDim));
            for (int l = 0; l < 2; l++)
            {
                string p = $"token.{l}.";
                var normed = new float[h.Length];
                var branch = new float[h.Length];
                RmsNorm.Forward(h, rows, new RmsNormWeights(d.Vector(p + "attn_norm.weight", TokenDim)), Eps, normed);
                Attention.Forward(normed, rows, new AttentionWeights(d.Matrix(p + "q.weight", 16, TokenDim), d.Matrix(p + "k.weight", 8, TokenDim), d.Matrix(p + "v.weight", 8, TokenDim), d.Matrix(p + "o.weight", TokenDim, 16)),
                    attention, new KvCache(rows, 1, 8), branch);
                CpuKernels.Add(h, branch);
                RmsNorm.Forward(h, rows, new RmsNormWeights(d.Vector(p + "mlp_norm.weight", TokenDim)), Eps, normed);
                SwiGluMlp.Forward(normed, rows, new SwiGluMlpWeights(d.Matrix(p + "gate.weight", 24, TokenDim), d.Matrix(p + "up.weight", 24, TokenDim), d.Matrix(p + "down.weight", TokenDim, 24)), branch);
                CpuKernels.Add(h, branch);
            }
            var last = new float[TokenDim];
            RmsNorm.Forward(h.AsSpan((Prefix - 1 + offset) * TokenDim, TokenDim), 1, new RmsNormWeights(d.Vector("token.norm.weight", TokenDim)), Eps, last);
            CpuKernels.Linear(last, 1, tokenEmbedding, default, logits.AsSpan(t * Vocab, Vocab)); // tied head
        }
        return logits;
    }

    private static double MaxDelta(float[] actual, float[] expected, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        double max = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            Assert.That(float.IsNaN(actual[i]), Is.EqualTo(float.IsNaN(expected[i])), $"{what}: element {i} defined in one only");
            if (!float.IsNaN(expected[i]))
                max = Math.Max(max, Math.Abs(actual[i] - expected[i]));
        }
        return max;
    }

    [TestCase(2)]
    [TestCase(0)]
    public void Generated_model_matches_the_from_scratch_reference_and_decodes_like_prefill(int padding)
    {
        int[] tokens = TokenIds(30 + padding);
        using var model = _load(_directory);
        Assert.That(model.VocabSize, Is.EqualTo(Vocab));
        var prefill = new float[Tokens * Vocab];
        model.Forward(tokens, NewState(model, padding), prefill);

        float[] reference;
        using (var checkpoint = ModelDirectory.Open(_directory))
            reference = ReferenceLogits(checkpoint, tokens, padding);
        double referenceDelta = MaxDelta(prefill, reference, "prefill vs reference");
        TestContext.Out.WriteLine($"P = {padding}: max |Δ logit| against the from-scratch reference {referenceDelta:E2}");
        Assert.That(referenceDelta, Is.LessThanOrEqualTo(1e-4));
        Assert.That(prefill.Take(Vocab).All(float.IsNaN), Is.EqualTo(padding + 1 < BlockLength), "row 0 is NaN only when token 1 is in block 0");

        var state = NewState(model, padding);
        var step = new float[Vocab];
        var decode = new float[Tokens * Vocab];
        for (int t = 0; t < Tokens; t++)
        {
            model.Forward(tokens.AsSpan(t, 1), state, step);
            step.CopyTo(decode, t * Vocab);
        }
        Assert.That(MaxDelta(decode, prefill, "decode vs prefill"), Is.LessThanOrEqualTo(1e-4));

        state.Reset();
        var chunked = new float[Tokens * Vocab];
        int start = 0;
        foreach (int chunk in new[] { 5, 1, 7, 2, 16 })
        {
            model.Forward(tokens.AsSpan(start, chunk), state, chunked.AsSpan(start * Vocab, chunk * Vocab));
            start += chunk;
        }
        Assert.That(MaxDelta(chunked, prefill, "chunks vs prefill"), Is.LessThanOrEqualTo(1e-4));
    }

    [Test]
    public void A_fork_taken_mid_block_continues_like_the_whole_sequence()
    {
        int[] tokens = TokenIds(40);
        using var model = _load(_directory);
        var whole = new float[Tokens * Vocab];
        model.Forward(tokens, model.CreateState(Tokens), whole);

        var state = (Horizon.Generation.IForkableModelState)model.CreateState(Tokens);
        model.Forward(tokens.AsSpan(0, 11), state, new float[11 * Vocab]); // P 2 + 11 = 13: one token into block 4
        Assert.That(((IBlockModelState)state).FirstBlockPadding, Is.EqualTo(BlockLength - 1));
        var fork = state.Clone();
        model.Forward(tokens.AsSpan(11, 6).ToArray().Reverse().ToArray(), state, new float[6 * Vocab]);
        var tail = new float[(Tokens - 11) * Vocab];
        model.Forward(tokens.AsSpan(11), fork, tail);
        Assert.That(MaxDelta(tail, whole.AsSpan(11 * Vocab).ToArray(), "fork"), Is.LessThanOrEqualTo(1e-4));

        // The tied head is not counted again; the Conv1d-shaped prefix projection is.
        long expected = Vocab * (BlockDim / BlockLength) + 2 * (2 * BlockDim + 4 * BlockDim * BlockDim + 2 * 32 * BlockDim) + 2 * BlockDim
            + Prefix * TokenDim * BlockDim + Vocab * TokenDim + 2 * (2 * TokenDim + 16 * TokenDim * 2 + 8 * TokenDim * 2 + 3 * 24 * TokenDim) + TokenDim;
        Assert.That(model.Info.ParameterCount, Is.EqualTo(expected));
    }

    [Test]
    public void A_bad_config_value_is_a_load_error_naming_the_nested_key()
    {
        string directory = Path.Combine(Path.GetTempPath(), "horizon-two-level", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        try
        {
            File.Copy(Path.Combine(_directory, "model.safetensors"), Path.Combine(directory, "model.safetensors"));
            File.WriteAllText(Path.Combine(directory, "config.json"), Config.Replace("\"gelu_new\"", "\"relu\""));
            var error = Assert.Throws<ModelLoadException>(() => _load(directory).Dispose());
            Assert.That(error!.Message, Does.Contain("block_decoder.config.hidden_act = \"relu\" is not supported"));

            File.WriteAllText(Path.Combine(directory, "config.json"), Config.Replace("\"expansion_ratio\": 2", "\"expansion_ratio\": 3"));
            error = Assert.Throws<ModelLoadException>(() => _load(directory).Dispose());
            Assert.That(error!.Message, Does.Contain("'expansion.weight'").And.Contain("expected [48, 24] or [48, 24, 1]"));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
