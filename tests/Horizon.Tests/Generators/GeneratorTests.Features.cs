using NUnit.Framework;

namespace Horizon.Tests.Generators;

// Spec features the shipped specs do not use: several block groups, literal sizes, no RoPE, a head that is always
// tied, constant symbols. Each must generate code that compiles cleanly.
public partial class GeneratorTests
{
    private const string TwoGroupSpec = """
        {
          "model": "HybridModel",
          "architectures": ["HybridForCausalLM", "HybridV2ForCausalLM"],
          "symbols": {
            "vocab": { "config": "vocab_size" },
            "dim": { "default": 64 },
            "wide_layers": { "config": "num_wide_layers", "default": 3 },
            "ffn": { "default": "dim * 4" },
            "heads": { "default": 4 },
            "flag": { "config": "use_bias", "type": "bool" }
          },
          "embedding": { "name": "tokens", "weight": "tok.weight", "vocab": "vocab", "dim": "dim" },
          "blocks": [
            {
              "name": "dense", "repeat": 2, "prefix": "h.{layer}.",
              "mixer_norm": { "kind": "rms_norm", "name": "ln_1", "weight": "ln_1.weight", "eps": 1e-5 },
              "mixer": { "kind": "attention", "name": "attn", "heads": "heads", "head_dim": 16, "qkv_bias": "flag", "output_bias": true, "rope": "none",
                         "weights": { "query": "attn.q", "key": "attn.k", "value": "attn.v", "output": "attn.o" } },
              "mlp_norm": { "kind": "rms_norm", "name": "ln_2", "weight": "ln_2.weight", "eps": 1e-5 },
              "mlp": { "kind": "swiglu_mlp", "name": "mlp", "intermediate": "ffn", "weights": { "gate": "mlp.g", "up": "mlp.u", "down": "mlp.d" } }
            },
            {
              "name": "wide", "repeat": "wide_layers", "prefix": "h.{layer}.",
              "mixer_norm": { "kind": "rms_norm", "name": "ln_1", "weight": "ln_1.weight", "eps": 1e-5 },
              "mixer": { "kind": "attention", "name": "attn", "heads": 8, "kv_heads": 2, "head_dim": 8, "rope": "config",
                         "weights": { "query": "attn.q", "key": "attn.k", "value": "attn.v", "output": "attn.o" } },
              "mlp_norm": { "kind": "rms_norm", "name": "ln_2", "weight": "ln_2.weight", "eps": 1e-5 },
              "mlp": { "kind": "swiglu_mlp", "name": "mlp", "intermediate": 512, "weights": { "gate": "mlp.g", "up": "mlp.u", "down": "mlp.d" } }
            }
          ],
          "final_norm": { "kind": "rms_norm", "name": "ln_f", "weight": "ln_f.weight", "eps": 1e-5 },
          "lm_head": { "name": "head", "tied": true }
        }
        """;

    [Test]
    public void Two_block_groups_with_literal_sizes_compile()
    {
        var (run, output) = GeneratorHarness.Run((GeneratorHarness.SpecPath("hybrid.model.json"), TwoGroupSpec));
        Assert.That(run.Diagnostics, Is.Empty);
        Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty);
        string code = run.GeneratedSources.Single().SourceText.ToString();

        Assert.That(code, Does.Contain("namespace Horizon.Models;"), "the default namespace");
        // Layer numbering continues across groups: "wide" starts after the 2 layers of "dense".
        Assert.That(code, Does.Contain("int wideFirstLayer = 2;"));
        Assert.That(code, Does.Contain("string layerNumber = (wideFirstLayer + index).ToString("));
        Assert.That(code, Does.Contain("public DenseWeights[] Dense { get; }").And.Contain("public WideState[] Wide { get; }"));
        Assert.That(code, Does.Contain("new global::Horizon.Ops.AttentionOptions(dim, heads, heads, 16, null)"), "no RoPE, kv_heads defaults to heads");
        Assert.That(code, Does.Contain("QueryBias: flag ? BindVector(prefix + \"attn.q.bias\", denseAttnQueryWidth) : null"));
        Assert.That(code, Does.Contain("OutputBias: BindVector(prefix + \"attn.o.bias\", dim)"));
        Assert.That(code, Does.Contain("global::Horizon.Matrix head = tokens;"), "an always-tied head binds no tensor");
        Assert.That(code, Does.Contain("global::Horizon.Ops.RmsNorm.Forward(residual, count, weights.Ln1, 1E-05f, normed);"));
        Assert.That(code, Does.Contain("int ffn = config.Positive(global::Horizon.GeneratedModelSupport.Multiply(config, dim, \"dim\", 4, \"4\"), \"ffn\");"));
        Assert.That(code, Does.Contain("new string[] { \"HybridForCausalLM\", \"HybridV2ForCausalLM\" }"));
    }

    [Test]
    public void Spec_without_symbols_compiles()
    {
        string spec = """
            {
              "model": "Fixed",
              "namespace": "My.App.Models",
              "architectures": ["FixedForCausalLM"],
              "embedding": { "name": "embed", "weight": "e", "vocab": 100, "dim": 32 },
              "blocks": [ { "name": "layers", "repeat": 1, "prefix": "{layer}.",
                "mixer_norm": { "kind": "rms_norm", "name": "n1", "weight": "n1", "eps": 0 },
                "mixer": { "kind": "attention", "name": "attn", "heads": 2, "head_dim": 16, "rope": "config", "weights": { "query": "q", "key": "k", "value": "v", "output": "o" } },
                "mlp_norm": { "kind": "rms_norm", "name": "n2", "weight": "n2", "eps": 0 },
                "mlp": { "kind": "swiglu_mlp", "name": "mlp", "intermediate": 64, "weights": { "gate": "g", "up": "u", "down": "d" } } } ],
              "final_norm": { "kind": "rms_norm", "name": "norm", "weight": "norm", "eps": 0 },
              "lm_head": { "name": "lm_head", "weight": "out" }
            }
            """;
        var (run, output) = GeneratorHarness.Run((GeneratorHarness.SpecPath("fixed.model.json"), spec));
        Assert.That(run.Diagnostics, Is.Empty);
        Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty);
        string code = run.GeneratedSources.Single().SourceText.ToString();
        Assert.That(code, Does.Contain("string prefix = layerNumber + \".\";"));
        Assert.That(code, Does.Contain("int layersAttnQueryWidth = 32;"));
        Assert.That(code, Does.Not.Contain("DivideExactly"), "literal sizes are checked by the generator, not at load");
    }

    [Test]
    public void Every_spec_in_the_repository_is_valid_and_compiles()
    {
        var specs = Directory.GetFiles(RepositoryPaths.Root, "*.model.json", SearchOption.AllDirectories)
            .Where(path => !path.Split(Path.DirectorySeparatorChar).Any(part => part is "bin" or "obj" or "artifacts"))
            .ToArray();
        Assert.That(specs, Has.Length.GreaterThanOrEqualTo(2));
        foreach (string path in specs)
        {
            var (run, output) = GeneratorHarness.Run((path, File.ReadAllText(path)));
            Assert.That(run.Diagnostics, Is.Empty, path);
            Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty, path);
        }
    }
}
