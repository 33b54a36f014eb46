using System.Reflection;
using System.Runtime.InteropServices;
using Horizon.Cpu;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Tests.Generators;

/// <summary>
/// The mixer kinds that have no public checkpoint in this layout (linear_attention, sliding_window_attention,
/// cca_attention, agent_attention) and a hybrid of two block groups (gla and attention), end to end: a small spec
/// compiled by the generator harness, loaded from a synthetic checkpoint written with <see cref="SafeTensorsWriter"/>,
/// and checked against (a) the same forward composed by hand from the ops, reading the same tensors, and (b) decode
/// token by token against one prefill.
/// </summary>
public class SpecKindEndToEndTests
{
    private const int Vocab = 50, Dim = 32, Intermediate = 48, Tokens = 41;
    private const float Eps = 1e-5f;
    private const double ComposedTolerance = 1e-5, DecodeTolerance = 1e-4;

    /// <summary>Runs one layer's mixer on (rows, Dim) rows, keeping its own state between calls.</summary>
    private delegate void Mixer(ReadOnlySpan<float> x, int rows, Span<float> y);

    private const string Projections = "\"query\": \"attn.q\", \"key\": \"attn.k\", \"value\": \"attn.v\", \"output\": \"attn.o\"";

    private const string GlaMixer = """
        { "kind": "gla", "name": "attn", "heads": 4, "kv_heads": 2, "expand_k": 0.5, "expand_v": 1, "short_conv": true, "conv_size": 4,
          "clamp_min": -0.5, "norm_eps": 1e-5,
          "weights": { "query": "attn.q", "key": "attn.k", "value": "attn.v", "gate_down": "attn.gk.0", "gate_up": "attn.gk.1", "output": "attn.o",
                       "output_gate": "attn.g", "norm": "attn.norm", "query_conv": "attn.q_conv", "key_conv": "attn.k_conv", "value_conv": "attn.v_conv" } }
        """;

    private static readonly string AttentionMixer =
        $$"""{ "kind": "attention", "name": "attn", "heads": 4, "kv_heads": 2, "head_dim": 8, "rope": "config", "weights": { {{Projections}} } }""";

    // ---- The spec, the checkpoint, the compiled model -------------------------------------------------------------

    private static string Block(string name, int repeat, string mixer) => $$"""
        {
          "name": "{{name}}", "repeat": {{repeat}}, "prefix": "layers.{layer}.",
          "mixer_norm": { "kind": "rms_norm", "name": "attn_norm", "weight": "attn_norm.weight", "eps": 1e-5 },
          "mixer": {{mixer}},
          "mlp_norm": { "kind": "rms_norm", "name": "mlp_norm", "weight": "mlp_norm.weight", "eps": 1e-5 },
          "mlp": { "kind": "swiglu_mlp", "name": "mlp", "intermediate": {{Intermediate}}, "weights": { "gate": "mlp.gate", "up": "mlp.up", "down": "mlp.down" } }
        }
        """;

    private static string Spec(string className, params string[] blocks) => $$"""
        {
          "model": "{{className}}",
          "namespace": "Horizon.Tests.Specs",
          "architectures": ["{{className}}ForCausalLM"],
          "symbols": {
            "vocab": { "config": "vocab_size" },
            "dim": { "config": "hidden_size" }
          },
          "embedding": { "name": "embed", "weight": "embed.weight", "vocab": "vocab", "dim": "dim" },
          "blocks": [ {{string.Join(", ", blocks)}} ],
          "final_norm": { "kind": "rms_norm", "name": "norm", "weight": "norm.weight", "eps": 1e-5 },
          "lm_head": { "name": "lm_head", "weight": "lm_head.weight" }
        }
        """;

    /// <summary>Generates and compiles the spec's class (no diagnostics, no warnings), loads the assembly and returns its Load.</summary>
    private static Func<string, ICausalLanguageModel> Compile(string className, string spec)
    {
        var (run, output) = GeneratorHarness.Run((GeneratorHarness.SpecPath(className + ".model.json"), spec));
        Assert.That(run.Diagnostics.Select(d => d.ToString()), Is.Empty);
        Assert.That(GeneratorHarness.CompileProblems(output).Select(d => d.ToString()), Is.Empty);
        using var image = new MemoryStream();
        var emitted = output.Emit(image);
        Assert.That(emitted.Success, string.Join("\n", emitted.Diagnostics));
        // Each Assembly.Load(byte[]) gets a load context of its own; Horizon.Runtime resolves to the loaded one.
        var assembly = Assembly.Load(image.ToArray());
        var load = assembly.GetType("Horizon.Tests.Specs." + className, throwOnError: true)!.GetMethod("Load", [typeof(string)])!;
        return directory => (ICausalLanguageModel)load.Invoke(null, [directory])!;
    }

    /// <summary>Random float32 tensors, written as one model.safetensors next to a config.json.</summary>
    private sealed class SyntheticCheckpoint(int seed)
    {
        private readonly Random _random = new(seed);
        private readonly List<(string Name, SafeTensorsDType DType, long[] Shape, byte[] Data)> _tensors = [];

        public void Add(string name, long[] shape, float scale, float offset = 0)
        {
            var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
            for (int i = 0; i < values.Length; i++)
                values[i] = offset + scale * (float)(2 * _random.NextDouble() - 1);
            _tensors.Add((name, SafeTensorsDType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray()));
        }

        /// <summary>A linear layer's weight [rows, cols], scaled so activations stay O(1).</summary>
        public void Linear(string name, int rows, int cols) => Add(name, [rows, cols], 1.7f / MathF.Sqrt(cols));

        /// <summary>A norm scale in [0.5, 1.5).</summary>
        public void Scale(string name, int length) => Add(name, [length], 0.5f, 1f);

        public void Bias(string name, int length) => Add(name, [length], 0.3f);

        /// <summary>A depthwise convolution [channels, 1, width].</summary>
        public void Conv(string name, int channels, int width) => Add(name, [channels, 1, width], 1.2f / MathF.Sqrt(width));

        /// <summary>Embedding, head, final norm, and per layer the two norms and the SwiGLU MLP.</summary>
        public void AddModel(int layers)
        {
            Add("embed.weight", [Vocab, Dim], 1f);
            for (int l = 0; l < layers; l++)
            {
                Scale($"layers.{l}.attn_norm.weight", Dim);
                Scale($"layers.{l}.mlp_norm.weight", Dim);
                Linear($"layers.{l}.mlp.gate.weight", Intermediate, Dim);
                Linear($"layers.{l}.mlp.up.weight", Intermediate, Dim);
                Linear($"layers.{l}.mlp.down.weight", Dim, Intermediate);
            }
            Scale("norm.weight", Dim);
            Add("lm_head.weight", [Vocab, Dim], 3f / MathF.Sqrt(Dim));
        }

        /// <summary>q [4·8, dim], k and v [2·8, dim], o [dim, 4·8] (+ biases), the projections of every attention variant here.</summary>
        public void AddProjections(int layer, bool biases = false)
        {
            string p = $"layers.{layer}.attn.";
            Linear(p + "q.weight", 32, Dim);
            Linear(p + "k.weight", 16, Dim);
            Linear(p + "v.weight", 16, Dim);
            Linear(p + "o.weight", Dim, 32);
            if (biases)
            {
                Bias(p + "q.bias", 32);
                Bias(p + "k.bias", 16);
                Bias(p + "v.bias", 16);
            }
        }

        public string Write(string className, int layers)
        {
            // A folder of this run's own: test runs of other checkouts may be writing theirs at the same time.
            string directory = Path.Combine(Path.GetTempPath(), "horizon-spec-kinds", Guid.NewGuid().ToString("N"), className);
            Directory.CreateDirectory(directory);
            File.WriteAllText(Path.Combine(directory, "config.json"), Config(className, layers));
            SafeTensorsWriter.Write(Path.Combine(directory, "model.safetensors"), _tensors);
            return directory;
        }
    }

    private static string Config(string className, int layers) =>
        $$"""{ "architectures": ["{{className}}ForCausalLM"], "vocab_size": {{Vocab}}, "hidden_size": {{Dim}}, "num_hidden_layers": {{layers}}, "rope_theta": 10000.0 }""";

    private static int[] TokenIds()
    {
        var random = new Random(7);
        return Enumerable.Range(0, Tokens).Select(_ => random.Next(Vocab)).ToArray();
    }

    // ---- The forward composed from the ops --------------------------------------------------------------------

    private static float[] Floats(ModelDirectory directory, string name) =>
        WeightConversion.ToSingleArray(directory.Get(name).Data.Span, WeightDType.F32);

    private static AttentionWeights ProjectionWeights(ModelDirectory d, int layer, bool biases = false)
    {
        string p = $"layers.{layer}.attn.";
        return new AttentionWeights(d.Matrix(p + "q.weight", 32, Dim), d.Matrix(p + "k.weight", 16, Dim), d.Matrix(p + "v.weight", 16, Dim), d.Matrix(p + "o.weight", Dim, 32),
            biases ? d.Vector(p + "q.bias", 32) : null, biases ? d.Vector(p + "k.bias", 16) : null, biases ? d.Vector(p + "v.bias", 16) : null);
    }

    private static AttentionOptions ProjectionOptions(ModelDirectory d, bool rope = true) =>
        new(Dim, 4, 2, 8, rope ? RopeTable.FromConfig(d.Config, 8) : null);

    /// <summary>embedding → per layer x += mixer(rms_norm(x)), x += swiglu(rms_norm(x)) → rms_norm → head, all through the ops.</summary>
    private static float[] ComposedLogits(ModelDirectory d, int[] tokens, Mixer[] mixers)
    {
        int n = tokens.Length;
        var x = new float[n * Dim];
        var normed = new float[n * Dim];
        var branch = new float[n * Dim];
        CpuKernels.Embedding(d.Matrix("embed.weight", Vocab, Dim), tokens, x);
        for (int l = 0; l < mixers.Length; l++)
        {
            string p = $"layers.{l}.";
            RmsNorm.Forward(x, n, new RmsNormWeights(d.Vector(p + "attn_norm.weight", Dim)), Eps, normed);
            mixers[l](normed, n, branch);
            CpuKernels.Add(x, branch);
            RmsNorm.Forward(x, n, new RmsNormWeights(d.Vector(p + "mlp_norm.weight", Dim)), Eps, normed);
            var mlp = new SwiGluMlpWeights(d.Matrix(p + "mlp.gate.weight", Intermediate, Dim), d.Matrix(p + "mlp.up.weight", Intermediate, Dim), d.Matrix(p + "mlp.down.weight", Dim, Intermediate));
            SwiGluMlp.Forward(normed, n, mlp, branch);
            CpuKernels.Add(x, branch);
        }
        RmsNorm.Forward(x, n, new RmsNormWeights(d.Vector("norm.weight", Dim)), Eps, normed);
        var logits = new float[n * Vocab];
        CpuKernels.Linear(normed, n, d.Matrix("lm_head.weight", Vocab, Dim), default, logits);
        return logits;
    }

    /// <summary>(a) the generated model equals the composed ops; (b) decode token by token equals prefill; a reset state runs like a new one.</summary>
    private static void AssertModel(Func<string, ICausalLanguageModel> load, string directory, Func<ModelDirectory, Mixer[]> mixers)
    {
        try
        {
            AssertModelIn(load, directory, mixers);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(directory)!, recursive: true);
        }
    }

    private static void AssertModelIn(Func<string, ICausalLanguageModel> load, string directory, Func<ModelDirectory, Mixer[]> mixers)
    {
        int[] tokens = TokenIds();
        using var model = load(directory);
        Assert.That(model.VocabSize, Is.EqualTo(Vocab));

        var prefill = new float[Tokens * Vocab];
        var state = model.CreateState(Tokens);
        model.Forward(tokens, state, prefill);

        float[] composed;
        using (var checkpoint = ModelDirectory.Open(directory))
            composed = ComposedLogits(checkpoint, tokens, mixers(checkpoint));
        double composedDelta = MaxDelta(prefill, composed);
        TestContext.Out.WriteLine($"max |Δ logit| against the composed ops: {composedDelta:E2}");
        Assert.That(composedDelta, Is.LessThanOrEqualTo(ComposedTolerance));

        state.Reset();
        Assert.That(state.Length, Is.Zero);
        var step = new float[Vocab];
        var decode = new float[Tokens * Vocab];
        for (int t = 0; t < Tokens; t++)
        {
            model.Forward(tokens.AsSpan(t, 1), state, step);
            step.CopyTo(decode, t * Vocab);
        }
        Assert.That(state.Length, Is.EqualTo(Tokens));
        double decodeDelta = MaxDelta(prefill, decode);
        TestContext.Out.WriteLine($"max |Δ logit| decode against prefill (after Reset): {decodeDelta:E2}");
        Assert.That(decodeDelta, Is.LessThanOrEqualTo(DecodeTolerance));
    }

    private static double MaxDelta(float[] a, float[] b)
    {
        Assert.That(a, Has.Length.EqualTo(b.Length));
        double max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        Assert.That(double.IsFinite(max), "logits are finite");
        return max;
    }

    // ---- The kinds ----------------------------------------------------------------------------------------------

    [Test]
    public void Linear_attention_model_matches_the_ops_and_decodes_like_prefill()
    {
        const string name = "LinearAttentionSpecModel";
        string mixer = $$"""
            { "kind": "linear_attention", "name": "attn", "heads": 4, "kv_heads": 2, "expand_k": 0.5, "expand_v": 1, "norm_eps": 1e-5, "output_gate": true,
              "weights": { {{Projections}}, "output_gate": "attn.g", "norm": "attn.norm" } }
            """;
        var load = Compile(name, Spec(name, Block("layers", 2, mixer)));
        var checkpoint = new SyntheticCheckpoint(11);
        checkpoint.AddModel(2);
        for (int l = 0; l < 2; l++)
        {
            // d_k = int(32 · 0.5) / 4 = 4, d_v = 32 / 4 = 8: q [16, dim], k [2·4, dim], v [2·8, dim], o [dim, 32].
            string p = $"layers.{l}.attn.";
            checkpoint.Linear(p + "q.weight", 16, Dim);
            checkpoint.Linear(p + "k.weight", 8, Dim);
            checkpoint.Linear(p + "v.weight", 16, Dim);
            checkpoint.Linear(p + "o.weight", Dim, 32);
            checkpoint.Linear(p + "g.weight", 32, Dim);
            checkpoint.Scale(p + "norm.weight", 8);
        }
        string directory = checkpoint.Write(name, 2);

        AssertModel(load, directory, d => Enumerable.Range(0, 2).Select(l =>
        {
            string p = $"layers.{l}.attn.";
            var options = new LinearAttentionOptions(Dim, 4, 2, 4, 8) { NormEps = Eps };
            var weights = new LinearAttentionWeights(d.Matrix(p + "q.weight", 16, Dim), d.Matrix(p + "k.weight", 8, Dim), d.Matrix(p + "v.weight", 16, Dim),
                d.Matrix(p + "o.weight", Dim, 32), d.Matrix(p + "g.weight", 32, Dim), d.Vector(p + "norm.weight", 8));
            var state = options.CreateState();
            return (Mixer)((x, rows, y) => LinearAttention.Forward(x, rows, weights, options, state, y));
        }).ToArray());
    }

    [Test]
    public void Sliding_window_attention_model_matches_the_ops_and_decodes_like_prefill()
    {
        const string name = "SlidingWindowSpecModel";
        string mixer = $$"""
            { "kind": "sliding_window_attention", "name": "attn", "heads": 4, "kv_heads": 2, "head_dim": 8, "rope": "config",
              "window": 8, "global_positions": [0, 3], "weights": { {{Projections}} } }
            """;
        var load = Compile(name, Spec(name, Block("layers", 2, mixer)));
        var checkpoint = new SyntheticCheckpoint(12);
        checkpoint.AddModel(2);
        checkpoint.AddProjections(0);
        checkpoint.AddProjections(1);
        string directory = checkpoint.Write(name, 2);

        AssertModel(load, directory, d => Enumerable.Range(0, 2).Select(l =>
        {
            var options = new SlidingWindowAttentionOptions(ProjectionOptions(d), 8, [0, 3]);
            var weights = ProjectionWeights(d, l);
            var cache = new SlidingWindowCache(options);
            return (Mixer)((x, rows, y) => SlidingWindowAttention.Forward(x, rows, weights, options, cache, y));
        }).ToArray());
    }

    [Test]
    public void Cca_attention_model_matches_the_ops_and_decodes_like_prefill()
    {
        const string name = "CcaSpecModel";
        string mixer = $$"""
            { "kind": "cca_attention", "name": "attn", "heads": 4, "kv_heads": 2, "head_dim": 8, "qkv_bias": true, "rope": "config",
              "group_size": 4, "window": 8, "weights": { {{Projections}} } }
            """;
        var load = Compile(name, Spec(name, Block("layers", 2, mixer)));
        var checkpoint = new SyntheticCheckpoint(13);
        checkpoint.AddModel(2);
        checkpoint.AddProjections(0, biases: true);
        checkpoint.AddProjections(1, biases: true);
        string directory = checkpoint.Write(name, 2);

        AssertModel(load, directory, d => Enumerable.Range(0, 2).Select(l =>
        {
            var options = new CcaAttentionOptions(ProjectionOptions(d), 4, 8);
            var weights = ProjectionWeights(d, l, biases: true);
            var cache = new CcaCache(Tokens, options);
            return (Mixer)((x, rows, y) => CcaAttention.Forward(x, rows, weights, options, cache, y));
        }).ToArray());
    }

    [Test]
    public void Agent_attention_model_matches_the_ops_and_decodes_like_prefill()
    {
        const string name = "AgentSpecModel";
        string mixer = $$"""
            { "kind": "agent_attention", "name": "attn", "heads": 4, "kv_heads": 2, "head_dim": 8, "agents": 2, "chunk_size": 8,
              "conv_kernel": 3, "conv_bias": true, "weights": { {{Projections}}, "conv": "attn.dwc" } }
            """;
        var load = Compile(name, Spec(name, Block("layers", 2, mixer)));
        var checkpoint = new SyntheticCheckpoint(14);
        checkpoint.AddModel(2);
        for (int l = 0; l < 2; l++)
        {
            checkpoint.AddProjections(l);
            checkpoint.Conv($"layers.{l}.attn.dwc.weight", 32, 3);
            checkpoint.Bias($"layers.{l}.attn.dwc.bias", 32);
        }
        string directory = checkpoint.Write(name, 2);

        AssertModel(load, directory, d => Enumerable.Range(0, 2).Select(l =>
        {
            var options = new AgentAttentionOptions(ProjectionOptions(d, rope: false), Agents: 2, ConvKernel: 3, Causal: true, ChunkSize: 8);
            var weights = new AgentAttentionWeights(ProjectionWeights(d, l), Floats(d, $"layers.{l}.attn.dwc.weight"), d.Vector($"layers.{l}.attn.dwc.bias", 32));
            var state = new AgentAttentionState(Tokens, options);
            return (Mixer)((x, rows, y) => AgentAttention.Forward(x, rows, weights, options, state, y));
        }).ToArray());
    }

    [Test]
    public void Hybrid_of_two_gla_layers_and_an_attention_layer_loads_and_runs()
    {
        const string name = "HybridGlaSpecModel";
        var load = Compile(name, Spec(name, Block("gla_layers", 2, GlaMixer), Block("attention_layers", 1, AttentionMixer)));
        var checkpoint = new SyntheticCheckpoint(15);
        checkpoint.AddModel(3);
        for (int l = 0; l < 2; l++)
        {
            // key_dim = 16 (d_k 4 over 4 heads), value_dim = 32 (d_v 8); 2 key/value heads: k [8, dim], v [16, dim].
            string p = $"layers.{l}.attn.";
            checkpoint.Linear(p + "q.weight", 16, Dim);
            checkpoint.Linear(p + "k.weight", 8, Dim);
            checkpoint.Linear(p + "v.weight", 16, Dim);
            checkpoint.Linear(p + "gk.0.weight", 16, Dim);
            checkpoint.Linear(p + "gk.1.weight", 8, 16);
            checkpoint.Bias(p + "gk.1.bias", 8);
            checkpoint.Linear(p + "o.weight", Dim, 32);
            checkpoint.Linear(p + "g.weight", 32, Dim);
            checkpoint.Scale(p + "norm.weight", 8);
            checkpoint.Conv(p + "q_conv.weight", 16, 4);
            checkpoint.Conv(p + "k_conv.weight", 8, 4);
            checkpoint.Conv(p + "v_conv.weight", 16, 4);
        }
        checkpoint.AddProjections(2);
        string directory = checkpoint.Write(name, 3);

        AssertModel(load, directory, d =>
        {
            var mixers = new Mixer[3];
            for (int l = 0; l < 2; l++)
            {
                string p = $"layers.{l}.attn.";
                var options = new GlaOptions(Dim, 4, 2, 4, 8) { NormEps = Eps, ClampMin = -0.5, ConvSize = 4 };
                var weights = new GlaWeights(d.Matrix(p + "q.weight", 16, Dim), d.Matrix(p + "k.weight", 8, Dim), d.Matrix(p + "v.weight", 16, Dim),
                    d.Matrix(p + "gk.0.weight", 16, Dim), d.Matrix(p + "gk.1.weight", 8, 16), d.Vector(p + "gk.1.bias", 8), d.Matrix(p + "o.weight", Dim, 32),
                    d.Matrix(p + "g.weight", 32, Dim), d.Vector(p + "norm.weight", 8),
                    new ShortConvWeights(Floats(d, p + "q_conv.weight"), 16, 4), new ShortConvWeights(Floats(d, p + "k_conv.weight"), 8, 4),
                    new ShortConvWeights(Floats(d, p + "v_conv.weight"), 16, 4));
                var state = new GlaState(options);
                mixers[l] = (x, rows, y) => Gla.Forward(x, rows, weights, options, state, y);
            }
            var attentionOptions = ProjectionOptions(d);
            var attentionWeights = ProjectionWeights(d, 2);
            var cache = new KvCache(Tokens, 2, 8);
            mixers[2] = (x, rows, y) => Attention.Forward(x, rows, attentionWeights, attentionOptions, cache, y);
            return mixers;
        });
    }
}
