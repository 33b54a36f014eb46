using System.Runtime.InteropServices;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// The <c>moe</c> op against a float64 reference written per token from the equations (docs/ops/moe.md): odd sizes
/// (D = 36, I = 20, E = 5, shared width 28), top-2 and top-3, 1/17/40 rows, with and without renormalisation and a
/// shared expert, F32, BF16 and F16 weights; both checkpoint layouts; exact routing and tie order; config keys.
/// </summary>
public class MoeTests
{
    private const int D = 36, I = 20, E = 5, SharedWidth = 28;
    private const double Tolerance = 1e-5; // max |y − ref| / max |ref|

    public static IEnumerable<TestCaseData> ReferenceCases()
    {
        foreach (var dtype in new[] { WeightDType.F32, WeightDType.BF16, WeightDType.F16 })
            foreach (int topK in new[] { 2, 3 })
                foreach (int rows in new[] { 1, 17, 40 })
                    foreach (bool normalize in new[] { true, false })
                        foreach (bool shared in new[] { false, true })
                            yield return new TestCaseData(dtype, topK, rows, normalize, shared);
    }

    [TestCaseSource(nameof(ReferenceCases))]
    public void Forward_matches_float64_reference(WeightDType dtype, int topK, int rows, bool normalize, bool shared)
    {
        int seed = 1 + (int)dtype * 10007 + topK * 1009 + rows * 101 + (normalize ? 11 : 0) + (shared ? 5 : 0);
        var model = new Synthetic(dtype, shared ? SharedWidth : null, seed);
        var weights = model.Bind(fused: seed % 2 == 0);
        var options = new MoeOptions(topK, normalize);
        float[] x = RandomInputs(rows * D, seed + 1);

        var y = new float[rows * D];
        Moe.Forward(x, rows, weights, options, y);
        var expected = model.Reference(x, rows, topK, normalize, out int[] expectedExperts, out double[] expectedWeights);

        var experts = new int[rows * topK];
        var routeWeights = new float[rows * topK];
        Moe.Route(x, rows, weights, options, experts, routeWeights);
        Assert.That(experts, Is.EqualTo(expectedExperts), "routing decisions");
        for (int i = 0; i < routeWeights.Length; i++)
            Assert.That(routeWeights[i], Is.EqualTo(expectedWeights[i]).Within(1e-5 * expectedWeights[i]), $"routing weight {i}");

        double error = RelativeError(y, expected);
        TestContext.Out.WriteLine($"{dtype} top-{topK} rows {rows} normalise {normalize} shared {shared}: max |Δ| / max |ref| = {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(Tolerance));
    }

    [TestCase(WeightDType.F32, false)]
    [TestCase(WeightDType.BF16, false)]
    [TestCase(WeightDType.F16, false)]
    [TestCase(WeightDType.F32, true)]
    [TestCase(WeightDType.BF16, true)]
    public void Fused_and_per_expert_layouts_give_identical_results(WeightDType dtype, bool shared)
    {
        var model = new Synthetic(dtype, shared ? SharedWidth : null, seed: 7);
        var perExpert = model.Bind(fused: false);
        var fused = model.Bind(fused: true);
        float[] x = RandomInputs(40 * D, 8);
        var options = new MoeOptions(2, NormalizeTopK: !shared);
        var a = new float[x.Length];
        var b = new float[x.Length];
        Moe.Forward(x, 40, perExpert, options, a);
        Moe.Forward(x, 40, fused, options, b);
        Assert.That(b, Is.EqualTo(a)); // bit for bit: the same bytes, the same arithmetic
    }

    [Test]
    public void Both_mixtral_layouts_bind_from_safetensors_checkpoints_and_agree()
    {
        var model = new Synthetic(WeightDType.BF16, null, seed: 21);
        string root = Path.Combine(Path.GetTempPath(), $"horizon-moe-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            var outputs = new List<float[]>();
            float[] x = RandomInputs(17 * D, 22);
            foreach (var (names, fused) in new[] { (MoeTensorNames.MixtralPerExpert, false), (MoeTensorNames.MixtralFused, true) })
            {
                string dir = Path.Combine(root, fused ? "fused" : "per-expert");
                Directory.CreateDirectory(dir);
                File.WriteAllText(Path.Combine(dir, "config.json"), """{"model_type": "mixtral"}""");
                var tensors = model.Tensors(names, "model.layers.1.", fused)
                    .Select(t => (t.Key, ToSafeTensorsDType(model.DType), t.Value.Info.Shape, t.Value.Data.ToArray()));
                SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
                using var checkpoint = ModelDirectory.Open(dir);
                var weights = MoeWeights.Bind(checkpoint, "model.layers.1.", MoeTensorNames.Mixtral, new MoeShape(D, E, I));
                Assert.That(weights.Router.Name, Is.EqualTo(fused ? "model.layers.1.mlp.gate.weight" : "model.layers.1.block_sparse_moe.gate.weight"));
                var y = new float[x.Length];
                Moe.Forward(x, 17, weights, new MoeOptions(2, true), y);
                outputs.Add(y);
            }
            Assert.That(outputs[1], Is.EqualTo(outputs[0]));
            var expected = model.Reference(x, 17, 2, true, out _, out _);
            Assert.That(RelativeError(outputs[0], expected), Is.LessThanOrEqualTo(Tolerance));
        }
        finally
        {
            if (Directory.Exists(root))
                Directory.Delete(root, recursive: true);
        }
    }

    [TestCase(WeightDType.F32)]
    [TestCase(WeightDType.BF16)]
    public void Fused_expert_slices_are_views_of_the_stored_tensor(WeightDType dtype)
    {
        var model = new Synthetic(dtype, null, seed: 3);
        var tensors = model.Tensors(MoeTensorNames.Qwen2MoeNames, "", fused: true);
        var weights = MoeWeights.Bind(Lookup(tensors), "", [MoeTensorNames.Qwen2MoeNames], new MoeShape(D, E, I));
        Assert.That(MemoryMarshal.TryGetArray(tensors["mlp.experts.gate_up_proj"].Data, out var gateUp), Is.True);
        Assert.That(MemoryMarshal.TryGetArray(tensors["mlp.experts.down_proj"].Data, out var down), Is.True);
        int size = dtype.ByteSize();
        for (int k = 0; k < E; k++)
        {
            var expert = weights.Experts[k];
            AssertView(expert.Gate.Data, gateUp.Array!, 2L * k * I * D * size);
            AssertView(expert.Up.Data, gateUp.Array!, (2L * k + 1) * I * D * size);
            AssertView(expert.Down.Data, down.Array!, (long)k * D * I * size);
        }

        static void AssertView(ReadOnlyMemory<byte> slice, byte[] stored, long offset)
        {
            Assert.That(MemoryMarshal.TryGetArray(slice, out var segment), Is.True);
            Assert.That(segment.Array, Is.SameAs(stored));
            Assert.That(segment.Offset, Is.EqualTo(offset));
        }
    }

    [Test]
    public void Batched_rows_equal_rows_one_at_a_time_bit_for_bit()
    {
        // 300 rows: more than one internal pass of 256 rows, and enough work to run multithreaded.
        var model = new Synthetic(WeightDType.BF16, SharedWidth, seed: 5);
        var weights = model.Bind(fused: true);
        var options = new MoeOptions(3, false);
        const int rows = 300;
        float[] x = RandomInputs(rows * D, 6);
        var batched = new float[rows * D];
        Moe.Forward(x, rows, weights, options, batched);
        var single = new float[D];
        for (int t = 0; t < rows; t++)
        {
            Moe.Forward(x.AsSpan(t * D, D), 1, weights, options, single);
            Assert.That(batched.AsSpan(t * D, D).ToArray(), Is.EqualTo(single), $"row {t}");
        }
        Assert.That(RelativeError(batched, model.Reference(x, rows, 3, false, out _, out _)), Is.LessThanOrEqualTo(Tolerance));
    }

    [Test]
    public void Ties_go_to_the_lower_expert_index()
    {
        // Experts 1 and 3 have the same router row, so their logits are bitwise equal and the largest.
        var v = RandomInputs(D, 11);
        var x = v.Select(a => a).ToArray(); // v · x > 0
        float[] rows = new float[E * D];
        float[] scales = [0.5f, 1f, 0.2f, 1f, -1f];
        for (int e = 0; e < E; e++)
            for (int j = 0; j < D; j++)
                rows[e * D + j] = v[j] * scales[e];
        var model = new Synthetic(WeightDType.F32, null, seed: 12);
        var weights = model.Bind(fused: false) with { Router = Matrix.FromFloats("router", E, D, rows) };

        var experts = new int[3];
        var routeWeights = new float[3];
        Moe.Route(x, 1, weights, new MoeOptions(3, true), experts, routeWeights);
        Assert.That(experts, Is.EqualTo(new[] { 1, 3, 0 }));
        Moe.Route(x, 1, weights, new MoeOptions(2, true), experts.AsSpan(0, 2), routeWeights.AsSpan(0, 2));
        Assert.That(experts[..2], Is.EqualTo(new[] { 1, 3 }));
        Assert.That(routeWeights[..2], Is.EqualTo(new[] { 0.5f, 0.5f }));
    }

    [Test]
    public void Top_one_of_one_expert_equals_the_swiglu_mlp_op()
    {
        var model = new Synthetic(WeightDType.F32, null, seed: 31, experts: 1);
        var weights = model.Bind(fused: false);
        float[] x = RandomInputs(17 * D, 32);
        var moe = new float[x.Length];
        Moe.Forward(x, 17, weights, new MoeOptions(1, true), moe);
        var dense = new float[x.Length];
        SwiGluMlp.Forward(x, 17, weights.Experts[0], dense);
        Assert.That(RelativeError(moe, dense.Select(v => (double)v).ToArray()), Is.LessThanOrEqualTo(Tolerance));
    }

    [Test]
    public void Parameter_counts_follow_the_shapes()
    {
        var model = new Synthetic(WeightDType.F32, SharedWidth, seed: 1);
        var weights = model.Bind(fused: true);
        long expert = 3L * I * D, shared = 3L * SharedWidth * D, router = (long)E * D, gate = D;
        Assert.That(weights.ParameterCount, Is.EqualTo(router + E * expert + shared + gate));
        Assert.That(weights.ActiveParameterCount(2), Is.EqualTo(router + 2 * expert + shared + gate));
    }

    [Test]
    public void Bad_arguments_are_refused()
    {
        var weights = new Synthetic(WeightDType.F32, null, seed: 2).Bind(fused: false);
        var x = new float[2 * D];
        var y = new float[2 * D];
        Assert.Throws<ArgumentOutOfRangeException>(() => Moe.Forward(x, 2, weights, new MoeOptions(0, true), y));
        Assert.Throws<ArgumentOutOfRangeException>(() => Moe.Forward(x, 2, weights, new MoeOptions(E + 1, true), y));
        Assert.Throws<ArgumentException>(() => Moe.Forward(x, 2, weights, new MoeOptions(2, true), x));
        Assert.Throws<ArgumentException>(() => Moe.Forward(x, 3, weights, new MoeOptions(2, true), new float[3 * D]));
    }

    [Test]
    public void Binding_errors_name_the_tensor()
    {
        var model = new Synthetic(WeightDType.BF16, SharedWidth, seed: 4);
        var shape = new MoeShape(D, E, I, SharedWidth);
        var names = MoeTensorNames.Qwen2MoeNames;
        string p = "model.layers.0.";

        var missing = model.Tensors(names, p, fused: false);
        missing.Remove("model.layers.0.mlp.experts.3.up_proj.weight");
        Assert.That(BindError(missing), Does.Contain("'model.layers.0.mlp.experts.3.up_proj.weight' not found"));

        var both = model.Tensors(names, p, fused: true);
        foreach (var (name, tensor) in model.Tensors(names, p, fused: false))
            both.TryAdd(name, tensor);
        Assert.That(BindError(both), Does.Contain("must hold one layout"));

        var half = model.Tensors(names, p, fused: true);
        half.Remove("model.layers.0.mlp.experts.down_proj");
        Assert.That(BindError(half), Does.Contain("fused experts are incomplete"));

        var wrongShape = model.Tensors(names, p, fused: true);
        var (info, data) = wrongShape["model.layers.0.mlp.experts.down_proj"];
        wrongShape["model.layers.0.mlp.experts.down_proj"] = (info with { Shape = [E, I, D] }, data);
        Assert.That(BindError(wrongShape), Does.Contain("'model.layers.0.mlp.experts.down_proj' has shape [5, 20, 36], expected [5, 36, 20]"));

        var fewer = model.Tensors(names, p, fused: false);
        Assert.That(Assert.Throws<ModelLoadException>(() => MoeWeights.Bind(Lookup(fewer), p, MoeTensorNames.Qwen2Moe, shape with { Experts = E - 1 }))!.Message,
            Does.Contain("'model.layers.0.mlp.gate.weight' has shape [5, 36], expected [4, 36]"));

        var noRouter = model.Tensors(names, p, fused: false);
        noRouter.Remove("model.layers.0.mlp.gate.weight");
        Assert.That(Assert.Throws<ModelLoadException>(() => MoeWeights.Bind(Lookup(noRouter), p, MoeTensorNames.Mixtral, shape))!.Message,
            Does.Contain("no MoE router found under 'model.layers.0.'")
                .And.Contain("'model.layers.0.block_sparse_moe.gate.weight'").And.Contain("'model.layers.0.mlp.gate.weight'"));

        var neither = model.Tensors(names, p, fused: false);
        Assert.That(Assert.Throws<ModelLoadException>(() => MoeWeights.Bind(Lookup(neither), p, MoeTensorNames.Mixtral, shape))!.Message,
            Does.Contain("found neither 'model.layers.0.mlp.experts.0.w1.weight' (one tensor per expert) nor 'model.layers.0.mlp.experts.gate_up_proj' (fused)"));

        string BindError(Dictionary<string, (SafeTensorInfo Info, ReadOnlyMemory<byte> Data)> tensors) =>
            Assert.Throws<ModelLoadException>(() => MoeWeights.Bind(Lookup(tensors), p, MoeTensorNames.Qwen2Moe, shape))!.Message;
    }

    [Test]
    public void Mixtral_config_keys()
    {
        var config = ModelConfig.Parse("""
            {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_local_experts": 8,
             "num_experts_per_tok": 2, "hidden_act": "silu", "num_hidden_layers": 32, "router_jitter_noise": 0.0}
            """);
        var moe = MoeConfig.FromConfig(config);
        Assert.That(moe, Is.EqualTo(moe with { Experts = 8, TopK = 2, Intermediate = 14336, SharedIntermediate = null, NormalizeTopK = true, DecoderSparseStep = 1 }));
        Assert.That(Enumerable.Range(0, 32).All(moe.IsMoeLayer), Is.True);
        Assert.That(moe.Shape(4096), Is.EqualTo(new MoeShape(4096, 8, 14336)));
    }

    [Test]
    public void Qwen2_moe_config_keys_and_dense_layers()
    {
        var config = ModelConfig.Parse("""
            {"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632, "moe_intermediate_size": 1408,
             "shared_expert_intermediate_size": 5632, "num_experts": 60, "num_experts_per_tok": 4, "norm_topk_prob": false,
             "decoder_sparse_step": 2, "mlp_only_layers": [3], "hidden_act": "silu"}
            """);
        var moe = MoeConfig.FromConfig(config);
        Assert.That((moe.Experts, moe.TopK, moe.Intermediate, moe.SharedIntermediate, moe.NormalizeTopK, moe.DenseIntermediate),
            Is.EqualTo((60, 4, 1408, (int?)5632, false, 5632)));
        // (layer + 1) % decoder_sparse_step == 0 and not in mlp_only_layers.
        Assert.That(Enumerable.Range(0, 6).Select(moe.IsMoeLayer), Is.EqualTo(new[] { false, true, false, false, false, true }));

        var defaults = MoeConfig.FromConfig(ModelConfig.Parse("""{"model_type": "qwen2_moe", "intermediate_size": 96, "num_experts": 4, "num_experts_per_tok": 2}"""));
        Assert.That((defaults.NormalizeTopK, defaults.DecoderSparseStep, defaults.MlpOnlyLayers.Count, defaults.Intermediate), Is.EqualTo((false, 1, 0, 96)));

        Assert.Throws<ModelLoadException>(() => MoeConfig.FromConfig(ModelConfig.Parse("""{"intermediate_size": 96, "num_experts": 4, "num_experts_per_tok": 5}""")));
        Assert.That(Assert.Throws<ModelLoadException>(() => MoeConfig.FromConfig(ModelConfig.Parse(
            """{"intermediate_size": 96, "num_experts": 4, "num_experts_per_tok": 2, "hidden_act": "gelu"}""")))!.Message, Does.Contain("hidden_act = 'gelu'"));
    }

    [Test]
    public void Config_json_as_transformers_5_17_writes_it()
    {
        // config.json of make_moe_golden.py's qwen2-moe-shared-dense fixture, as save_pretrained wrote it (MoE keys).
        var qwen = MoeConfig.FromConfig(ModelConfig.Parse("""
            {"architectures": ["Qwen2MoeForCausalLM"], "decoder_sparse_step": 1, "hidden_act": "silu", "hidden_size": 64,
             "intermediate_size": 96, "mlp_only_layers": [1], "model_type": "qwen2_moe", "moe_intermediate_size": 32,
             "norm_topk_prob": false, "num_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 3, "qkv_bias": true,
             "router_aux_loss_coef": 0.001, "shared_expert_intermediate_size": 80, "output_router_logits": false}
            """));
        Assert.That(qwen.Shape(64), Is.EqualTo(new MoeShape(64, 4, 32, 80)));
        Assert.That(qwen.Options, Is.EqualTo(new MoeOptions(2, false)));
        Assert.That(Enumerable.Range(0, 3).Select(qwen.IsMoeLayer), Is.EqualTo(new[] { true, false, true }));

        // mixtral-moe-gqa: no norm_topk_prob key, num_local_experts (num_experts is only an attribute alias).
        var mixtral = MoeConfig.FromConfig(ModelConfig.Parse("""
            {"architectures": ["MixtralForCausalLM"], "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 48,
             "model_type": "mixtral", "num_experts_per_tok": 2, "num_local_experts": 4, "router_jitter_noise": 0.0}
            """));
        Assert.That(mixtral.Shape(64), Is.EqualTo(new MoeShape(64, 4, 48)));
        Assert.That(mixtral.Options, Is.EqualTo(new MoeOptions(2, true)));
    }

    // ---- helpers ----

    private static Func<string, (SafeTensorInfo Info, ReadOnlyMemory<byte> Data)?> Lookup(Dictionary<string, (SafeTensorInfo Info, ReadOnlyMemory<byte> Data)> tensors) =>
        name => tensors.TryGetValue(name, out var t) ? t : null;

    private static double RelativeError(float[] actual, double[] expected)
    {
        double maxError = 0, maxExpected = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            maxError = Math.Max(maxError, Math.Abs(actual[i] - expected[i]));
            maxExpected = Math.Max(maxExpected, Math.Abs(expected[i]));
        }
        return maxError / maxExpected;
    }

    private static float[] RandomInputs(int count, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)Normal(random)).ToArray();
    }

    private static double Normal(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    private static SafeTensorsDType ToSafeTensorsDType(WeightDType dtype) => dtype switch
    {
        WeightDType.F32 => SafeTensorsDType.F32,
        WeightDType.F16 => SafeTensorsDType.F16,
        _ => SafeTensorsDType.BF16,
    };

    /// <summary>
    /// Random MoE weights rounded to <see cref="DType"/>, kept both as the stored bytes (in either layout) and as the
    /// exact float64 values of those bytes, which the reference uses.
    /// </summary>
    private sealed class Synthetic
    {
        private readonly double[] _router;
        private readonly double[][] _gate, _up, _down;
        private readonly double[]? _sharedGate, _sharedUp, _sharedDown, _sharedGateWeight;
        private readonly int? _sharedWidth;
        private readonly int _experts;

        public Synthetic(WeightDType dtype, int? sharedWidth, int seed, int experts = E)
        {
            DType = dtype;
            _sharedWidth = sharedWidth;
            _experts = experts;
            var random = new Random(seed);
            // Router logits of spread ~2 so that the routing is decisive; projections of unit gain.
            _router = Values(random, experts * D, 2.0 / Math.Sqrt(D));
            _gate = Enumerable.Range(0, experts).Select(_ => Values(random, I * D, 1 / Math.Sqrt(D))).ToArray();
            _up = Enumerable.Range(0, experts).Select(_ => Values(random, I * D, 1 / Math.Sqrt(D))).ToArray();
            _down = Enumerable.Range(0, experts).Select(_ => Values(random, D * I, 1 / Math.Sqrt(I))).ToArray();
            if (sharedWidth is int s)
            {
                _sharedGate = Values(random, s * D, 1 / Math.Sqrt(D));
                _sharedUp = Values(random, s * D, 1 / Math.Sqrt(D));
                _sharedDown = Values(random, D * s, 1 / Math.Sqrt(s));
                _sharedGateWeight = Values(random, D, 1 / Math.Sqrt(D));
            }
        }

        public WeightDType DType { get; }

        private double[] Values(Random random, int count, double scale) =>
            Enumerable.Range(0, count).Select(_ => Round(Normal(random) * scale)).ToArray();

        /// <summary>The value of <paramref name="v"/> once stored in <see cref="DType"/> (round to nearest even).</summary>
        private double Round(double v)
        {
            float f = (float)v;
            switch (DType)
            {
                case WeightDType.F16:
                    return (double)(float)(Half)f;
                case WeightDType.BF16:
                    uint bits = BitConverter.SingleToUInt32Bits(f);
                    uint rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
                    return BitConverter.UInt32BitsToSingle(rounded);
                default:
                    return f;
            }
        }

        private byte[] Encode(IEnumerable<double> values)
        {
            var floats = values.Select(v => (float)v).ToArray();
            return DType switch
            {
                WeightDType.F32 => MemoryMarshal.AsBytes(floats.AsSpan()).ToArray(),
                WeightDType.F16 => MemoryMarshal.AsBytes(floats.Select(f => (Half)f).ToArray().AsSpan()).ToArray(),
                _ => MemoryMarshal.AsBytes(floats.Select(f => (ushort)(BitConverter.SingleToUInt32Bits(f) >> 16)).ToArray().AsSpan()).ToArray(),
            };
        }

        /// <summary>The block's tensors as a checkpoint would hold them, one per expert or fused.</summary>
        public Dictionary<string, (SafeTensorInfo Info, ReadOnlyMemory<byte> Data)> Tensors(MoeTensorNames names, string prefix, bool fused)
        {
            var result = new Dictionary<string, (SafeTensorInfo Info, ReadOnlyMemory<byte> Data)>(StringComparer.Ordinal);
            void Add(string name, long[] shape, IEnumerable<double> values)
            {
                var bytes = Encode(values);
                result[prefix + name] = (new SafeTensorInfo(prefix + name, ToSafeTensorsDType(DType), shape, 0, bytes.Length), bytes);
            }
            Add(names.RouterWeight, [_experts, D], _router);
            if (fused)
            {
                Add(names.FusedGateUp, [_experts, 2 * I, D], Enumerable.Range(0, _experts).SelectMany(e => _gate[e].Concat(_up[e])));
                Add(names.FusedDown, [_experts, D, I], _down.SelectMany(v => v));
            }
            else
            {
                for (int e = 0; e < _experts; e++)
                {
                    Add(names.ExpertWeight(e, names.Gate), [I, D], _gate[e]);
                    Add(names.ExpertWeight(e, names.Up), [I, D], _up[e]);
                    Add(names.ExpertWeight(e, names.Down), [D, I], _down[e]);
                }
            }
            if (_sharedWidth is int s && names.SharedExpert is not null)
            {
                Add($"{names.SharedExpertModule}.{names.SharedGate}.weight", [s, D], _sharedGate!);
                Add($"{names.SharedExpertModule}.{names.SharedUp}.weight", [s, D], _sharedUp!);
                Add($"{names.SharedExpertModule}.{names.SharedDown}.weight", [D, s], _sharedDown!);
                Add(names.SharedExpertGateWeight, [1, D], _sharedGateWeight!);
            }
            return result;
        }

        /// <summary>Binds the Qwen2-MoE names (which carry the shared expert) in the chosen layout.</summary>
        public MoeWeights Bind(bool fused) =>
            MoeWeights.Bind(Lookup(Tensors(MoeTensorNames.Qwen2MoeNames, "model.layers.0.", fused)), "model.layers.0.",
                MoeTensorNames.Qwen2Moe, new MoeShape(D, _experts, I, _sharedWidth));

        /// <summary>
        /// Per token, in float64: l = W_r x; T = the k largest l (ties: lower index); p = softmax(l) over all experts;
        /// w_i = p_i / Σ_T p_j (renormalised) or p_i; y = Σ_T w_i SwiGLU_i(x) + σ(w_sg · x) SwiGLU_shared(x).
        /// </summary>
        public double[] Reference(float[] x, int rows, int k, bool normalize, out int[] experts, out double[] weights)
        {
            var y = new double[rows * D];
            experts = new int[rows * k];
            weights = new double[rows * k];
            for (int t = 0; t < rows; t++)
            {
                var xt = x.AsSpan(t * D, D).ToArray().Select(v => (double)v).ToArray();
                var logits = new double[_experts];
                for (int e = 0; e < _experts; e++)
                    logits[e] = Dot(_router, e * D, xt);
                // OrderBy is stable: equal logits keep ascending index order.
                var top = Enumerable.Range(0, _experts).OrderByDescending(e => logits[e]).Take(k).ToArray();
                double max = logits.Max();
                double all = logits.Sum(l => Math.Exp(l - max));
                double topSum = top.Sum(e => Math.Exp(logits[e] - max));
                for (int s = 0; s < k; s++)
                {
                    int e = top[s];
                    double p = Math.Exp(logits[e] - max) / all;
                    double w = normalize ? p / (topSum / all) : p;
                    experts[t * k + s] = e;
                    weights[t * k + s] = w;
                    var expertOut = SwiGlu(xt, _gate[e], _up[e], _down[e], I);
                    for (int j = 0; j < D; j++)
                        y[t * D + j] += w * expertOut[j];
                }
                if (_sharedWidth is int width)
                {
                    double gate = 1 / (1 + Math.Exp(-Dot(_sharedGateWeight!, 0, xt)));
                    var sharedOut = SwiGlu(xt, _sharedGate!, _sharedUp!, _sharedDown!, width);
                    for (int j = 0; j < D; j++)
                        y[t * D + j] += gate * sharedOut[j];
                }
            }
            return y;
        }

        /// <summary>W_down (silu(W_gate x) ⊙ W_up x); gate/up are [width, D], down [D, width].</summary>
        private static double[] SwiGlu(double[] x, double[] gate, double[] up, double[] down, int width)
        {
            var h = new double[width];
            for (int i = 0; i < width; i++)
            {
                double g = Dot(gate, i * D, x), u = Dot(up, i * D, x);
                h[i] = g / (1 + Math.Exp(-g)) * u;
            }
            var y = new double[D];
            for (int j = 0; j < D; j++)
                y[j] = Dot(down, j * width, h);
            return y;
        }

        private static double Dot(double[] matrix, int offset, double[] v)
        {
            double sum = 0;
            for (int i = 0; i < v.Length; i++)
                sum += matrix[offset + i] * v[i];
            return sum;
        }
    }
}
