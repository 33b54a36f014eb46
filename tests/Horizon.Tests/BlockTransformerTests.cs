using Horizon.Cpu;
using Horizon.Ops;
using NUnit.Framework;
using static Horizon.Tests.BlockTransformerSetup;

namespace Horizon.Tests;

/// <summary>
/// <c>gpt_neox_layer</c> and <c>block_transformer</c> against the float64 references of
/// <see cref="BlockTransformerReference"/> (written from the equations, token by token), decode against prefill
/// across block boundaries, lengths that are not multiples of L_B, the bound on the token decoder's local cache, the
/// first-block padding, and state Reset/CopyFrom. Sizes are deliberately odd: vocab 37, head_dim 8 and 10 with
/// partial rotary (4 of 8, 4 of 10), L_B = 4 with R = 2 (the official main setting) and L_B = 3 with R = 3.
/// </summary>
public class BlockTransformerTests
{
    private const double Float32Tolerance = 1e-5;

    /// <summary>The official main shape in miniature: L_B 4, R 2; parallel exact-GELU block decoder, sequential tanh-GELU token decoder.</summary>
    private static (BlockTransformerWeights, BlockTransformerOptions) MainModel(int seed = 11) => Model(
        seed, vocab: 37, blockLength: 4, prefix: 2,
        block: new Stack(Hidden: 24, Heads: 3, Intermediate: 40, RotaryDim: 4, Layers: 2, Parallel: true, GeluApproximation.None),
        token: new Stack(Hidden: 20, Heads: 2, Intermediate: 36, RotaryDim: 4, Layers: 2, Parallel: false, GeluApproximation.Tanh),
        padTokenId: 5);

    /// <summary>L_B 3, R 3; one block-decoder layer, three token-decoder layers with full rotary.</summary>
    private static (BlockTransformerWeights, BlockTransformerOptions) OddModel(int seed = 12) => Model(
        seed, vocab: 29, blockLength: 3, prefix: 3,
        block: new Stack(Hidden: 18, Heads: 3, Intermediate: 30, RotaryDim: 2, Layers: 1, Parallel: true, GeluApproximation.None),
        token: new Stack(Hidden: 16, Heads: 4, Intermediate: 24, RotaryDim: 4, Layers: 3, Parallel: true, GeluApproximation.None));

    private static (BlockTransformerWeights, BlockTransformerOptions) ModelNamed(string name) => name == "main" ? MainModel() : OddModel();

    private static int[] RandomTokens(int seed, int count, int vocab)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => random.Next(vocab)).ToArray();
    }

    // ---------------------------------------------------------------- RoPE (partial rotary)

    [TestCase(24, 8)]
    [TestCase(10, 4)]
    [TestCase(12, 12)]
    public void Rope_with_a_partial_rotary_rotates_the_leading_dims_and_leaves_the_rest(int headDim, int rotaryDim)
    {
        const int rows = 7, heads = 3, start = 321;
        var rope = new RopeTable(headDim, 10000, RopeScaling.None, rotaryDim);
        float[] x = Floats(new Random(1), rows * heads * headDim, 1f);
        float[] original = (float[])x.Clone();
        CpuKernels.Rope(x, rows, heads, headDim, start, rope);

        double maxError = 0;
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
            {
                int offset = (r * heads + h) * headDim;
                for (int m = 0; m < rotaryDim / 2; m++)
                {
                    double angle = (start + r) * Math.Pow(10000, -2.0 * m / rotaryDim);
                    double a = original[offset + m], b = original[offset + m + rotaryDim / 2];
                    maxError = Math.Max(maxError, Math.Abs(x[offset + m] - (a * Math.Cos(angle) - b * Math.Sin(angle))));
                    maxError = Math.Max(maxError, Math.Abs(x[offset + m + rotaryDim / 2] - (b * Math.Cos(angle) + a * Math.Sin(angle))));
                }
                for (int m = rotaryDim; m < headDim; m++)
                    Assert.That(x[offset + m], Is.EqualTo(original[offset + m]), "pass-through dims are untouched");
            }
        Assert.That(maxError, Is.LessThanOrEqualTo(1e-5));
        Assert.That(rope.InverseFrequencies, Has.Length.EqualTo(rotaryDim / 2));
        Assert.That(rope.RotaryDim, Is.EqualTo(rotaryDim));
    }

    [Test]
    public void A_full_rotary_table_is_the_old_table()
    {
        var old = new RopeTable(16, 5000, RopeScaling.None);
        var full = new RopeTable(16, 5000, RopeScaling.None, 16);
        Assert.That(old.RotaryDim, Is.EqualTo(16));
        Assert.That(full.InverseFrequencies, Is.EqualTo(old.InverseFrequencies).AsCollection);
        Assert.Throws<ModelLoadException>(() => new RopeTable(16, 5000, RopeScaling.None, 3));
        Assert.Throws<ModelLoadException>(() => new RopeTable(16, 5000, RopeScaling.None, 18));
    }

    // ---------------------------------------------------------------- gpt_neox_layer

    [TestCase(true, 4)]
    [TestCase(false, 4)]
    [TestCase(true, 8)]
    public void GptNeoXLayer_matches_reference_and_decode_equals_prefill(bool parallel, int rotaryDim)
    {
        const int rows = 23;
        var o = new Stack(Hidden: 24, Heads: 3, Intermediate: 40, RotaryDim: rotaryDim, Layers: 1, Parallel: parallel, GeluApproximation.None).Options();
        var random = new Random(rotaryDim + (parallel ? 100 : 200));
        var layer = Layer(random, o, "gpt_neox.layers.0.");
        float[] x = Floats(random, rows * o.Hidden, 1.5f);

        var prefill = new float[x.Length];
        var cache = new KvCache(rows, o.Heads, o.HeadDim);
        GptNeoXLayer.Forward(x, rows, layer, o, cache, prefill);
        Assert.That(cache.Length, Is.EqualTo(rows));
        VariantTestSupport.AssertClose(prefill, BlockTransformerReference.GptNeoXLayer(VariantTestSupport.ToDouble(x), rows, layer, o), Float32Tolerance, "gpt_neox_layer");

        // Token by token, in place (y = x).
        var decode = (float[])x.Clone();
        var stepCache = new KvCache(rows, o.Heads, o.HeadDim);
        for (int t = 0; t < rows; t++)
        {
            Span<float> row = decode.AsSpan(t * o.Hidden, o.Hidden);
            GptNeoXLayer.Forward(row, 1, layer, o, stepCache, row);
        }
        Assert.That(VariantTestSupport.MaxAbsDifference(decode, prefill), Is.LessThanOrEqualTo(1e-4));
    }

    [Test]
    public void GptNeoXStack_and_GptNeoXAttention_match_reference()
    {
        const int rows = 9;
        var o = new Stack(Hidden: 20, Heads: 2, Intermediate: 28, RotaryDim: 4, Layers: 3, Parallel: true, GeluApproximation.None).Options();
        var random = new Random(300);
        var stack = StackWeights(random, o, 3, "");
        float[] x = Floats(random, rows * o.Hidden, 1f);
        var y = new float[x.Length];
        GptNeoXStack.Forward(x, rows, stack, o, GptNeoXStack.CreateCaches(o, 3, rows), y);
        VariantTestSupport.AssertClose(y, BlockTransformerReference.GptNeoXStack(VariantTestSupport.ToDouble(x), rows, stack, o), Float32Tolerance, "gpt_neox stack");

        var noBias = Layer(new Random(301), o, "", biases: false);
        var a = new float[x.Length];
        GptNeoXAttention.Forward(x, rows, noBias.Attention, o, new KvCache(rows, o.Heads, o.HeadDim), a);
        VariantTestSupport.AssertClose(a, BlockTransformerReference.Attention(VariantTestSupport.ToDouble(x), rows, noBias.Attention, o), Float32Tolerance, "gpt_neox_attention");
    }

    // ---------------------------------------------------------------- block_transformer: reference

    private static IEnumerable<TestCaseData> ReferenceCases()
    {
        foreach (string model in new[] { "main", "odd" })
            foreach (int length in new[] { 1, 4, 5, 17, 38 })
                foreach (int padding in new[] { -1, 0, 1 }) // −1: the default, L_B − 1
                    yield return new TestCaseData(model, length, padding).SetName($"BlockTransformer_matches_reference({model},n={length},P={(padding < 0 ? "L-1" : padding)})");
    }

    [TestCaseSource(nameof(ReferenceCases))]
    public void Prefill_matches_reference(string model, int length, int padding)
    {
        var (weights, options) = ModelNamed(model);
        int p = padding < 0 ? options.BlockLength - 1 : padding;
        int[] tokens = RandomTokens(length * 7 + p, length, options.VocabSize);

        var state = new BlockTransformerState(options, length + 3, p);
        var logits = new float[length * options.VocabSize];
        BlockTransformer.Forward(tokens, weights, options, state, logits);

        double[] expected = BlockTransformerReference.Logits(tokens, weights, options, p);
        AssertCloseWithNaN(logits, expected, Float32Tolerance, $"block_transformer {model}");
        Assert.That(state.Length, Is.EqualTo(length));
        Assert.That(state.Blocks, Is.EqualTo((length + p) / options.BlockLength), "one block-cache entry per complete block");
        int offset = (length + p) % options.BlockLength;
        Assert.That(state.LocalLength, Is.EqualTo(state.Blocks == 0 ? 0 : options.PrefixLength + offset), "local cache: prefix + the block's tokens so far");
    }

    // ---------------------------------------------------------------- decode

    [TestCase("main", 3)]
    [TestCase("main", 0)]
    [TestCase("odd", 2)]
    [TestCase("odd", 1)]
    public void Decode_token_by_token_equals_prefill_across_block_boundaries(string model, int padding)
    {
        const int length = 41; // not a multiple of 3 or 4, with either padding
        var (weights, options) = ModelNamed(model);
        int vocab = options.VocabSize;
        int[] tokens = RandomTokens(500 + padding, length, vocab);

        var prefill = new float[length * vocab];
        BlockTransformer.Forward(tokens, weights, options, new BlockTransformerState(options, length, padding), prefill);

        var state = new BlockTransformerState(options, length, padding);
        var step = new float[vocab];
        double maxDelta = 0;
        int maxLocal = 0;
        for (int t = 0; t < length; t++)
        {
            BlockTransformer.Forward(tokens.AsSpan(t, 1), weights, options, state, step);
            for (int v = 0; v < vocab; v++)
            {
                float expected = prefill[t * vocab + v];
                Assert.That(float.IsNaN(step[v]), Is.EqualTo(float.IsNaN(expected)), $"row {t}: defined in both or in neither");
                if (!float.IsNaN(expected))
                    maxDelta = Math.Max(maxDelta, Math.Abs(step[v] - expected));
            }
            maxLocal = Math.Max(maxLocal, state.LocalLength);
            Assert.That(state.LocalLength, Is.LessThanOrEqualTo(options.LocalCapacity), $"after token {t}");
            Assert.That(state.Blocks, Is.EqualTo((t + 1 + padding) / options.BlockLength), $"blocks after token {t}");
            foreach (var local in state.LocalCaches)
                Assert.That(local.Length, Is.EqualTo(state.LocalLength));
        }
        Assert.That(maxDelta, Is.LessThanOrEqualTo(1e-4), "decode vs prefill");
        Assert.That(maxLocal, Is.EqualTo(options.LocalCapacity), "the bound R + L_B − 1 is reached, never passed");
        Assert.That(state.LocalCaches[0].Capacity, Is.EqualTo(options.LocalCapacity));
        // The caches are paged: the block caches hold the pages their blocks fill, the local caches one page of
        // R + L_B − 1 entries at most.
        Assert.That(state.BlockCaches[0].PagesHeld, Is.EqualTo((state.Blocks + state.BlockCaches[0].PageTokens - 1) / state.BlockCaches[0].PageTokens));
        Assert.That(state.LocalCaches[0].ByteSize, Is.LessThanOrEqualTo(state.LocalCaches[0].MaxByteSize), "the local cache never holds more than its R + L_B − 1 entries");
    }

    [TestCase("main", new[] { 1, 2, 3, 5, 7, 11, 2 })]
    [TestCase("main", new[] { 4, 4, 4, 4, 4, 4, 4, 3 })]
    [TestCase("odd", new[] { 2, 9, 1, 1, 13, 5 })]
    public void Prefill_in_uneven_chunks_equals_one_call(string model, int[] chunks)
    {
        var (weights, options) = ModelNamed(model);
        int vocab = options.VocabSize, length = chunks.Sum();
        int[] tokens = RandomTokens(600, length, vocab);

        var whole = new float[length * vocab];
        BlockTransformer.Forward(tokens, weights, options, new BlockTransformerState(options, length), whole);

        var state = new BlockTransformerState(options, length);
        var split = new float[length * vocab];
        int start = 0;
        foreach (int chunk in chunks)
        {
            BlockTransformer.Forward(tokens.AsSpan(start, chunk), weights, options, state, split.AsSpan(start * vocab, chunk * vocab));
            start += chunk;
        }
        Assert.That(VariantTestSupport.MaxAbsDifference(split, whole), Is.LessThanOrEqualTo(1e-4));
    }

    // ---------------------------------------------------------------- partial blocks, padding

    [Test]
    public void A_partial_last_block_is_decoded_locally_and_completes_later()
    {
        // L_B 4, P 3: 10 tokens fill stream positions 3 … 12, so blocks 0 … 2 are complete and block 3 holds one
        // token. That token's prediction (of stream position 13) comes from the token decoder over [prefix of g_2,
        // token 9]; the block decoder has not seen block 3 and will when its fourth token arrives.
        var (weights, options) = MainModel();
        int vocab = options.VocabSize;
        int[] tokens = RandomTokens(700, 14, vocab);

        var state = new BlockTransformerState(options, 14);
        var first = new float[10 * vocab];
        BlockTransformer.Forward(tokens.AsSpan(0, 10), weights, options, state, first);
        Assert.That(state.Blocks, Is.EqualTo(3));
        Assert.That(state.LocalLength, Is.EqualTo(options.PrefixLength + 1));
        Assert.That(first.All(float.IsFinite), "with P = L_B − 1 every row has a prediction");

        var rest = new float[4 * vocab];
        BlockTransformer.Forward(tokens.AsSpan(10), weights, options, state, rest);
        Assert.That(state.Blocks, Is.EqualTo(4), "block 3 completed with token 12");
        Assert.That(state.LocalLength, Is.EqualTo(options.PrefixLength + 1), "block 4 holds token 13");

        double[] expected = BlockTransformerReference.Logits(tokens, weights, options, 3);
        AssertCloseWithNaN([.. first, .. rest], expected, Float32Tolerance, "partial block then completion");
    }

    [Test]
    public void Without_padding_the_first_block_has_no_prediction()
    {
        var (weights, options) = MainModel();
        int vocab = options.VocabSize;
        int[] tokens = RandomTokens(800, 9, vocab);
        var logits = new float[9 * vocab];
        BlockTransformer.Forward(tokens, weights, options, new BlockTransformerState(options, 9, firstBlockPadding: 0), logits);
        for (int t = 0; t < 9; t++)
        {
            bool defined = t + 1 >= options.BlockLength; // the token after tokens[t] is at stream position t + 1
            Assert.That(logits.AsSpan(t * vocab, vocab).ToArray().All(v => float.IsNaN(v) != defined), $"row {t}");
        }
    }

    [Test]
    public void The_pad_token_fills_the_first_block()
    {
        // P pads + tokens equals P = 0 over [pad × P] + tokens, row for row after the pads.
        var (weights, options) = MainModel();
        int vocab = options.VocabSize;
        int[] tokens = RandomTokens(900, 11, vocab);
        var padded = new float[11 * vocab];
        BlockTransformer.Forward(tokens, weights, options, new BlockTransformerState(options, 11, 3), padded);

        int[] explicitPads = [options.PadTokenId, options.PadTokenId, options.PadTokenId, .. tokens];
        var plain = new float[14 * vocab];
        BlockTransformer.Forward(explicitPads, weights, options, new BlockTransformerState(options, 14, 0), plain);
        Assert.That(VariantTestSupport.MaxAbsDifference(padded, plain.AsSpan(3 * vocab).ToArray()), Is.LessThanOrEqualTo(1e-5));
    }

    // ---------------------------------------------------------------- state

    [Test]
    public void CopyFrom_forks_a_session_mid_block_and_Reset_starts_over()
    {
        var (weights, options) = MainModel();
        int vocab = options.VocabSize;
        int[] tokens = RandomTokens(1000, 30, vocab);
        var whole = new float[30 * vocab];
        BlockTransformer.Forward(tokens, weights, options, new BlockTransformerState(options, 30), whole);

        var state = new BlockTransformerState(options, 30);
        BlockTransformer.Forward(tokens.AsSpan(0, 14), weights, options, state, new float[14 * vocab]);
        var fork = new BlockTransformerState(options, 30);
        fork.CopyFrom(state);
        Assert.That((fork.Length, fork.Blocks, fork.LocalLength), Is.EqualTo((state.Length, state.Blocks, state.LocalLength)));

        // The original runs a different continuation; the fork must not see it.
        BlockTransformer.Forward(RandomTokens(1001, 16, vocab), weights, options, state, new float[16 * vocab]);
        var tail = new float[16 * vocab];
        BlockTransformer.Forward(tokens.AsSpan(14), weights, options, fork, tail);
        Assert.That(VariantTestSupport.MaxAbsDifference(tail, whole.AsSpan(14 * vocab).ToArray()), Is.LessThanOrEqualTo(1e-4));

        state.Reset();
        Assert.That((state.Length, state.Blocks, state.LocalLength, state.FirstBlockPadding), Is.EqualTo((0, 0, 0, options.BlockLength - 1)));
        var again = new float[30 * vocab];
        BlockTransformer.Forward(tokens, weights, options, state, again);
        Assert.That(VariantTestSupport.MaxAbsDifference(again, whole), Is.LessThanOrEqualTo(1e-5));

        state.Reset(0);
        Assert.That(state.FirstBlockPadding, Is.Zero);
        Assert.Throws<ArgumentOutOfRangeException>(() => state.Reset(options.BlockLength));
    }

    [Test]
    public void Bad_ids_and_a_full_state_throw_and_change_nothing()
    {
        var (weights, options) = MainModel();
        int vocab = options.VocabSize;
        var state = new BlockTransformerState(options, 6);
        BlockTransformer.Forward([1, 2, 3], weights, options, state, new float[3 * vocab]);
        var before = (state.Length, state.Blocks, state.LocalLength);

        var ex = Assert.Throws<HorizonException>(() => BlockTransformer.Forward([4, vocab], weights, options, state, new float[2 * vocab]));
        Assert.That(ex!.Message, Does.Contain("out of range"));
        ex = Assert.Throws<HorizonException>(() => BlockTransformer.Forward([1, 2, 3, 4], weights, options, state, new float[4 * vocab]));
        Assert.That(ex!.Message, Does.Contain("full"));
        Assert.That((state.Length, state.Blocks, state.LocalLength), Is.EqualTo(before));
    }

    [Test]
    public void State_size_is_blocks_plus_a_fixed_local_cache()
    {
        var (_, options) = MainModel();
        var state = new BlockTransformerState(options, 1000);
        // Block caches: ⌊(1000 + 3)/4⌋ = 250 entries × 2 (k, v) × 24 floats × 2 layers; local: (2 + 3) × 2 × 20 × 2 layers.
        Assert.That(state.BlockCaches[0].Capacity, Is.EqualTo(250));
        Assert.That(state.LocalCaches[0].Capacity, Is.EqualTo(5));
        Assert.That(state.ByteSize, Is.EqualTo(4L * (250 * 2 * 24 * 2 + 5 * 2 * 20 * 2 + 4)));
    }

    // ---------------------------------------------------------------- config

    internal const string GoldenStyleConfig = """
        {
          "architectures": ["BlockTransformerForCausalLM"],
          "model_type": "block_transformer",
          "block_length": 4,
          "pad_token_id": 0,
          "eos_token_id": 0,
          "embedder": {"cls": "lookup", "n_embedding_tokens": 1, "projection_method": "concat",
                       "config": {"model_type": "lookup", "vocab_size": 96, "hidden_size": 12, "pad_token_id": null}},
          "block_decoder": {"cls": "gpt-neo-x",
                            "config": {"model_type": "gpt_neox", "hidden_size": 48, "num_attention_heads": 4, "intermediate_size": 80,
                                       "num_hidden_layers": 2, "rotary_pct": 0.5, "rotary_emb_base": 10000, "layer_norm_eps": 1e-5,
                                       "use_parallel_residual": true, "hidden_act": "gelu", "vocab_size": 96}},
          "token_decoder": {"cls": "gpt-neo-x", "decoding_strategy": "prefix", "expansion_method": "expansion_layer", "expansion_ratio": 2,
                            "config": {"model_type": "gpt_neox", "hidden_size": 40, "num_attention_heads": 2, "intermediate_size": 64,
                                       "num_hidden_layers": 3, "rotary_pct": 0.4, "rotary_emb_base": 10000, "layer_norm_eps": 1e-5,
                                       "use_parallel_residual": false, "hidden_act": "gelu_new", "vocab_size": 96}}
        }
        """;

    [Test]
    public void FromConfig_reads_the_nested_config_layout()
    {
        var options = BlockTransformerOptions.FromConfig(ModelConfig.Parse(GoldenStyleConfig));
        Assert.That((options.BlockLength, options.PrefixLength, options.VocabSize, options.PadTokenId), Is.EqualTo((4, 2, 96, 0)));
        Assert.That((options.BlockDecoderLayers, options.TokenDecoderLayers, options.EmbedderHidden, options.LocalCapacity), Is.EqualTo((2, 3, 12, 5)));
        Assert.That((options.BlockDecoder.HeadDim, options.BlockDecoder.RotaryDim, options.BlockDecoder.UseParallelResidual), Is.EqualTo((12, 6, true)));
        Assert.That((options.TokenDecoder.HeadDim, options.TokenDecoder.RotaryDim, options.TokenDecoder.UseParallelResidual), Is.EqualTo((20, 8, false)));
        Assert.That(options.TokenDecoder.Activation, Is.EqualTo(GeluApproximation.Tanh));
        Assert.That(options.DefaultFirstBlockPadding, Is.EqualTo(3));

        var ex = Assert.Throws<ModelLoadException>(() => BlockTransformerOptions.FromConfig(ModelConfig.Parse(GoldenStyleConfig.Replace("\"prefix\"", "\"summation\""))));
        Assert.That(ex!.Message, Does.Contain("decoding_strategy"));
        ex = Assert.Throws<ModelLoadException>(() => BlockTransformerOptions.FromConfig(ModelConfig.Parse(GoldenStyleConfig.Replace("\"n_embedding_tokens\": 1", "\"n_embedding_tokens\": 2"))));
        Assert.That(ex!.Message, Does.Contain("n_embedding_tokens"));
    }

    // ---------------------------------------------------------------- golden fixtures: the op and the generated model

    /// <summary>The fixtures of tests/golden/make_block_transformer_golden.py (GoldenTests also scores them through the registry).</summary>
    public static IEnumerable<string> GoldenFixtures() =>
        Directory.GetDirectories(RepositoryPaths.Golden, "block-transformer-*")
            .Where(d => File.Exists(Path.Combine(d, "expected.json")))
            .Select(d => Path.GetFileName(d)!)
            .Order(StringComparer.Ordinal);

    [Test]
    public void The_golden_fixtures_are_in_tests_golden()
    {
        Assert.That(GoldenFixtures().ToArray(), Is.EquivalentTo(new[] { "block-transformer-b3-r3", "block-transformer-b4-main", "block-transformer-b4-nopad-sequential-bf16" }));
    }

    /// <summary>
    /// Each fixture bound by the official names twice: by <see cref="BlockTransformerWeights.FromCheckpoint"/> and run by
    /// the op, and by the spec (models/block_transformer.model.json, through ModelRegistry) and run by the generated
    /// model. Both score against the script's float64 log-probs in chunks of 37 tokens, at the fixture's first-block
    /// padding; the generated model's logits equal the op's, NaN rows (the first block) included.
    /// </summary>
    [TestCaseSource(nameof(GoldenFixtures))]
    public void Golden_fixture_through_the_op_and_the_generated_model(string fixture)
    {
        string directory = Path.Combine(RepositoryPaths.Golden, fixture);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(directory, "expected.json")));
        var root = json.RootElement;
        int[] tokens = root.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        double?[] expected = root.GetProperty("logprobs").EnumerateArray().Select(e => e.ValueKind == System.Text.Json.JsonValueKind.Null ? (double?)null : e.GetDouble()).ToArray();
        int padding = root.GetProperty("first_block_padding").GetInt32();

        using var checkpoint = ModelDirectory.Open(directory);
        var options = BlockTransformerOptions.FromConfig(checkpoint.Config);
        var weights = BlockTransformerWeights.FromCheckpoint(checkpoint, options);
        var opState = new BlockTransformerState(options, tokens.Length, padding);
        using var model = ModelRegistry.Load(directory);
        Assert.That(model, Is.InstanceOf<Horizon.Models.BlockTransformerModel>());
        var state = (Horizon.Models.BlockTransformerModel.State)model.CreateState(tokens.Length);
        state.Reset(padding);

        int vocab = options.VocabSize;
        Assert.That(model.VocabSize, Is.EqualTo(vocab));
        double opError = 0, specError = 0, opVsSpec = 0;
        for (int start = 0; start < tokens.Length - 1; start += 37)
        {
            int count = Math.Min(37, tokens.Length - 1 - start);
            var opLogits = new float[count * vocab];
            var specLogits = new float[count * vocab];
            BlockTransformer.Forward(tokens.AsSpan(start, count), weights, options, opState, opLogits);
            model.Forward(tokens.AsSpan(start, count), state, specLogits);
            for (int r = 0; r < count; r++)
            {
                int i = start + r;
                var opRow = opLogits.AsSpan(r * vocab, vocab);
                var specRow = specLogits.AsSpan(r * vocab, vocab);
                if (expected[i] is not double e)
                {
                    Assert.That(float.IsNaN(opRow[0]) && float.IsNaN(specRow[0]), $"{fixture}: token {i + 1} is in block 0 and has no prediction");
                    continue;
                }
                opError = Math.Max(opError, Math.Abs(Scoring.LogSoftmaxAt(opRow, tokens[i + 1]) - e));
                specError = Math.Max(specError, Math.Abs(Scoring.LogSoftmaxAt(specRow, tokens[i + 1]) - e));
                for (int v = 0; v < vocab; v++)
                    opVsSpec = Math.Max(opVsSpec, Math.Abs(opRow[v] - specRow[v]));
            }
            Assert.That((state.Length, state.Blocks, state.LocalLength), Is.EqualTo((opState.Length, opState.Blocks, opState.LocalLength)), $"{fixture}: after token {start + count}");
        }
        TestContext.Out.WriteLine($"{fixture}: max |Δ logprob| op {opError:E2}, generated {specError:E2}; max |Δ logit| op vs generated {opVsSpec:E2}; over {expected.Count(e => e is not null)} tokens, P = {padding}");
        Assert.That(opError, Is.LessThanOrEqualTo(1e-3), "op");
        Assert.That(specError, Is.LessThanOrEqualTo(1e-3), "generated model");
        Assert.That(opVsSpec, Is.LessThanOrEqualTo(1e-4), "the generated model runs the op's computation");
    }

    /// <summary>The generated model's state: sizes, the bound on the local states, fork mid-block, Reset with a padding.</summary>
    [Test]
    public void Generated_state_holds_block_caches_and_a_fixed_local_cache_and_forks_mid_block()
    {
        string directory = Path.Combine(RepositoryPaths.Golden, "block-transformer-b4-main");
        using var model = Horizon.Models.BlockTransformerModel.Load(directory);
        var (tokens, _) = GoldenTests.ReadExpected("block-transformer-b4-main");
        tokens = tokens[..42];
        int vocab = model.VocabSize, blockLength = model.BlockLength, prefix = model.PrefixTokens;
        Assert.That((blockLength, prefix, model.PadTokenId), Is.EqualTo((4, 2, 0)));

        var whole = new float[tokens.Length * vocab];
        var reference = model.CreateState(tokens.Length);
        model.Forward(tokens, reference, whole);
        Assert.That(whole.All(float.IsFinite), "with the default padding L − 1 every row is defined");

        var state = model.CreateState(tokens.Length);
        Assert.That(state.FirstBlockPadding, Is.EqualTo(blockLength - 1));
        // Block caches: one entry per complete block, room for ⌊(42 + 3) / 4⌋ = 11; local caches: R + L − 1 = 5 rows.
        Assert.That(state.BlockDecoderLayers[0].Attention.Capacity, Is.EqualTo(11));
        Assert.That(state.TokenDecoderLayers[0].Attention.Capacity, Is.EqualTo(prefix + blockLength - 1));
        var step = new float[vocab];
        for (int t = 0; t < 14; t++)
        {
            model.Forward(tokens.AsSpan(t, 1), state, step);
            Assert.That(state.Blocks, Is.EqualTo((t + 1 + blockLength - 1) / blockLength));
            Assert.That(state.BlockDecoderLayers[1].Attention.Length, Is.EqualTo(state.Blocks));
            Assert.That(state.TokenDecoderLayers[1].Attention.Length, Is.EqualTo(state.LocalLength));
            Assert.That(state.LocalLength, Is.LessThanOrEqualTo(prefix + blockLength - 1));
            // Paged caches: the local ones never hold more than their R + L − 1 entries, one page.
            Assert.That(state.TokenDecoderLayers[0].Attention.PagesHeld, Is.LessThanOrEqualTo(1));
            Assert.That(state.TokenDecoderLayers[0].Attention.ByteSize, Is.LessThanOrEqualTo(state.TokenDecoderLayers[0].Attention.MaxByteSize));
        }
        Assert.That(state.StreamLength % blockLength, Is.Not.Zero, "the fork below is taken mid-block");

        var fork = state.Clone();
        Assert.That((fork.Length, fork.Blocks, fork.LocalLength, fork.FirstBlockPadding), Is.EqualTo((state.Length, state.Blocks, state.LocalLength, state.FirstBlockPadding)));
        model.Forward(tokens.AsSpan(14, 9).ToArray().Reverse().ToArray(), state, new float[9 * vocab]); // the original goes elsewhere
        var tail = new float[(tokens.Length - 14) * vocab];
        model.Forward(tokens.AsSpan(14), fork, tail);
        Assert.That(VariantTestSupport.MaxAbsDifference(tail, whole.AsSpan(14 * vocab).ToArray()), Is.LessThanOrEqualTo(1e-4), "the fork continues as the whole sequence would");

        var copy = model.CreateState(tokens.Length);
        copy.CopyFrom(fork);
        Assert.That((copy.Length, copy.Blocks, copy.LocalLength), Is.EqualTo((fork.Length, fork.Blocks, fork.LocalLength)));

        // Reset(P) then the tokens after P explicit pads: P = 1 over three pads = P = 0 over [pad, pad, pad] + tokens, row for row.
        state.Reset(1);
        Assert.That((state.Length, state.Blocks, state.LocalLength, state.FirstBlockPadding), Is.EqualTo((0, 0, 0, 1)));
        var padded = new float[20 * vocab];
        model.Forward(tokens.AsSpan(0, 20), state, padded);
        var plainState = model.CreateState(tokens.Length);
        plainState.Reset(0);
        int[] withPads = [model.PadTokenId, .. tokens[..20]];
        var plain = new float[21 * vocab];
        model.Forward(withPads, plainState, plain);
        for (int t = 0; t < 20; t++)
        {
            bool definedRow = t + 1 + 1 >= blockLength;
            Assert.That(float.IsNaN(padded[t * vocab]), Is.EqualTo(!definedRow), $"row {t} with P = 1");
        }
        var paddedRows = padded.AsSpan(2 * vocab).ToArray();
        var plainRows = plain.AsSpan(3 * vocab).ToArray();
        Assert.That(VariantTestSupport.MaxAbsDifference(paddedRows, plainRows), Is.LessThanOrEqualTo(1e-5));
        Assert.Throws<ArgumentOutOfRangeException>(() => state.Reset(blockLength));
        state.Reset();
        Assert.That(state.FirstBlockPadding, Is.EqualTo(1), "Reset() keeps the padding");
    }

    [Test]
    public void Scoring_a_two_level_model_leaves_the_first_block_out_of_the_perplexity()
    {
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, "block-transformer-b4-nopad-sequential-bf16"));
        var (tokens, _) = GoldenTests.ReadExpected("block-transformer-b4-nopad-sequential-bf16");
        var unpadded = Scoring.Score(model, tokens, chunkSize: 50, firstBlockPadding: 0);
        Assert.That(unpadded.LogProbs.Take(3).All(double.IsNaN), "tokens 1 … 3 are in block 0: no prediction");
        Assert.That(unpadded.LogProbs.Skip(3).All(double.IsFinite));
        Assert.That(unpadded.DefinedCount, Is.EqualTo(tokens.Length - 4));
        double mean = unpadded.LogProbs.Skip(3).Average();
        Assert.That(unpadded.Perplexity, Is.EqualTo(Math.Exp(-mean)).Within(1e-9));

        var padded = Scoring.Score(model, tokens); // the default padding L − 1: every position defined
        Assert.That(padded.DefinedCount, Is.EqualTo(tokens.Length - 1));
        Assert.That(double.IsFinite(padded.Perplexity));

        using var llama = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, "llama-gqa-untied"));
        Assert.Throws<ArgumentException>(() => Scoring.Score(llama, [1, 2, 3], firstBlockPadding: 0));
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>NaN where the reference is NaN; elsewhere max|Δ| / max|ref| ≤ tolerance.</summary>
    private static void AssertCloseWithNaN(float[] actual, double[] expected, double tolerance, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        var definedActual = new List<float>();
        var definedExpected = new List<double>();
        for (int i = 0; i < actual.Length; i++)
        {
            if (double.IsNaN(expected[i]))
            {
                Assert.That(float.IsNaN(actual[i]), $"{what}: element {i} has no prediction, yet is {actual[i]}");
                continue;
            }
            definedActual.Add(actual[i]);
            definedExpected.Add(expected[i]);
        }
        if (definedActual.Count > 0)
            VariantTestSupport.AssertClose([.. definedActual], [.. definedExpected], tolerance, what);
    }
}
