using Horizon.Generators;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using NUnit.Framework;

namespace Horizon.Tests.Generators;

// The pipeline caches by value: an edit to C# code re-runs none of it, and an edit to one spec re-runs only that
// spec's steps and output. These read the driver's step tracking (trackIncrementalGeneratorSteps: true).
public partial class GeneratorTests
{
    private static readonly string[] TrackedSteps =
    [
        ModelSpecGenerator.TrackingNames.SpecFiles,
        ModelSpecGenerator.TrackingNames.ParsedSpecs,
        ModelSpecGenerator.TrackingNames.SpecOutputs,
        ModelSpecGenerator.TrackingNames.SpecIdentities,
        ModelSpecGenerator.TrackingNames.CrossSpecDiagnostics,
        ModelSpecGenerator.TrackingNames.ShadowedSpecs,
    ];

    /// <summary>Asserts every reason is Cached or Unchanged: each output is the one of the previous run.</summary>
    private static void AssertNotRerun(IEnumerable<IncrementalStepRunReason> reasons, string what)
    {
        var list = reasons.ToArray();
        Assert.That(list, Is.Not.Empty, what);
        Assert.That(list.Where(r => r is not (IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged)), Is.Empty, $"{what}: {string.Join(", ", list)}");
    }

    private static AdditionalText[] ShippedSpecTexts() =>
    [
        new InMemoryAdditionalText(Path.Combine(RepositoryPaths.Models, "llama.model.json"), File.ReadAllText(Path.Combine(RepositoryPaths.Models, "llama.model.json"))),
        new InMemoryAdditionalText(Path.Combine(RepositoryPaths.Models, "qwen2.model.json"), File.ReadAllText(Path.Combine(RepositoryPaths.Models, "qwen2.model.json"))),
    ];

    private static IncrementalStepRunReason[] Reasons(GeneratorRunResult run, string step) =>
        run.TrackedSteps[step].SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();

    private static Dictionary<string, string> Sources(GeneratorRunResult run) =>
        run.GeneratedSources.ToDictionary(s => s.HintName, s => s.SourceText.ToString());

    [Test]
    public void Unrelated_csharp_edit_reruns_nothing()
    {
        var compilation = GeneratorHarness.CreateCompilation("namespace App; public class Program { }");
        var driver = GeneratorHarness.CreateDriver(ShippedSpecTexts()).RunGenerators(compilation);
        var first = driver.GetRunResult().Results.Single();

        var edited = compilation.AddSyntaxTrees(CSharpSyntaxTree.ParseText("namespace App; public class Helper { public int Value => 42; }", GeneratorHarness.ParseOptions));
        var second = driver.RunGenerators(edited).GetRunResult().Results.Single();

        Assert.That(second.Exception, Is.Null);
        foreach (string step in TrackedSteps)
        {
            Assert.That(second.TrackedSteps.ContainsKey(step), $"step {step} is not tracked");
            AssertNotRerun(Reasons(second, step), $"step {step}");
        }
        var outputs = second.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();
        AssertNotRerun(outputs, "source outputs");
        Assert.That(Sources(second), Is.EqualTo(Sources(first)), "no new or changed outputs");
    }

    [Test]
    public void Editing_one_spec_reruns_only_that_spec()
    {
        var compilation = GeneratorHarness.CreateCompilation("namespace App; public class Program { }");
        var texts = ShippedSpecTexts();
        var driver = GeneratorHarness.CreateDriver(texts).RunGenerators(compilation);
        var before = Sources(driver.GetRunResult().Results.Single());

        var llama = texts[0];
        var editedLlama = new InMemoryAdditionalText(llama.Path, llama.GetText()!.ToString().Replace("\"default\": 1e-6", "\"default\": 1e-5"));
        var after = driver.ReplaceAdditionalText(llama, editedLlama).RunGenerators(compilation).GetRunResult().Results.Single();

        Assert.That(after.Exception, Is.Null);
        Assert.That(Reasons(after, ModelSpecGenerator.TrackingNames.ParsedSpecs),
            Is.EquivalentTo(new[] { IncrementalStepRunReason.Modified, IncrementalStepRunReason.Cached }));
        // The edit keeps the spec's names, so the checks across specs have nothing new to say.
        AssertNotRerun(Reasons(after, ModelSpecGenerator.TrackingNames.CrossSpecDiagnostics), "the check across specs");
        AssertNotRerun(Reasons(after, ModelSpecGenerator.TrackingNames.ShadowedSpecs), "the shadowed specs");
        var outputs = after.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();
        Assert.That(outputs.Count(r => r == IncrementalStepRunReason.Modified), Is.EqualTo(1), "only the edited spec's output re-runs");

        var sources = Sources(after);
        Assert.That(sources["Qwen2Model.g.cs"], Is.EqualTo(before["Qwen2Model.g.cs"]));
        Assert.That(sources["LlamaModel.g.cs"], Does.Contain("?? 1E-05d").And.Not.EqualTo(before["LlamaModel.g.cs"]));
    }

    [TestCase("gla.model.json")]
    [TestCase("qwen2_moe.model.json")]
    [TestCase("hyenadna.model.json")]
    [TestCase("horizon-kjv.model.json")]
    [TestCase("block_transformer.model.json")]
    public void Whitespace_only_edit_of_a_spec_with_the_newer_kinds_reemits_nothing(string fileName)
    {
        // Their models hold lists (alternative names, MoE layouts, chained defaults, supported values): all compared by value.
        string path = Path.Combine(RepositoryPaths.Models, fileName);
        var spec = new InMemoryAdditionalText(path, File.ReadAllText(path));
        var compilation = GeneratorHarness.CreateCompilation();
        var driver = GeneratorHarness.CreateDriver(spec).RunGenerators(compilation);

        var reindented = new InMemoryAdditionalText(path, "\n" + spec.GetText()!.ToString().Replace("  ", "   "));
        var after = driver.ReplaceAdditionalText(spec, reindented).RunGenerators(compilation).GetRunResult().Results.Single();

        Assert.That(after.Diagnostics, Is.Empty);
        AssertNotRerun(Reasons(after, ModelSpecGenerator.TrackingNames.SpecOutputs), "what the source output reads");
        var outputs = after.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();
        AssertNotRerun(outputs, "source outputs");
    }

    [Test]
    public void Editing_the_token_decoder_of_a_two_level_spec_reemits_only_that_spec()
    {
        // A two-level spec's model (levels, lookup embedder, prefix projection, gelu symbols) compares by value too: an
        // edit re-emits it, with the edit, and leaves the other spec's output alone.
        string path = Path.Combine(RepositoryPaths.Models, "block_transformer.model.json");
        var spec = new InMemoryAdditionalText(path, File.ReadAllText(path));
        var llama = ShippedSpecTexts()[0];
        var compilation = GeneratorHarness.CreateCompilation();
        var driver = GeneratorHarness.CreateDriver(spec, llama).RunGenerators(compilation);
        var before = Sources(driver.GetRunResult().Results.Single());

        var edited = new InMemoryAdditionalText(path, spec.GetText()!.ToString().Replace("\"type\": \"gelu\", \"default\": \"gelu\" }\n  },", "\"type\": \"gelu\", \"default\": \"gelu_new\" }\n  },"));
        Assert.That(edited.GetText()!.ToString(), Is.Not.EqualTo(spec.GetText()!.ToString()), "the edit applies");
        var after = driver.ReplaceAdditionalText(spec, edited).RunGenerators(compilation).GetRunResult().Results.Single();

        Assert.That(after.Diagnostics, Is.Empty);
        var outputs = after.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();
        Assert.That(outputs.Count(r => r == IncrementalStepRunReason.Modified), Is.EqualTo(1), "only the edited spec's output re-runs");
        var sources = Sources(after);
        Assert.That(sources["LlamaModel.g.cs"], Is.EqualTo(before["LlamaModel.g.cs"]));
        Assert.That(sources["BlockTransformerModel.g.cs"], Does.Contain("\"token_decoder.config.hidden_act\", \"gelu_new\")"));
    }

    [Test]
    public void Whitespace_only_spec_edit_reemits_nothing()
    {
        // What the source output reads holds no text positions, so reformatting a valid spec yields an equal value.
        var compilation = GeneratorHarness.CreateCompilation();
        var texts = ShippedSpecTexts();
        var driver = GeneratorHarness.CreateDriver(texts).RunGenerators(compilation);

        var llama = texts[0];
        var reindented = new InMemoryAdditionalText(llama.Path, "\n\n" + llama.GetText()!.ToString().Replace("  ", "    "));
        var after = driver.ReplaceAdditionalText(llama, reindented).RunGenerators(compilation).GetRunResult().Results.Single();

        AssertNotRerun(Reasons(after, ModelSpecGenerator.TrackingNames.SpecOutputs), "what the source output reads");
        var outputs = after.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();
        AssertNotRerun(outputs, "source outputs");
    }
}
