using NUnit.Framework;

namespace Horizon.Tests.Generators;

// The node kinds beyond attention/swiglu_mlp/rms_norm: a spec that uses each (valid, and compiles), then one broken
// line per failure mode those kinds add, checked as the other diagnostics tests are (id, line, column, nothing else).
public partial class GeneratorTests
{
    /// <summary>
    /// A valid spec with three block groups: gla + moe, hyena + gelu_mlp between layer norms, sliding-window
    /// attention + swiglu_mlp; a float symbol that defaults to null, and a list of alternative tensor names.
    /// </summary>
    private const string KindsSpec = """
        {
          "model": "KindsModel",
          "architectures": ["KindsForCausalLM"],
          "symbols": {
            "vocab": { "config": "vocab_size" },
            "hidden": { "config": "hidden_size" },
            "heads": { "config": "num_heads" },
            "expand": { "config": "expand_k", "type": "float", "default": 0.5 },
            "clamp": { "config": "clamp_min", "type": "float", "default": null },
            "eps": { "config": "norm_eps", "type": "float", "default": 1e-6 },
            "experts": { "config": "num_experts" },
            "top_k": { "config": "num_experts_per_tok" },
            "max_len": { "config": "max_seq_len" }
          },
          "embedding": { "name": "embed", "weight": "embed.weight", "vocab": "vocab", "dim": "hidden" },
          "blocks": [
            {
              "name": "recurrent", "repeat": 2, "prefix": "layers.{layer}.",
              "mixer_norm": { "kind": "rms_norm", "name": "attn_norm", "weight": "attn_norm.weight", "eps": "eps" },
              "mixer": { "kind": "gla", "name": "attn", "heads": "heads", "expand_k": "expand", "expand_v": 1, "clamp_min": "clamp", "norm_eps": "eps", "weights": { "query": "q", "key": "k", "value": "v", "gate_down": "gk.0", "gate_up": "gk.1", "output": "o", "output_gate": "g", "norm": ["g_norm_swish_gate", "g_norm"] } },
              "mlp_norm": { "kind": "rms_norm", "name": "mlp_norm", "weight": "mlp_norm.weight", "eps": "eps" },
              "mlp": { "kind": "moe", "name": "moe", "experts": "experts", "top_k": "top_k", "intermediate": 32, "normalize_top_k": true, "weights": { "module": "mlp", "router": "gate", "experts": "experts", "gate": "w1", "up": "w3", "down": "w2" } }
            },
            {
              "name": "convolutional", "repeat": 1, "prefix": "layers.{layer}.",
              "mixer_norm": { "kind": "layer_norm", "name": "norm1", "weight": "norm1.weight", "bias": "norm1.bias", "eps": 1e-5 },
              "mixer": { "kind": "hyena", "name": "mixer", "max_length": "max_len", "embedding_dim": 3, "filter_order": 16, "inner_mlps": 2, "activation_frequency": 10, "module": "mixer" },
              "mlp_norm": { "kind": "layer_norm", "name": "norm2", "weight": "norm2.weight", "eps": 1e-5 },
              "mlp": { "kind": "gelu_mlp", "name": "mlp", "intermediate": 64, "approximation": "tanh", "bias": true, "weights": { "fc1": "fc1", "fc2": "fc2" } }
            },
            {
              "name": "windowed", "repeat": 1, "prefix": "layers.{layer}.",
              "mixer_norm": { "kind": "rms_norm", "name": "attn_norm", "weight": "attn_norm.weight", "eps": "eps" },
              "mixer": { "kind": "sliding_window_attention", "name": "attn", "heads": 4, "head_dim": 8, "rope": "config", "window": 16, "global_positions": [0, 4], "weights": { "query": "q", "key": "k", "value": "v", "output": "o" } },
              "mlp_norm": { "kind": "rms_norm", "name": "mlp_norm", "weight": "mlp_norm.weight", "eps": "eps" },
              "mlp": { "kind": "swiglu_mlp", "name": "mlp", "intermediate": 64, "weights": { "gate": "gate", "up": "up", "down": "down" } }
            }
          ],
          "final_norm": { "kind": "layer_norm", "name": "ln_f", "weight": "ln_f.weight", "bias": "ln_f.bias", "eps": "eps" },
          "lm_head": { "name": "lm_head", "weight": "lm_head.weight" }
        }
        """;

    /// <summary>KindsSpec with <paramref name="original"/> (which must occur exactly once) replaced.</summary>
    private static string BreakKinds(string original, string replacement)
    {
        Assert.That(KindsSpec.Split(original), Has.Length.EqualTo(2), $"'{original}' must occur once in KindsSpec");
        return KindsSpec.Replace(original, replacement);
    }

    [Test]
    public void Kinds_spec_is_valid_and_compiles()
    {
        var (run, output) = GeneratorHarness.Run((TinyPath, KindsSpec));
        Assert.That(run.Diagnostics.Select(d => d.ToString()), Is.Empty);
        Assert.That(GeneratorHarness.CompileProblems(output).Select(d => d.ToString()), Is.Empty);
        string code = run.GeneratedSources.Single().SourceText.ToString();
        Assert.That(code, Does.Contain("public sealed record RecurrentWeights(").And.Contain("global::Horizon.Ops.GlaWeights Attn,"));
        Assert.That(code, Does.Contain("public global::Horizon.Ops.GlaState Attn { get; }"));
        Assert.That(code, Does.Contain("public global::Horizon.Ops.HyenaState Mixer { get; }"));
        Assert.That(code, Does.Contain("public global::Horizon.Ops.SlidingWindowCache Attn { get; }"));
        Assert.That(code, Does.Contain("float? Clamp").And.Contain("float? clamp = (float?)config.TryGetDouble(\"clamp_min\");"));
        Assert.That(code, Does.Contain("global::Horizon.GeneratedModelSupport.FirstPresent(directory, prefix + \"g_norm_swish_gate.weight\", prefix + \"g_norm.weight\")"));
        Assert.That(code, Does.Contain("new global::Horizon.Ops.LayerNormWeights(BindVector(prefix + \"norm2.weight\", hidden), new float[hidden])"), "no bias: β = 0");
        Assert.That(code, Does.Contain("new int[] { 0, 4 }"));
    }

    [Test]
    public void HZ0003_gla_without_expand_k()
    {
        var diagnostic = AssertSingleDiagnostic(BreakKinds("\"expand_k\": \"expand\", ", ""), "HZ0003", line: 20, at: "{ \"kind\": \"gla\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("mixer 'attn' of block group 'recurrent' has no \"expand_k\""));
    }

    [Test]
    public void HZ0003_gla_output_gate_weight_is_required_while_the_gate_may_be_on()
    {
        var diagnostic = AssertSingleDiagnostic(BreakKinds("\"output_gate\": \"g\", ", ""), "HZ0003", line: 20, at: "{ \"query\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("has no \"output_gate\""));
        // With the gate off, the weight is not needed.
        var (run, _) = GeneratorHarness.Run((TinyPath, BreakKinds("\"output_gate\": \"g\", ", "").Replace("\"norm_eps\": \"eps\",", "\"norm_eps\": \"eps\", \"output_gate\": false,")));
        Assert.That(run.Diagnostics, Is.Empty);
    }

    [Test]
    public void HZ0003_gla_short_conv_needs_conv_size()
    {
        var spec = BreakKinds("\"norm_eps\": \"eps\",", "\"norm_eps\": \"eps\", \"short_conv\": true,")
            .Replace("\"output_gate\": \"g\",", "\"output_gate\": \"g\", \"query_conv\": \"q_conv\", \"key_conv\": \"k_conv\", \"value_conv\": \"v_conv\",");
        var diagnostic = AssertSingleDiagnostic(spec, "HZ0003", line: 20, at: "{ \"kind\": \"gla\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("has no \"conv_size\""));
    }

    [Test]
    public void HZ0004_gla_heads_do_not_divide_the_key_width()
    {
        // hidden is a constant 64 and expand_k a literal 0.5: int(64 · 0.5) = 32 channels do not split over 6 heads.
        var spec = BreakKinds("\"hidden\": { \"config\": \"hidden_size\" },", "\"hidden\": { \"default\": 64 },")
            .Replace("\"heads\": \"heads\", \"expand_k\": \"expand\"", "\"heads\": 6, \"expand_k\": 0.5");
        var diagnostic = AssertSingleDiagnostic(spec, "HZ0004", line: 20, at: "6,");
        Assert.That(diagnostic.GetMessage(), Does.Contain("6 heads").And.Contain("int(hidden (64) × expand_k 0.5) = 32"));
    }

    [Test]
    public void HZ0008_int_symbol_used_as_a_float()
    {
        var diagnostic = AssertSingleDiagnostic(BreakKinds("\"expand_k\": \"expand\"", "\"expand_k\": \"heads\""), "HZ0008", line: 20, at: "\"heads\", \"expand_v\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("\"expand_k\" of mixer 'attn' of block group 'recurrent' must be a float, but symbol 'heads' is declared as int"));
    }

    [Test]
    public void HZ0008_float_that_may_be_null_used_where_a_value_is_required()
    {
        var diagnostic = AssertSingleDiagnostic(BreakKinds("\"norm_eps\": \"eps\", \"weights\"", "\"norm_eps\": \"clamp\", \"weights\""), "HZ0008", line: 20, at: "\"clamp\", \"weights\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be a float, but symbol 'clamp' is declared as a float that defaults to null"));
    }

    [Test]
    public void HZ0008_float_default_names_a_symbol_of_another_type()
    {
        var diagnostic = AssertSingleDiagnostic(BreakKinds("\"default\": 1e-6", "\"default\": \"heads\""), "HZ0008", line: 10, at: "\"heads\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("the default of symbol 'eps' must be a float, but symbol 'heads' is declared as int"));
    }

    [Test]
    public void HZ0007_moe_routes_to_more_experts_than_it_has()
    {
        var diagnostic = AssertSingleDiagnostic(BreakKinds("\"experts\": \"experts\", \"top_k\": \"top_k\"", "\"experts\": 2, \"top_k\": 3"), "HZ0007", line: 22, at: "3,");
        Assert.That(diagnostic.GetMessage(), Does.Contain("routes each token to 3 experts, more than its 2 experts"));
    }

    [Test]
    public void HZ0003_moe_shared_expert_needs_its_module_in_every_layout()
    {
        var diagnostic = AssertSingleDiagnostic(BreakKinds("\"normalize_top_k\": true,", "\"normalize_top_k\": true, \"shared_intermediate\": 48,"), "HZ0003", line: 22, at: "{ \"module\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("has no \"shared_expert\""));
    }

    [Test]
    public void HZ0007_moe_dense_fallback_layers_must_come_from_config()
    {
        var spec = BreakKinds("\"down\": \"w2\" } }", "\"down\": \"w2\" }, \"dense_fallback\": { \"layers\": \"odd\", \"intermediate\": 64, \"weights\": { \"gate\": \"mlp.gate_proj\", \"up\": \"mlp.up_proj\", \"down\": \"mlp.down_proj\" } } }");
        var diagnostic = AssertSingleDiagnostic(spec, "HZ0007", line: 22, at: "\"odd\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be \"config\""));
    }

    [Test]
    public void HZ0007_hyena_embedding_dim_must_be_odd()
    {
        var diagnostic = AssertSingleDiagnostic(BreakKinds("\"embedding_dim\": 3", "\"embedding_dim\": 4"), "HZ0007", line: 27, at: "4,");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be odd and at least 3"));
    }

    [Test]
    public void HZ0007_gelu_approximation_is_tanh_or_none()
    {
        var diagnostic = AssertSingleDiagnostic(BreakKinds("\"approximation\": \"tanh\"", "\"approximation\": \"sigmoid\""), "HZ0007", line: 29, at: "\"sigmoid\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be \"none\" (exact GELU, erf) or \"tanh\""));
    }

    [Test]
    public void HZ0007_global_positions_must_ascend()
    {
        var diagnostic = AssertSingleDiagnostic(BreakKinds("[0, 4]", "[4, 0]"), "HZ0007", line: 34, at: "0],");
        Assert.That(diagnostic.GetMessage(), Does.Contain("ascending order without repeats; 0 comes after 4"));
    }

    [Test]
    public void HZ0007_agent_attention_takes_no_rope()
    {
        var diagnostic = AssertSingleDiagnostic(
            BreakKinds("\"kind\": \"sliding_window_attention\", \"name\": \"attn\", \"heads\": 4, \"head_dim\": 8, \"rope\": \"config\", \"window\": 16, \"global_positions\": [0, 4], \"weights\": { \"query\": \"q\", \"key\": \"k\", \"value\": \"v\", \"output\": \"o\" }",
                "\"kind\": \"agent_attention\", \"name\": \"attn\", \"heads\": 4, \"head_dim\": 8, \"rope\": \"config\", \"agents\": 4, \"chunk_size\": 16, \"conv_kernel\": 3, \"weights\": { \"query\": \"q\", \"key\": \"k\", \"value\": \"v\", \"output\": \"o\", \"conv\": \"dwc\" }"),
            "HZ0007", line: 34, at: "\"rope\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("unknown property \"rope\""));
    }

    [Test]
    public void HZ0004_chained_default_with_a_remainder()
    {
        // hidden is a constant: hidden * 3 // 2 = 96, and 96 / 5 leaves a remainder.
        var spec = BreakKinds("\"hidden\": { \"config\": \"hidden_size\" },", "\"hidden\": { \"default\": 64 }, \"width\": { \"default\": \"hidden * 3 // 2 / 5\" },");
        var diagnostic = AssertSingleDiagnostic(spec, "HZ0004", line: 6, at: "\"hidden * 3");
        Assert.That(diagnostic.GetMessage(), Is.EqualTo("the default of symbol 'width' is hidden * 3 // 2 (96) / 5, which does not divide evenly"));
    }

    [Test]
    public void HZ0007_supported_config_values_must_list_json_values()
    {
        var spec = BreakKinds("\"architectures\": [\"KindsForCausalLM\"],", "\"architectures\": [\"KindsForCausalLM\"], \"supported_config_values\": { \"hidden_act\": \"silu\" },");
        var diagnostic = AssertSingleDiagnostic(spec, "HZ0007", line: 3, at: "\"silu\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("\"hidden_act\" of \"supported_config_values\" must be a non-empty array"));
    }

    [Test]
    public void Supported_config_values_are_checked_first_in_load()
    {
        var spec = BreakKinds("\"architectures\": [\"KindsForCausalLM\"],", "\"architectures\": [\"KindsForCausalLM\"], \"supported_config_values\": { \"hidden_act\": [\"swish\", \"silu\"], \"feature_map\": [null] },");
        var (run, output) = GeneratorHarness.Run((TinyPath, spec));
        Assert.That(run.Diagnostics, Is.Empty);
        Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty);
        Assert.That(run.GeneratedSources.Single().SourceText.ToString(),
            Does.Contain("global::Horizon.GeneratedModelSupport.RequireSupportedValue(config, \"hidden_act\", \"\\\"swish\\\"\", \"\\\"silu\\\"\");")
                .And.Contain("global::Horizon.GeneratedModelSupport.RequireSupportedValue(config, \"feature_map\", \"null\");"));

        var config = ModelConfig.Parse("""{ "hidden_act": "gelu", "feature_map": null }""");
        GeneratedModelSupport.RequireSupportedValue(config, "feature_map", "null");
        GeneratedModelSupport.RequireSupportedValue(config, "absent_key", "null");
        var error = Assert.Throws<ModelLoadException>(() => GeneratedModelSupport.RequireSupportedValue(config, "hidden_act", "\"swish\"", "\"silu\""));
        Assert.That(error!.Message, Does.Contain("hidden_act = \"gelu\" is not supported by this model (supported: \"swish\", \"silu\")"));
    }

    [Test]
    public void HZ0007_default_with_an_unknown_operator()
    {
        var spec = BreakKinds("\"max_len\": { \"config\": \"max_seq_len\" }", "\"max_len\": { \"config\": \"max_seq_len\", \"default\": \"hidden + 2\" }");
        var diagnostic = AssertSingleDiagnostic(spec, "HZ0007", line: 13, at: "\"hidden + 2\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("*, /, // or round_up_to"));
    }
}
