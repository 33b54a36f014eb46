using System.Collections.Immutable;
using System.Text;
using Basic.Reference.Assemblies;
using Horizon.Generators;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;

namespace Horizon.Tests.Generators;

/// <summary>A spec file handed to the generator from memory, as MSBuild hands it AdditionalFiles.</summary>
internal sealed class InMemoryAdditionalText(string path, string text) : AdditionalText
{
    private readonly SourceText _text = SourceText.From(text, Encoding.UTF8);

    public override string Path => path;

    public override SourceText GetText(CancellationToken cancellationToken = default) => _text;
}

/// <summary>Runs <see cref="ModelSpecGenerator"/> the way the compiler does, on a compilation against .NET 10 and Horizon.Runtime.</summary>
internal static class GeneratorHarness
{
    /// <summary>Documentation comments are parsed and checked, so malformed or missing XML docs in generated code show up as warnings.</summary>
    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Latest, DocumentationMode.Diagnose);

    private static readonly ImmutableArray<MetadataReference> References =
    [
        .. Net100.References.All,
        MetadataReference.CreateFromFile(typeof(ModelDirectory).Assembly.Location),
    ];

    /// <summary>A folder that looks like a project's, so paths in diagnostics look like a build's.</summary>
    public static string SpecPath(string fileName) => Path.Combine(Path.GetTempPath(), "horizon-specs", fileName);

    public static CSharpCompilation CreateCompilation(params string[] sources) =>
        CSharpCompilation.Create(
            "GeneratedModels",
            sources.Select(source => CSharpSyntaxTree.ParseText(source, ParseOptions)),
            References,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));

    public static GeneratorDriver CreateDriver(params AdditionalText[] specs) =>
        CSharpGeneratorDriver.Create(
            [new ModelSpecGenerator().AsSourceGenerator()],
            additionalTexts: specs,
            parseOptions: ParseOptions,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    /// <summary>Runs the generator over <paramref name="specs"/> (path, text) and returns the run and the compilation with its output.</summary>
    public static (GeneratorRunResult Run, Compilation Output) Run(params (string Path, string Text)[] specs)
    {
        var driver = CreateDriver(specs.Select(s => (AdditionalText)new InMemoryAdditionalText(s.Path, s.Text)).ToArray());
        driver = driver.RunGeneratorsAndUpdateCompilation(CreateCompilation(), out var output, out _);
        return (driver.GetRunResult().Results.Single(), output);
    }

    /// <summary>The diagnostics of compiling <paramref name="output"/> that are errors or warnings.</summary>
    public static IReadOnlyList<Diagnostic> CompileProblems(Compilation output) =>
        output.GetDiagnostics()
            .Where(d => d.Severity >= DiagnosticSeverity.Warning)
            // The runtime assembly already holds the classes of the shipped specs; compiling them again here makes
            // the source copy win, with a warning (CS0436) that says just that.
            .Where(d => d.Id != "CS0436")
            .ToArray();

    public static string Normalize(string text) => text.Replace("\r\n", "\n");
}
