using Microsoft.CodeAnalysis;
using NUnit.Framework;

namespace Horizon.Tests.Generators;

/// <summary>
/// The model spec generator: generated code for the shipped specs (baselines), one test per diagnostic, incremental
/// caching, and robustness on malformed input. Run alone with --treenode-filter "/*/*/GeneratorTests/*".
/// </summary>
public partial class GeneratorTests
{
    /// <summary>Set to 1 to rewrite the baselines from the generator's current output (then review the diff).</summary>
    private const string UpdateBaselinesVariable = "HORIZON_UPDATE_BASELINES";

    private static string BaselinePath(string className) =>
        Path.Combine(RepositoryPaths.Root, "tests", "Horizon.Tests", "Generators", "Baselines", className + ".g.cs.txt");

    /// <summary>Every spec in models/, which the runtime assembly compiles.</summary>
    private static readonly string[] ShippedSpecFiles =
    [
        "llama.model.json", "qwen2.model.json", "gla.model.json", "mixtral.model.json", "qwen2_moe.model.json", "hyenadna.model.json",
        "horizon-kjv.model.json", "block_transformer.model.json",
    ];

    private static (string Path, string Text) ShippedSpec(string fileName)
    {
        string path = Path.Combine(RepositoryPaths.Models, fileName);
        return (path, File.ReadAllText(path));
    }

    [TestCase("llama.model.json", "LlamaModel")]
    [TestCase("qwen2.model.json", "Qwen2Model")]
    [TestCase("gla.model.json", "GlaModel")]
    [TestCase("mixtral.model.json", "MixtralModel")]
    [TestCase("qwen2_moe.model.json", "Qwen2MoeModel")]
    [TestCase("hyenadna.model.json", "HyenaDnaModel")]
    [TestCase("horizon-kjv.model.json", "HorizonHybridModel")]
    [TestCase("block_transformer.model.json", "BlockTransformerModel")]
    public void Shipped_spec_generates_its_baseline(string specFile, string className)
    {
        var (run, _) = GeneratorHarness.Run(ShippedSpec(specFile));

        Assert.That(run.Exception, Is.Null);
        Assert.That(run.Diagnostics, Is.Empty);
        var source = run.GeneratedSources.Single();
        Assert.That(source.HintName, Is.EqualTo(className + ".g.cs"));
        string generated = GeneratorHarness.Normalize(source.SourceText.ToString());

        string baseline = BaselinePath(className);
        if (Environment.GetEnvironmentVariable(UpdateBaselinesVariable) == "1")
        {
            File.WriteAllText(baseline, generated);
            Assert.Warn($"{baseline} rewritten ({UpdateBaselinesVariable}=1); review the diff and commit it");
        }
        Assert.That(File.Exists(baseline), $"{baseline} is missing; run the tests with {UpdateBaselinesVariable}=1 to create it");
        Assert.That(generated, Is.EqualTo(GeneratorHarness.Normalize(File.ReadAllText(baseline))),
            $"the generated {className} differs from {baseline}; if the change is intended, run the tests with {UpdateBaselinesVariable}=1");
    }

    [Test]
    public void Shipped_specs_compile_without_errors_or_warnings_against_the_runtime()
    {
        var (run, output) = GeneratorHarness.Run(ShippedSpecFiles.Select(ShippedSpec).ToArray());

        Assert.That(run.Exception, Is.Null);
        Assert.That(run.Diagnostics, Is.Empty);
        Assert.That(run.GeneratedSources.Select(s => s.HintName), Is.EquivalentTo(new[]
        {
            "LlamaModel.g.cs", "Qwen2Model.g.cs", "GlaModel.g.cs", "MixtralModel.g.cs", "Qwen2MoeModel.g.cs", "HyenaDnaModel.g.cs",
            "HorizonHybridModel.g.cs", "BlockTransformerModel.g.cs",
        }));
        Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty);
    }

    [Test]
    public void Generated_model_has_the_typed_members_the_spec_names()
    {
        var (_, output) = GeneratorHarness.Run(ShippedSpec("llama.model.json"));
        var model = output.GetTypeByMetadataName("Horizon.Models.LlamaModel")!;
        Assert.That(model, Is.Not.Null);

        string TypeOf(INamedTypeSymbol type, string member) =>
            type.GetMembers(member).OfType<IPropertySymbol>().Single().Type.ToDisplayString();

        var weights = model.GetTypeMembers("LayersWeights").Single();
        Assert.That(TypeOf(weights, "InputLayernorm"), Is.EqualTo("Horizon.Ops.RmsNormWeights"));
        Assert.That(TypeOf(weights, "SelfAttn"), Is.EqualTo("Horizon.Ops.AttentionWeights"));
        Assert.That(TypeOf(weights, "Mlp"), Is.EqualTo("Horizon.Ops.SwiGluMlpWeights"));
        Assert.That(TypeOf(model.GetTypeMembers("LayersState").Single(), "SelfAttn"), Is.EqualTo("Horizon.Ops.KvCache"));
        var sizes = model.GetTypeMembers("Dimensions").Single();
        Assert.That(TypeOf(sizes, "HeadDim"), Is.EqualTo("int"));
        Assert.That(TypeOf(sizes, "RmsNormEps"), Is.EqualTo("float"));
        Assert.That(TypeOf(sizes, "TieWordEmbeddings"), Is.EqualTo("bool"));
        Assert.That(TypeOf(model, "Layers"), Is.EqualTo("Horizon.Models.LlamaModel.LayersWeights[]"));
        Assert.That(TypeOf(model, "EmbedTokens"), Is.EqualTo("Horizon.Matrix"));
        Assert.That(TypeOf(model, "LmHead"), Is.EqualTo("Horizon.Matrix"));
        Assert.That(model.AllInterfaces.Select(i => i.ToDisplayString()), Does.Contain("Horizon.ICausalLanguageModel"));
    }

    [Test]
    public void Runtime_assembly_ships_and_registers_the_models_of_the_shipped_specs()
    {
        Assert.That(typeof(Horizon.Models.LlamaModel).GetInterfaces(), Does.Contain(typeof(ICausalLanguageModel)));
        Assert.That(typeof(Horizon.Models.Qwen2Model).GetInterfaces(), Does.Contain(typeof(ICausalLanguageModel)));
        Assert.That(typeof(Horizon.Models.GlaModel).GetInterfaces(), Does.Contain(typeof(ICausalLanguageModel)));
        Assert.That(typeof(Horizon.Models.HyenaDnaModel).GetInterfaces(), Does.Contain(typeof(ICausalLanguageModel)));
        Assert.That(typeof(Horizon.Models.HorizonHybridModel).GetInterfaces(), Does.Contain(typeof(ICausalLanguageModel)));
        Assert.That(typeof(Horizon.Models.BlockTransformerModel).GetInterfaces(), Does.Contain(typeof(ICausalLanguageModel)));
        Assert.That(typeof(Horizon.Models.BlockTransformerModel.State).GetInterfaces(), Does.Contain(typeof(IBlockModelState)));
        // Registration runs from a module initializer, before any code of the runtime assembly.
        Assert.That(ModelRegistry.Architectures, Is.SupersetOf(new[]
        {
            "LlamaForCausalLM", "Qwen2ForCausalLM", "GLAForCausalLM", "MixtralForCausalLM", "Qwen2MoeForCausalLM", "HyenaDNAForCausalLM",
            "HorizonHybridForCausalLM", "BlockTransformerForCausalLM",
        }));
    }
}
