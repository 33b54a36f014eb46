using NUnit.Framework;

namespace Horizon.Tests.Generators;

// Two-level specs ("levels": a block decoder and a token decoder, the Block Transformer's global-to-local layout), the
// gpt_neox_attention kind, parallel_residual, gelu symbols and dotted config keys: a valid spec that compiles, then one
// broken line per failure mode, checked as the other diagnostics tests are (id, line, column, nothing else).
public partial class GeneratorTests
{
    /// <summary>
    /// A valid two-level spec, one line per entry: a block decoder of GPT-NeoX layers (parallel residual, literal sizes)
    /// over a lookup_concat embedder, and a token decoder with a prefix projection and two block groups, GPT-NeoX layers
    /// whose residual form and GELU are symbols, then Llama-style attention layers (any mixer kind runs block-locally).
    /// </summary>
    private const string LevelsSpec = """
        {
          "model": "LevelsModel",
          "architectures": ["LevelsForCausalLM"],
          "symbols": {
            "vocab": { "config": "vocab_size" },
            "block_length": { "config": "block_length" },
            "prefix_tokens": { "config": "token_decoder.expansion_ratio" },
            "block_hidden": { "config": "block_decoder.config.hidden_size" },
            "token_hidden": { "config": "token_decoder.config.hidden_size" },
            "heads": { "config": "token_decoder.config.num_attention_heads" },
            "rotary": { "config": "token_decoder.config.rotary_pct", "type": "float", "default": 0.25 },
            "parallel": { "config": "token_decoder.config.use_parallel_residual", "type": "bool", "default": true },
            "act": { "config": "token_decoder.config.hidden_act", "type": "gelu", "default": "gelu" },
            "eps": { "config": "layer_norm_eps", "type": "float", "default": 1e-5 }
          },
          "levels": {
            "block_decoder": {
              "embedding": { "kind": "lookup_concat", "name": "embedder", "weight": "embedder.weight", "vocab": "vocab", "dim": "block_hidden", "block_length": "block_length", "pad_token": "config" },
              "blocks": [
                {
                  "name": "block_layers", "repeat": 2, "prefix": "block.layers.{layer}.", "parallel_residual": true,
                  "mixer_norm": { "kind": "layer_norm", "name": "ln1", "weight": "ln1.weight", "bias": "ln1.bias", "eps": "eps" },
                  "mixer": { "kind": "gpt_neox_attention", "name": "attention", "heads": 4, "rotary_pct": 0.5, "rope_theta": 10000, "qkv_bias": true, "output_bias": true, "weights": { "query_key_value": "attention.qkv", "output": "attention.dense" } },
                  "mlp_norm": { "kind": "layer_norm", "name": "ln2", "weight": "ln2.weight", "bias": "ln2.bias", "eps": "eps" },
                  "mlp": { "kind": "gelu_mlp", "name": "mlp", "intermediate": 64, "approximation": "none", "bias": true, "weights": { "fc1": "fc1", "fc2": "fc2" } }
                }
              ],
              "final_norm": { "kind": "layer_norm", "name": "block_norm", "weight": "block.norm.weight", "bias": "block.norm.bias", "eps": "eps" }
            },
            "token_decoder": {
              "embedding": { "name": "token_embed", "weight": "token.embed.weight", "vocab": "vocab", "dim": "token_hidden" },
              "prefix_projection": { "name": "expansion", "prefix_tokens": "prefix_tokens", "weight": "expansion.weight", "bias": "expansion.bias" },
              "blocks": [
                {
                  "name": "token_layers", "repeat": 2, "prefix": "token.layers.{layer}.", "parallel_residual": "parallel",
                  "mixer_norm": { "kind": "layer_norm", "name": "ln1", "weight": "ln1.weight", "bias": "ln1.bias", "eps": "eps" },
                  "mixer": { "kind": "gpt_neox_attention", "name": "attention", "heads": "heads", "rotary_pct": "rotary", "rope_theta": 10000, "weights": { "query_key_value": "attention.qkv", "output": "attention.dense" } },
                  "mlp_norm": { "kind": "layer_norm", "name": "ln2", "weight": "ln2.weight", "eps": "eps" },
                  "mlp": { "kind": "gelu_mlp", "name": "mlp", "intermediate": 48, "approximation": "act", "weights": { "fc1": "fc1", "fc2": "fc2" } }
                },
                {
                  "name": "llama_layers", "repeat": 1, "prefix": "token.layers.{layer}.",
                  "mixer_norm": { "kind": "rms_norm", "name": "attn_norm", "weight": "attn_norm.weight", "eps": "eps" },
                  "mixer": { "kind": "attention", "name": "attn", "heads": "heads", "head_dim": 8, "rope": "none", "weights": { "query": "q", "key": "k", "value": "v", "output": "o" } },
                  "mlp_norm": { "kind": "rms_norm", "name": "mlp_norm", "weight": "mlp_norm.weight", "eps": "eps" },
                  "mlp": { "kind": "swiglu_mlp", "name": "mlp", "intermediate": 48, "weights": { "gate": "gate", "up": "up", "down": "down" } }
                }
              ],
              "final_norm": { "kind": "rms_norm", "name": "norm", "weight": "token.norm.weight", "eps": "eps" }
            }
          },
          "lm_head": { "name": "lm_head", "weight": "lm_head.weight" }
        }
        """;

    /// <summary>LevelsSpec with <paramref name="original"/> (which must occur exactly once) replaced.</summary>
    private static string BreakLevels(string original, string replacement)
    {
        Assert.That(LevelsSpec.Split(original), Has.Length.EqualTo(2), $"'{original}' must occur once in LevelsSpec");
        return LevelsSpec.Replace(original, replacement);
    }

    /// <summary>The block decoder's width as a constant, so the generator can check what divides it.</summary>
    private const string KnownBlockWidth = "\"block_hidden\": { \"default\": 64 },";

    private static string LevelsWithKnownBlockWidth(string original, string replacement) =>
        BreakLevels("\"block_hidden\": { \"config\": \"block_decoder.config.hidden_size\" },", KnownBlockWidth).Replace(original, replacement);

    [Test]
    public void Levels_spec_is_valid_and_compiles()
    {
        var (run, output) = GeneratorHarness.Run((TinyPath, LevelsSpec));
        Assert.That(run.Diagnostics.Select(d => d.ToString()), Is.Empty);
        Assert.That(GeneratorHarness.CompileProblems(output).Select(d => d.ToString()), Is.Empty);
        string code = run.GeneratedSources.Single().SourceText.ToString();
        Assert.That(code, Does.Contain("public sealed class State : global::Horizon.IModelState, global::Horizon.Generation.IForkableModelState, global::Horizon.IBlockModelState"));
        Assert.That(code, Does.Contain("public BlockLayersState[] BlockLayers { get; }").And.Contain("public TokenLayersState[] TokenLayers { get; }").And.Contain("public LlamaLayersState[] LlamaLayers { get; }"));
        Assert.That(code, Does.Contain("global::Horizon.Ops.GeluApproximation Act,"), "a gelu symbol is typed");
        Assert.That(code, Does.Contain("config.GetInt(\"token_decoder.expansion_ratio\")"), "a dotted key reads a nested value");
        Assert.That(code, Does.Contain("global::Horizon.Ops.GptNeoXAttention.CreateOptions(config, blockHidden, \"block_decoder.config.hidden_size\", 4, \"heads\", 0.5f, \"rotary_pct\", 10000f, \"rope_theta\")"));
        Assert.That(code, Does.Contain("global::Horizon.GeneratedModelSupport.MatrixOrPointwiseConv(directory, boundTensors, \"expansion.weight\", prefixRows, blockHidden)"));
        Assert.That(code, Does.Contain("string prefix = \"token.layers.\" + layerNumber + \".\";").And.Contain("int llamaLayersFirstLayer = 2;"), "layers are numbered per level");
        Assert.That(code, Does.Contain("int blockCapacity = ").And.Contain("int localCapacity = checked(PrefixTokens + blockLength - 1);"));
        Assert.That(code, Does.Contain("if (Sizes.Parallel)"), "a residual form bound at load");
        Assert.That(code, Does.Contain("global::Horizon.Ops.GeluMlp.Forward(normed, rows, weights.Mlp, Sizes.Act, branch);"));
        Assert.That(code, Does.Not.Contain("ResidualHook"), "a two-level state has no residual-stream hook points");
    }

    [Test]
    public void Levels_spec_types_both_levels_and_their_states()
    {
        var (_, output) = GeneratorHarness.Run((TinyPath, LevelsSpec));
        var model = output.GetTypeByMetadataName("Horizon.Models.LevelsModel")!;
        Assert.That(model, Is.Not.Null);
        string TypeOf(Microsoft.CodeAnalysis.INamedTypeSymbol type, string member) =>
            type.GetMembers(member).OfType<Microsoft.CodeAnalysis.IPropertySymbol>().Single().Type.ToDisplayString();
        Assert.That(TypeOf(model, "Embedder"), Is.EqualTo("Horizon.Matrix"));
        Assert.That(TypeOf(model, "Expansion"), Is.EqualTo("Horizon.Ops.PrefixProjectionWeights"));
        Assert.That(TypeOf(model, "BlockNorm"), Is.EqualTo("Horizon.Ops.LayerNormWeights"));
        Assert.That(TypeOf(model, "Norm"), Is.EqualTo("Horizon.Ops.RmsNormWeights"));
        Assert.That(TypeOf(model.GetTypeMembers("BlockLayersWeights").Single(), "Attention"), Is.EqualTo("Horizon.Ops.GptNeoXAttentionWeights"));
        Assert.That(TypeOf(model.GetTypeMembers("BlockLayersState").Single(), "Attention"), Is.EqualTo("Horizon.Ops.KvCache"));
        Assert.That(TypeOf(model.GetTypeMembers("LlamaLayersState").Single(), "Attn"), Is.EqualTo("Horizon.Ops.KvCache"));
        var state = model.GetTypeMembers("State").Single();
        Assert.That(TypeOf(state, "FirstBlockPadding"), Is.EqualTo("int"));
        Assert.That(TypeOf(state, "StreamLength"), Is.EqualTo("long"));
        Assert.That(state.AllInterfaces.Select(i => i.ToDisplayString()), Does.Contain("Horizon.IBlockModelState").And.Contain("Horizon.Generation.IForkableModelState"));
    }

    [Test]
    public void HZ0003_lookup_embedder_without_block_length()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels(", \"block_length\": \"block_length\", \"pad_token\"", ", \"pad_token\""), "HZ0003", line: 18, at: "{ \"kind\": \"lookup_concat\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("\"embedding\" of \"block_decoder\" has no \"block_length\""));
    }

    [Test]
    public void HZ0003_token_decoder_without_prefix_projection()
    {
        var diagnostic = AssertSingleDiagnostic(
            BreakLevels("\"prefix_projection\": { \"name\": \"expansion\", \"prefix_tokens\": \"prefix_tokens\", \"weight\": \"expansion.weight\", \"bias\": \"expansion.bias\" },", ""),
            "HZ0003", line: 30, at: "{");
        Assert.That(diagnostic.GetMessage(), Does.Contain("\"token_decoder\" has no \"prefix_projection\""));
    }

    [Test]
    public void HZ0003_prefix_projection_without_prefix_tokens()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"prefix_tokens\": \"prefix_tokens\", ", ""), "HZ0003", line: 32, at: "{ \"name\": \"expansion\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("\"prefix_projection\" of \"token_decoder\" has no \"prefix_tokens\""));
    }

    [Test]
    public void HZ0003_levels_without_block_decoder()
    {
        var spec = BreakLevels("\"block_decoder\": {", "\"block_decoder_\": {");
        var (run, _) = GeneratorHarness.Run((TinyPath, spec));
        var ids = run.Diagnostics.Select(d => d.Id).ToArray();
        Assert.That(ids, Is.EquivalentTo(new[] { "HZ0003", "HZ0007" }), "missing, and the misspelt key is unknown");
        Assert.That(run.Diagnostics.Single(d => d.Id == "HZ0003").GetMessage(), Does.Contain("\"levels\" has no \"block_decoder\""));
        Assert.That(run.Diagnostics.Single(d => d.Id == "HZ0007").GetMessage(), Does.Contain("did you mean \"block_decoder\"?"));
        Assert.That(run.GeneratedSources, Is.Empty);
    }

    [Test]
    public void HZ0003_gpt_neox_attention_without_rotary_pct()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"rotary_pct\": 0.5, ", ""), "HZ0003", line: 23, at: "{ \"kind\": \"gpt_neox_attention\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("mixer 'attention' of block group 'block_layers' has no \"rotary_pct\""));
    }

    [Test]
    public void HZ0007_block_embedder_kind_must_be_lookup_concat()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"lookup_concat\"", "\"lookup_sum\""), "HZ0007", line: 18, at: "\"lookup_sum\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be \"lookup_concat\""));
    }

    [Test]
    public void HZ0007_pad_token_is_config_or_a_token_id()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"pad_token\": \"config\"", "\"pad_token\": -1"), "HZ0007", line: 18, at: "-1");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be \"config\"").And.Contain("or a token id"));
        var (run, output) = GeneratorHarness.Run((TinyPath, BreakLevels("\"pad_token\": \"config\"", "\"pad_token\": 0")));
        Assert.That(run.Diagnostics, Is.Empty);
        Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty);
        Assert.That(run.GeneratedSources.Single().SourceText.ToString(), Does.Contain("PadTokenId(config, 0, vocab, \"vocab_size\")"));
    }

    [Test]
    public void HZ0007_one_level_sections_beside_levels()
    {
        var diagnostic = AssertSingleDiagnostic(
            BreakLevels("\"architectures\": [\"LevelsForCausalLM\"],", "\"architectures\": [\"LevelsForCausalLM\"], \"final_norm\": { \"kind\": \"rms_norm\", \"name\": \"n\", \"weight\": \"n\", \"eps\": 1 },"),
            "HZ0007", line: 3, at: "\"final_norm\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("\"final_norm\" is not used by a spec with \"levels\""));
    }

    [Test]
    public void HZ0007_parallel_residual_is_a_flag()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"parallel_residual\": true", "\"parallel_residual\": 1"), "HZ0007", line: 21, at: "1,");
        Assert.That(diagnostic.GetMessage(), Does.Contain("\"parallel_residual\" of block group 'block_layers' must be true, false or the name of a bool symbol"));
    }

    [Test]
    public void HZ0007_rotary_pct_outside_zero_to_one()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"rotary_pct\": 0.5", "\"rotary_pct\": 1.5"), "HZ0007", line: 23, at: "1.5");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be in (0, 1]"));
    }

    [Test]
    public void HZ0007_rotary_pct_gives_an_odd_rotary_width()
    {
        // head_dim 64 / 4 = 16; int(16 × 0.3125) = 5 rotary dims, and RoPE rotates pairs.
        var diagnostic = AssertSingleDiagnostic(LevelsWithKnownBlockWidth("\"rotary_pct\": 0.5", "\"rotary_pct\": 0.3125"), "HZ0007", line: 23, at: "0.3125");
        Assert.That(diagnostic.GetMessage(), Does.Contain("int(head_dim 16 × 0.3125) = 5 rotary dims, which must be even and at least 2"));
    }

    [Test]
    public void HZ0007_dotted_config_key_with_an_empty_part()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"token_decoder.expansion_ratio\"", "\"token_decoder..expansion_ratio\""), "HZ0007", line: 7, at: "\"token_decoder..");
        Assert.That(diagnostic.GetMessage(), Does.Contain("a dotted key is a path into nested objects"));
    }

    [Test]
    public void HZ0007_gelu_symbol_default_is_an_activation_name()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"type\": \"gelu\", \"default\": \"gelu\"", "\"type\": \"gelu\", \"default\": \"relu\""), "HZ0007", line: 13, at: "\"relu\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be an activation name (gelu, gelu_new, gelu_fast, gelu_pytorch_tanh"));
    }

    [Test]
    public void HZ0004_block_width_not_divisible_by_block_length()
    {
        var spec = LevelsWithKnownBlockWidth("\"block_length\": { \"config\": \"block_length\" },", "\"block_length\": { \"default\": 5 },");
        var diagnostic = AssertSingleDiagnostic(spec, "HZ0004", line: 18, at: "\"block_length\", \"pad_token\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("concatenates block_length (5) lookups into a block embedding of width block_hidden (64), which they do not divide evenly"));
    }

    [Test]
    public void HZ0004_gpt_neox_heads_do_not_divide_the_width()
    {
        var diagnostic = AssertSingleDiagnostic(LevelsWithKnownBlockWidth("\"heads\": 4,", "\"heads\": 6,"), "HZ0004", line: 23, at: "6,");
        Assert.That(diagnostic.GetMessage(), Does.Contain("has 6 heads, which do not divide its width block_hidden (64)"));
    }

    [Test]
    public void HZ0008_gelu_approximation_names_a_symbol_of_another_type()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"approximation\": \"act\"", "\"approximation\": \"eps\""), "HZ0008", line: 39, at: "\"eps\", \"weights\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be a GELU variant (a gelu symbol), but symbol 'eps' is declared as float"));
    }

    [Test]
    public void HZ0008_parallel_residual_names_a_symbol_of_another_type()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"parallel_residual\": \"parallel\"", "\"parallel_residual\": \"rotary\""), "HZ0008", line: 35, at: "\"rotary\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be a bool, but symbol 'rotary' is declared as float"));
    }

    [Test]
    public void HZ0006_block_length_names_an_undeclared_symbol()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"block_length\": \"block_length\"", "\"block_length\": \"block_len\""), "HZ0006", line: 18, at: "\"block_len\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("did you mean 'block_length'?"));
    }

    [Test]
    public void HZ0005_a_block_group_name_in_both_levels()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"name\": \"llama_layers\"", "\"name\": \"block_layers\""), "HZ0005", line: 42, at: "\"block_layers\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("block group name 'block_layers' is used twice"));
    }

    [Test]
    public void HZ0005_a_name_the_two_level_state_already_uses()
    {
        var diagnostic = AssertSingleDiagnostic(BreakLevels("\"name\": \"llama_layers\"", "\"name\": \"blocks\""), "HZ0005", line: 42, at: "\"blocks\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("becomes the C# name 'Blocks', which the generated class LevelsModel already uses"));
    }
}
