using Microsoft.CodeAnalysis;
using NUnit.Framework;

namespace Horizon.Tests.Generators;

// One malformed spec per diagnostic id: the test checks the id, the line and the column the diagnostic points at,
// and that it is the only diagnostic (one mistake, one message: no cascade of follow-up errors).
public partial class GeneratorTests
{
    /// <summary>
    /// A small valid spec, one line per entry so each test can break one line and name it. The symbol "layers" and
    /// the block group "layers" share a name on purpose: the generated Load must keep their locals apart.
    /// </summary>
    private const string TinySpec = """
        {
          "model": "TinyModel",
          "namespace": "Tiny.Models",
          "architectures": ["TinyForCausalLM"],
          "symbols": {
            "vocab": { "config": "vocab_size" },
            "hidden": { "config": "hidden_size" },
            "layers": { "config": "num_hidden_layers" },
            "heads": { "config": "num_attention_heads" },
            "kv_heads": { "config": "num_key_value_heads", "default": "heads" },
            "head_dim": { "config": "head_dim", "default": "hidden / heads" },
            "ffn": { "config": "intermediate_size" },
            "eps": { "config": "rms_norm_eps", "type": "float", "default": 1e-6 },
            "tied": { "config": "tie_word_embeddings", "type": "bool", "default": false }
          },
          "embedding": { "name": "embed", "weight": "embed.weight", "vocab": "vocab", "dim": "hidden" },
          "blocks": [
            {
              "name": "layers",
              "repeat": "layers",
              "prefix": "layers.{layer}.",
              "mixer_norm": { "kind": "rms_norm", "name": "attn_norm", "weight": "attn_norm.weight", "eps": "eps" },
              "mixer": { "kind": "attention", "name": "attn", "heads": "heads", "kv_heads": "kv_heads", "head_dim": "head_dim", "rope": "config", "weights": { "query": "q", "key": "k", "value": "v", "output": "o" } },
              "mlp_norm": { "kind": "rms_norm", "name": "mlp_norm", "weight": "mlp_norm.weight", "eps": "eps" },
              "mlp": { "kind": "swiglu_mlp", "name": "mlp", "intermediate": "ffn", "weights": { "gate": "gate", "up": "up", "down": "down" } }
            }
          ],
          "final_norm": { "kind": "rms_norm", "name": "norm", "weight": "norm.weight", "eps": "eps" },
          "lm_head": { "name": "lm_head", "weight": "lm_head.weight", "tied": "tied" }
        }
        """;

    private static readonly string TinyPath = GeneratorHarness.SpecPath("tiny.model.json");

    /// <summary>TinySpec with <paramref name="original"/> (which must occur exactly once) replaced.</summary>
    private static string Break(string original, string replacement)
    {
        Assert.That(TinySpec.Split(original), Has.Length.EqualTo(2), $"'{original}' must occur once in TinySpec");
        return TinySpec.Replace(original, replacement);
    }

    /// <summary>
    /// Asserts that <paramref name="spec"/> yields exactly one diagnostic, <paramref name="id"/>, on one-based
    /// <paramref name="line"/> at the column where <paramref name="at"/> starts on that line.
    /// </summary>
    private static Diagnostic AssertSingleDiagnostic(string spec, string id, int line, string at)
    {
        var (run, _) = GeneratorHarness.Run((TinyPath, spec));
        Assert.That(run.Exception, Is.Null);
        Assert.That(run.Diagnostics.Select(d => $"{d.Id}: {d.GetMessage()}").ToArray(), Has.Length.EqualTo(1));
        var diagnostic = run.Diagnostics[0];
        Assert.That(diagnostic.Id, Is.EqualTo(id), diagnostic.GetMessage());
        Assert.That(diagnostic.Severity, Is.EqualTo(DiagnosticSeverity.Error));
        Assert.That(diagnostic.Descriptor.Category, Is.EqualTo("Horizon.ModelSpec"));
        Assert.That(run.GeneratedSources, Is.Empty, "a spec with errors generates nothing");
        AssertLocation(diagnostic, spec, TinyPath, line, at);
        return diagnostic;
    }

    private static void AssertLocation(Diagnostic diagnostic, string spec, string path, int line, string at)
    {
        string lineText = GeneratorHarness.Normalize(spec).Split('\n')[line - 1];
        int column = lineText.IndexOf(at, StringComparison.Ordinal) + 1;
        Assert.That(column, Is.Positive, $"'{at}' is not on line {line}: {lineText}");
        var span = diagnostic.Location.GetLineSpan();
        Assert.That(span.Path, Is.EqualTo(path));
        Assert.That((span.StartLinePosition.Line + 1, span.StartLinePosition.Character + 1), Is.EqualTo((line, column)),
            $"{diagnostic.Id} {diagnostic.GetMessage()}");
    }

    [Test]
    public void Tiny_spec_is_valid_and_compiles()
    {
        var (run, output) = GeneratorHarness.Run((TinyPath, TinySpec));
        Assert.That(run.Diagnostics, Is.Empty);
        Assert.That(run.GeneratedSources.Single().HintName, Is.EqualTo("TinyModel.g.cs"));
        Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty);
    }

    [Test]
    public void HZ0001_invalid_json_points_at_the_error()
    {
        // The comma after the "heads" symbol is missing: the parser stops at the next property name.
        var diagnostic = AssertSingleDiagnostic(
            Break("\"heads\": { \"config\": \"num_attention_heads\" },", "\"heads\": { \"config\": \"num_attention_heads\" }"),
            "HZ0001", line: 10, at: "\"kv_heads\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("expected ',' or '}'"));
    }

    [Test]
    public void HZ0001_unterminated_string_points_at_its_opening_quote()
    {
        AssertSingleDiagnostic(Break("\"model\": \"TinyModel\",", "\"model\": \"TinyModel,"), "HZ0001", line: 2, at: "\"TinyModel");
    }

    [Test]
    public void HZ0002_unknown_mixer_kind()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"kind\": \"attention\"", "\"kind\": \"mamba\""), "HZ0002", line: 23, at: "\"mamba\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("unknown mixer kind 'mamba'").And.Contain("attention").And.Contain("gla").And.Contain("hyena"));
    }

    [Test]
    public void HZ0002_kind_of_another_role()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"kind\": \"swiglu_mlp\"", "\"kind\": \"attention\""), "HZ0002", line: 25, at: "\"attention\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("'attention' is a mixer kind"));
    }

    [Test]
    public void HZ0003_attention_without_heads()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"heads\": \"heads\", ", ""), "HZ0003", line: 23, at: "{ \"kind\": \"attention\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("mixer 'attn' of block group 'layers' has no \"heads\""));
    }

    [Test]
    public void HZ0003_block_group_without_repeat()
    {
        AssertSingleDiagnostic(Break("\"repeat\": \"layers\",", ""), "HZ0003", line: 18, at: "{");
    }

    [Test]
    public void HZ0003_spec_without_embedding()
    {
        var spec = Break("\"embedding\": { \"name\": \"embed\", \"weight\": \"embed.weight\", \"vocab\": \"vocab\", \"dim\": \"hidden\" },", "");
        var diagnostic = AssertSingleDiagnostic(spec, "HZ0003", line: 1, at: "{");
        Assert.That(diagnostic.GetMessage(), Is.EqualTo("the spec has no \"embedding\""));
    }

    [Test]
    public void HZ0004_heads_not_divisible_by_kv_heads()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"heads\": \"heads\", \"kv_heads\": \"kv_heads\"", "\"heads\": 6, \"kv_heads\": 4"), "HZ0004", line: 23, at: "4,");
        Assert.That(diagnostic.GetMessage(), Does.Contain("6 query heads").And.Contain("4 key/value heads"));
    }

    [Test]
    public void HZ0004_more_kv_heads_than_heads()
    {
        AssertSingleDiagnostic(Break("\"heads\": \"heads\", \"kv_heads\": \"kv_heads\"", "\"heads\": 4, \"kv_heads\": 8"), "HZ0004", line: 23, at: "8,");
    }

    [Test]
    public void HZ0004_default_division_of_known_values_with_a_remainder()
    {
        // "hidden" is a constant here (no config key), so hidden / 3 is known to leave a remainder.
        var spec = Break("\"hidden\": { \"config\": \"hidden_size\" },", "\"hidden\": { \"default\": 64 },")
            .Replace("\"default\": \"hidden / heads\"", "\"default\": \"hidden / 3\"");
        var diagnostic = AssertSingleDiagnostic(spec, "HZ0004", line: 11, at: "\"hidden / 3\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("hidden (64) / 3"));
    }

    [Test]
    public void HZ0005_duplicate_node_name_in_a_block()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"name\": \"mlp_norm\"", "\"name\": \"attn_norm\""), "HZ0005", line: 24, at: "\"attn_norm\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("'attn_norm' is used twice (first at line 22)"));
    }

    [Test]
    public void HZ0005_duplicate_symbol_key()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"ffn\": { \"config\": \"intermediate_size\" },", "\"ffn\": { \"config\": \"intermediate_size\" }, \"heads\": { \"config\": \"n_head\" },"),
            "HZ0005", line: 12, at: "\"heads\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("symbol 'heads' is declared twice (first at line 9)"));
    }

    [Test]
    public void HZ0005_names_that_become_the_same_csharp_name()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"name\": \"mlp_norm\"", "\"name\": \"attnNorm\""), "HZ0005", line: 24, at: "\"attnNorm\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("both become the C# name 'AttnNorm'"));
    }

    [Test]
    public void HZ0005_architecture_claimed_by_two_specs()
    {
        string otherPath = GeneratorHarness.SpecPath("zz-other.model.json");
        string other = TinySpec.Replace("TinyModel", "OtherModel");
        var (run, _) = GeneratorHarness.Run((TinyPath, TinySpec), (otherPath, other));

        var diagnostic = run.Diagnostics.Single();
        Assert.That(diagnostic.Id, Is.EqualTo("HZ0005"));
        Assert.That(diagnostic.GetMessage(), Does.Contain("\"TinyForCausalLM\" is also listed by tiny.model.json"));
        AssertLocation(diagnostic, other, otherPath, line: 4, at: "\"TinyForCausalLM\"");
    }

    [Test]
    public void HZ0005_class_name_generated_by_two_specs()
    {
        // Both would be TinyModel.g.cs: the second spec gets the diagnostic, and only one class is generated.
        string otherPath = GeneratorHarness.SpecPath("zz-copy.model.json");
        string other = TinySpec.Replace("TinyForCausalLM", "CopyForCausalLM");
        var (run, _) = GeneratorHarness.Run((TinyPath, TinySpec), (otherPath, other));

        Assert.That(run.Exception, Is.Null);
        var diagnostic = run.Diagnostics.Single();
        Assert.That(diagnostic.Id, Is.EqualTo("HZ0005"));
        Assert.That(diagnostic.GetMessage(), Does.Contain("the class name 'TinyModel' is also generated from tiny.model.json"));
        AssertLocation(diagnostic, other, otherPath, line: 2, at: "\"TinyModel\"");
        Assert.That(run.GeneratedSources.Select(s => s.HintName), Is.EqualTo(new[] { "TinyModel.g.cs" }));
    }

    [Test]
    public void HZ0007_invalid_symbol_name_is_reported_once()
    {
        var spec = Break("\"ffn\": { \"config\": \"intermediate_size\" },", "\"ffn-size\": { \"config\": \"intermediate_size\" },")
            .Replace("\"intermediate\": \"ffn\"", "\"intermediate\": \"ffn-size\"");
        var (run, _) = GeneratorHarness.Run((TinyPath, spec));
        Assert.That(run.Diagnostics.Select(d => d.Id), Is.EqualTo(new[] { "HZ0007", "HZ0007" }),
            "the declaration, and the use (a size must be a name); no HZ0006 for the use");
        AssertLocation(run.Diagnostics[0], spec, TinyPath, line: 12, at: "\"ffn-size\"");
    }

    [Test]
    public void HZ0006_size_names_an_undeclared_symbol()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"heads\": \"heads\",", "\"heads\": \"num_heads\","), "HZ0006", line: 23, at: "\"num_heads\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("refers to 'num_heads', which is not declared in \"symbols\""));
    }

    [Test]
    public void HZ0006_default_expression_names_an_undeclared_symbol()
    {
        // The location is the operand inside the string, not the whole string.
        AssertSingleDiagnostic(Break("\"hidden / heads\"", "\"hidden / n_heads\""), "HZ0006", line: 11, at: "n_heads");
    }

    [Test]
    public void HZ0007_model_name_is_not_a_class_name()
    {
        AssertSingleDiagnostic(Break("\"model\": \"TinyModel\"", "\"model\": \"tiny model\""), "HZ0007", line: 2, at: "\"tiny model\"");
    }

    [Test]
    public void HZ0007_prefix_without_layer_placeholder()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"layers.{layer}.\"", "\"layers.\""), "HZ0007", line: 21, at: "\"layers.\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("has no {layer}"));
    }

    [Test]
    public void HZ0007_non_positive_literal_size()
    {
        AssertSingleDiagnostic(Break("\"head_dim\": \"head_dim\"", "\"head_dim\": 0"), "HZ0007", line: 23, at: "0,");
    }

    [Test]
    public void HZ0007_wrong_json_type()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"repeat\": \"layers\"", "\"repeat\": true"), "HZ0007", line: 20, at: "true");
        Assert.That(diagnostic.GetMessage(), Does.Contain("must be a positive integer or the name of an int symbol, found true"));
    }

    [Test]
    public void HZ0007_unknown_rope_mode()
    {
        AssertSingleDiagnostic(Break("\"rope\": \"config\"", "\"rope\": \"yarn\""), "HZ0007", line: 23, at: "\"yarn\"");
    }

    [Test]
    public void HZ0007_unknown_symbol_type()
    {
        AssertSingleDiagnostic(Break("\"type\": \"float\"", "\"type\": \"double\""), "HZ0007", line: 13, at: "\"double\"");
    }

    [Test]
    public void HZ0007_misspelt_optional_property_is_not_ignored()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"rope\": \"config\",", "\"rope\": \"config\", \"qkv_biass\": true,"), "HZ0007", line: 23, at: "\"qkv_biass\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("did you mean \"qkv_bias\"?"));
    }

    [Test]
    public void HZ0007_default_cycle()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"heads\": { \"config\": \"num_attention_heads\" }", "\"heads\": { \"config\": \"num_attention_heads\", \"default\": \"kv_heads\" }"),
            "HZ0007", line: 9, at: "\"kv_heads\"");
        Assert.That(diagnostic.GetMessage(), Does.Contain("heads → kv_heads → heads"));
    }

    [Test]
    public void HZ0008_float_symbol_used_as_a_size()
    {
        var diagnostic = AssertSingleDiagnostic(Break("\"heads\": \"heads\",", "\"heads\": \"eps\","), "HZ0008", line: 23, at: "\"eps\"");
        Assert.That(diagnostic.GetMessage(), Is.EqualTo("\"heads\" of mixer 'attn' of block group 'layers' must be an int (a size), but symbol 'eps' is declared as float"));
    }

    [Test]
    public void HZ0008_int_symbol_used_as_a_flag()
    {
        AssertSingleDiagnostic(Break("\"tied\": \"tied\"", "\"tied\": \"heads\""), "HZ0008", line: 29, at: "\"heads\"");
    }
}
