using System.Collections.Immutable;
using System.Text.RegularExpressions;
using Basic.Reference.Assemblies;
using Horizon.Cuda;
using Horizon.Generators.Kernels;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using NUnit.Framework;

namespace Horizon.Tests.Generators;

/// <summary>
/// The kernel launcher generator (src/Generators/Kernels): the launchers it writes for a small .cu snippet (baselines),
/// that they compile and are typed, one test per diagnostic (HZ1001…), incremental caching, robustness on broken
/// sources, and that the runtime's own kernels (native/*.cu) go through it. CPU only: nothing is launched.
/// Run alone with --treenode-filter "/*/*/KernelLauncherGeneratorTests/*".
/// </summary>
public class KernelLauncherGeneratorTests
{
    private const string UpdateBaselinesVariable = "HORIZON_UPDATE_BASELINES";

    private static string NativeDirectory => Path.Combine(RepositoryPaths.Root, "native");

    private static string SnippetPath(string fileName) => Path.Combine(Path.GetTempPath(), "horizon-kernels", fileName);

    private static readonly ImmutableArray<MetadataReference> References =
    [
        .. Net100.References.All,
        MetadataReference.CreateFromFile(typeof(CudaKernel).Assembly.Location),
    ];

    /// <summary>
    /// A snippet with the forms the parser must read (qualifiers, attributes, every mapped type, an unnamed parameter,
    /// names that are C# keywords or launcher parameters) and those it must skip (comments, a macro, a declaration, a
    /// C++-linkage kernel, device functions).
    /// </summary>
    private const string Snippet = """
        // A sample kernel file. extern "C" __global__ void in_a_comment(int x) {} is not a kernel.
        #include "common.cuh"
        #define DECLARE_KERNEL(name) extern "C" __global__ void name(float* x) { }
        /* extern "C" __global__ void in_a_block_comment(float* y) {} */

        static __device__ float helper(float x) { return x * 2.0f; }

        extern "C" __global__ void forward_only(const float* x);  // a declaration: its definition gets the launcher

        extern "C" __global__ void __launch_bounds__(256) scale_add_f32(const float* __restrict__ x, float* __restrict__ y,
                                                                        float alpha, long long n)
        {
            const char* text = "extern \"C\" __global__ void in_a_string(int) {}";
        }

        extern "C" __global__ void mixed_types_bf16(const bf16_t* q, bf16_t* o, const __half* h, const double* inv_freq,
                                                    const int* tokens, unsigned int flags, unsigned char tag, size_t bytes,
                                                    const void* raw, int base, int stream, int)
        {
        }

        extern "C" __global__ void forward_only(const float* x) { }

        extern "C" __global__ void no_arguments(void) { }

        __global__ void cpp_linkage(float* x) { }
        """;

    private static (GeneratorRunResult Run, Compilation Output) Run(params (string Path, string Text)[] files)
    {
        var driver = CreateDriver(files.Select(f => (AdditionalText)new InMemoryAdditionalText(f.Path, f.Text)).ToArray());
        driver = driver.RunGeneratorsAndUpdateCompilation(CreateCompilation(), out var output, out _);
        return (driver.GetRunResult().Results.Single(), output);
    }

    private static GeneratorDriver CreateDriver(params AdditionalText[] files) =>
        CSharpGeneratorDriver.Create(
            [new KernelLauncherGenerator().AsSourceGenerator()],
            additionalTexts: files,
            parseOptions: GeneratorHarness.ParseOptions,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    private static CSharpCompilation CreateCompilation(params string[] sources) =>
        CSharpCompilation.Create(
            "GeneratedLaunchers",
            sources.Select(source => CSharpSyntaxTree.ParseText(source, GeneratorHarness.ParseOptions)),
            References,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable, allowUnsafe: true));

    private static Dictionary<string, string> Sources(GeneratorRunResult run) =>
        run.GeneratedSources.ToDictionary(s => s.HintName, s => GeneratorHarness.Normalize(s.SourceText.ToString()));

    private static string BaselinePath(string hintName) =>
        Path.Combine(RepositoryPaths.Root, "tests", "Horizon.Tests", "Generators", "Baselines", "Kernels", hintName + ".txt");

    private static void AssertBaseline(string hintName, string generated)
    {
        string baseline = BaselinePath(hintName);
        if (Environment.GetEnvironmentVariable(UpdateBaselinesVariable) == "1")
        {
            Directory.CreateDirectory(Path.GetDirectoryName(baseline)!);
            File.WriteAllText(baseline, generated);
            Assert.Warn($"{baseline} rewritten ({UpdateBaselinesVariable}=1); review the diff and commit it");
        }
        Assert.That(File.Exists(baseline), $"{baseline} is missing; run the tests with {UpdateBaselinesVariable}=1 to create it");
        Assert.That(generated, Is.EqualTo(GeneratorHarness.Normalize(File.ReadAllText(baseline))),
            $"the generated {hintName} differs from {baseline}; if the change is intended, run the tests with {UpdateBaselinesVariable}=1");
    }

    // ---------------------------------------------------------------- baselines and types

    [Test]
    public void Snippet_generates_its_baseline()
    {
        var (run, output) = Run((SnippetPath("sample.cu"), Snippet));

        Assert.That(run.Exception, Is.Null);
        Assert.That(run.Diagnostics, Is.Empty);
        var sources = Sources(run);
        Assert.That(sources.Keys, Is.EquivalentTo(new[] { "CudaSampleKernels.g.cs", "CudaKernelCatalog.g.cs" }));
        AssertBaseline("CudaSampleKernels.g.cs", sources["CudaSampleKernels.g.cs"]);
        AssertBaseline("CudaKernelCatalog.g.cs", sources["CudaKernelCatalog.g.cs"]);
        Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty);
    }

    [Test]
    public void Launchers_take_the_c_types_as_typed_csharp_parameters()
    {
        var (_, output) = Run((SnippetPath("sample.cu"), Snippet));
        var type = output.GetTypeByMetadataName("Horizon.Cuda.CudaSampleKernels")!;
        Assert.That(type, Is.Not.Null);
        Assert.That(type.GetMembers().OfType<IMethodSymbol>().Where(m => m.MethodKind == MethodKind.Ordinary && m.DeclaredAccessibility == Accessibility.Public)
            .Select(m => m.Name), Is.EquivalentTo(new[] { "Load", "LoadAll", "ScaleAddF32", "MixedTypesBf16", "ForwardOnly", "NoArguments" }));

        string[] Parameters(string method) =>
            type.GetMembers(method).OfType<IMethodSymbol>().Single().Parameters.Skip(4).Select(p => $"{p.Type.ToDisplayString()} {p.Name}").ToArray();

        Assert.That(Parameters("ScaleAddF32"), Is.EqualTo(new[]
        {
            "Horizon.Cuda.DevicePointer<float> x", "Horizon.Cuda.DevicePointer<float> y", "float alpha", "long n",
        }));
        Assert.That(Parameters("MixedTypesBf16"), Is.EqualTo(new[]
        {
            "Horizon.Cuda.DevicePointer<Horizon.Cuda.BFloat16> q", "Horizon.Cuda.DevicePointer<Horizon.Cuda.BFloat16> o",
            "Horizon.Cuda.DevicePointer<System.Half> h", "Horizon.Cuda.DevicePointer<double> invFreq", "Horizon.Cuda.DevicePointer<int> tokens",
            "uint flags", "byte tag", "ulong bytes", "Horizon.Cuda.DevicePointer<byte> raw", "int base", "int stream_", "int arg12",
        }));
        Assert.That(Parameters("NoArguments"), Is.Empty);
        Assert.That(type.GetMembers("Symbols").OfType<IPropertySymbol>().Single().IsStatic, Is.True);
    }

    [Test]
    public void A_launch_with_the_wrong_pointee_type_does_not_compile()
    {
        // What "typed" buys: a float buffer where the kernel takes bf16 is a compile error, not a garbage launch.
        const string caller = """
            using Horizon.Cuda;
            static class Caller
            {
                static void Wrong(CudaSampleKernels kernels, CudaDeviceVariable<float> x, CudaDeviceVariable<BFloat16> b) =>
                    kernels.MixedTypesBf16(1u, 32u, 0, null, x, b, default, default, default, 0u, 0, 0, default, 0, 0, 0);
                static void Right(CudaSampleKernels kernels, CudaDeviceVariable<float> x, CudaDeviceVariable<float> y) =>
                    kernels.ScaleAddF32(1u, 256u, 0, null, x, y.At(1), 2f, 7L);
            }
            """;
        var driver = CreateDriver(new InMemoryAdditionalText(SnippetPath("sample.cu"), Snippet));
        driver.RunGeneratorsAndUpdateCompilation(CreateCompilation(caller), out var output, out _);
        var errors = output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToArray();
        Assert.That(errors.Select(e => e.Id), Is.EqualTo(new[] { "CS1503" }), string.Join("\n", errors.Select(e => e.ToString())));
        Assert.That(errors[0].GetMessage(), Does.Contain("CudaDeviceVariable<float>").And.Contain("DevicePointer<Horizon.Cuda.BFloat16>"));
    }

    public static IEnumerable<string> ShippedKernelFiles() =>
        Directory.EnumerateFiles(Path.Combine(RepositoryPaths.Root, "native"), "*.cu").Select(Path.GetFileName).Order(StringComparer.Ordinal)!;

    [Test]
    public void Shipped_kernels_get_a_launcher_each_and_compile()
    {
        var files = ShippedKernelFiles().Select(name => (Path.Combine(NativeDirectory, name), File.ReadAllText(Path.Combine(NativeDirectory, name)))).ToArray();
        var (run, output) = Run(files);

        Assert.That(run.Exception, Is.Null);
        Assert.That(run.Diagnostics, Is.Empty);
        Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty);
        // Every definition with C linkage in the sources, found by a plain pattern, has exactly one launcher.
        var definitions = new Regex(@"extern ""C"" __global__ void(?: __launch_bounds__\(\d+(?:, *\d+)?\))? (\w+)\(");
        var expected = files.SelectMany(f => definitions.Matches(f.Item2).Select(m => (Path.GetFileNameWithoutExtension(f.Item1), m.Groups[1].Value)))
            .OrderBy(k => k.Item1, StringComparer.Ordinal).ToArray();
        Assert.That(CudaKernelCatalog.All.Select(k => (k.Module, k.Name)).ToArray(), Is.EquivalentTo(expected), "the runtime's generated catalog");
        Assert.That(sourcesOf(run).Keys, Is.EquivalentTo(files.Select(f => KernelSignatureParser.ClassNameOf(Path.GetFileNameWithoutExtension(f.Item1)) + ".g.cs")
            .Append("CudaKernelCatalog.g.cs")));

        static Dictionary<string, string> sourcesOf(GeneratorRunResult run) => Sources(run);
    }

    [Test]
    public void The_runtime_spells_no_kernel_name_outside_generated_code()
    {
        // Every launch in src/Runtime goes through a generated launcher; a kernel symbol as a string literal in
        // hand-written C# would be a launch (or a lookup) the compiler cannot check.
        var symbols = CudaKernelCatalog.All.Select(k => k.Name).ToHashSet(StringComparer.Ordinal);
        var literal = new Regex("\"([A-Za-z0-9_]+)\"");
        var offenders = new List<string>();
        foreach (string file in Directory.EnumerateFiles(Path.Combine(RepositoryPaths.Root, "src"), "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
                continue;
            foreach (Match match in literal.Matches(File.ReadAllText(file)))
            {
                if (symbols.Contains(match.Groups[1].Value))
                    offenders.Add($"{Path.GetRelativePath(RepositoryPaths.Root, file)}: {match.Value}");
            }
        }
        Assert.That(symbols, Is.Not.Empty);
        Assert.That(offenders, Is.Empty);
        Assert.That(CudaOps.Kernels, Is.SameAs(CudaKernelCatalog.All));
    }

    // ---------------------------------------------------------------- diagnostics: one per id

    /// <summary>Asserts a single diagnostic <paramref name="id"/> on one-based <paramref name="line"/>, and that the file's other kernels still get launchers.</summary>
    private static Diagnostic AssertSingleDiagnostic(string source, string id, int line, params string[] messageParts)
    {
        const string valid = "\nextern \"C\" __global__ void still_fine_f32(float* x, int n) { }\n";
        var (run, output) = Run((SnippetPath("broken.cu"), source + valid));
        Assert.That(run.Exception, Is.Null);
        Assert.That(run.Diagnostics.Select(d => d.Id), Is.EqualTo(new[] { id }), string.Join("\n", run.Diagnostics));
        var diagnostic = run.Diagnostics[0];
        Assert.That(diagnostic.Severity, Is.EqualTo(DiagnosticSeverity.Error));
        Assert.That(diagnostic.Location.GetLineSpan().Path, Is.EqualTo(SnippetPath("broken.cu")));
        Assert.That(diagnostic.Location.GetLineSpan().StartLinePosition.Line + 1, Is.EqualTo(line), diagnostic.ToString());
        foreach (string part in messageParts)
            Assert.That(diagnostic.GetMessage(), Does.Contain(part));
        Assert.That(output.GetTypeByMetadataName("Horizon.Cuda.CudaBrokenKernels")?.GetMembers("StillFineF32"), Is.Not.Empty,
            "one bad kernel does not cost the others their launchers");
        Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty);
        return diagnostic;
    }

    [TestCase("extern \"C\" __global__ void unclosed(float* x, int n\n{\n}", 1, "parameter list of 'unclosed' is not closed", TestName = "HZ1001 unclosed parameter list")]
    [TestCase("\nextern \"C\" __global__ int returns_int(float* x) { }", 2, "returns 'int'", TestName = "HZ1001 not void")]
    [TestCase("extern \"C\" __global__ void (float* x) { }", 1, "expected the kernel's name between 'void' and '('", TestName = "HZ1001 no name")]
    [TestCase("extern \"C\" __global__ void no_body(float* x) const { }", 1, "expected the body of 'no_body'", TestName = "HZ1001 no body")]
    [TestCase("extern \"C\" __global__ void empty_parameter(float* x, ) { }", 1, "parameter 2 of 'empty_parameter' is empty", TestName = "HZ1001 empty parameter")]
    public void HZ1001_unreadable_signature(string source, int line, string message)
    {
        var diagnostic = AssertSingleDiagnostic(source, "HZ1001", line, message);
        Assert.That(diagnostic.GetMessage(), Does.StartWith("The kernel signature after extern \"C\" __global__ cannot be read"));
    }

    [TestCase("char", "plain char may be signed or unsigned", TestName = "HZ1002 plain char")]
    [TestCase("long", "'long' is 64 bits on Linux and 32 on Windows", TestName = "HZ1002 long")]
    [TestCase("bool", "the size of bool is not fixed", TestName = "HZ1002 bool")]
    [TestCase("float4", "supported: float, double", TestName = "HZ1002 vector type")]
    [TestCase("float**", "a pointer to a pointer", TestName = "HZ1002 pointer to pointer")]
    [TestCase("float&", "a reference cannot be passed", TestName = "HZ1002 reference")]
    [TestCase("const __grid_constant__ CUtensorMap", "__grid_constant__", TestName = "HZ1002 grid constant")]
    public void HZ1002_unsupported_parameter_type(string type, string reason)
    {
        var diagnostic = AssertSingleDiagnostic($"\n\nextern \"C\" __global__ void odd_kernel(float* x,\n    {type} value) {{ }}", "HZ1002", 4,
            "Kernel 'odd_kernel'", reason);
        Assert.That(diagnostic.GetMessage(), Does.Contain("parameter 'value'"));
    }

    [Test]
    public void HZ1003_kernel_defined_twice()
    {
        // #if branches are not evaluated, so both definitions are seen; the first keeps its launcher.
        AssertSingleDiagnostic("#if FAST\nextern \"C\" __global__ void twice(float* x) { }\n#else\nextern \"C\" __global__ void twice(float* x) { }\n#endif",
            "HZ1003", 4, "'twice' is defined more than once in broken.cu");
    }

    [Test]
    public void HZ1003_two_kernels_with_one_launcher_name()
    {
        AssertSingleDiagnostic("extern \"C\" __global__ void add_f32(float* x) { }\nextern \"C\" __global__ void addF32(float* x) { }",
            "HZ1003", 2, "'addF32' would get the launcher 'AddF32'", "the launcher of 'add_f32'");
    }

    [Test]
    public void HZ1003_two_files_with_one_class_name()
    {
        var (run, output) = Run(
            (SnippetPath("gla.cu"), "extern \"C\" __global__ void one(float* x) { }"),
            (Path.Combine(Path.GetTempPath(), "horizon-kernels-other", "gla.cu"), "extern \"C\" __global__ void two(float* x) { }"));
        Assert.That(run.Diagnostics.Select(d => d.Id), Is.EqualTo(new[] { "HZ1003" }));
        Assert.That(run.Diagnostics[0].GetMessage(), Does.Contain("would generate the class 'CudaGlaKernels', which gla.cu already generates"));
        Assert.That(run.GeneratedSources.Select(s => s.HintName), Is.EquivalentTo(new[] { "CudaGlaKernels.g.cs", "CudaKernelCatalog.g.cs" }));
        Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty);
    }

    [Test]
    public void Every_diagnostic_is_documented()
    {
        string docs = File.ReadAllText(Path.Combine(RepositoryPaths.Root, "docs", "diagnostics.md"));
        foreach (string id in new[] { "HZ1001", "HZ1002", "HZ1003" })
            Assert.That(docs, Does.Contain($"## {id}"), id);
    }

    // ---------------------------------------------------------------- incremental caching

    private static IncrementalStepRunReason[] Reasons(GeneratorRunResult run, string step) =>
        run.TrackedSteps[step].SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();

    private static IncrementalStepRunReason[] OutputReasons(GeneratorRunResult run) =>
        run.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();

    private static void AssertNotRerun(IEnumerable<IncrementalStepRunReason> reasons, string what)
    {
        var list = reasons.ToArray();
        Assert.That(list, Is.Not.Empty, what);
        Assert.That(list.Where(r => r is not (IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged)), Is.Empty, $"{what}: {string.Join(", ", list)}");
    }

    private static AdditionalText[] TwoFiles() =>
    [
        new InMemoryAdditionalText(SnippetPath("sample.cu"), Snippet),
        new InMemoryAdditionalText(SnippetPath("other.cu"), "extern \"C\" __global__ void other_f32(const float* x, float* y, int n)\n{\n    y[0] = x[0];\n}\n"),
    ];

    [Test]
    public void Unrelated_csharp_edit_reruns_nothing()
    {
        var compilation = CreateCompilation("namespace App; public class Program { }");
        var driver = CreateDriver(TwoFiles()).RunGenerators(compilation);
        var first = driver.GetRunResult().Results.Single();

        var edited = compilation.AddSyntaxTrees(CSharpSyntaxTree.ParseText("namespace App; public class Helper { }", GeneratorHarness.ParseOptions));
        var second = driver.RunGenerators(edited).GetRunResult().Results.Single();

        foreach (string step in new[]
                 {
                     KernelLauncherGenerator.TrackingNames.KernelFiles, KernelLauncherGenerator.TrackingNames.ParsedKernelFiles,
                     KernelLauncherGenerator.TrackingNames.KernelModules, KernelLauncherGenerator.TrackingNames.KernelDiagnostics,
                     KernelLauncherGenerator.TrackingNames.ShadowedModules, KernelLauncherGenerator.TrackingNames.Catalog,
                 })
            AssertNotRerun(Reasons(second, step), step);
        AssertNotRerun(OutputReasons(second), "source outputs");
        Assert.That(Sources(second), Is.EqualTo(Sources(first)));
    }

    [Test]
    public void Editing_a_kernel_body_reemits_nothing()
    {
        // The emitted model holds signatures only: a body or comment edit (which moves every later line) changes nothing.
        var compilation = CreateCompilation();
        var files = TwoFiles();
        var driver = CreateDriver(files).RunGenerators(compilation);
        var other = files[1];
        string text = other.GetText()!.ToString();
        var edited = new InMemoryAdditionalText(other.Path, "// a new first line\n" + text.Replace("y[0] = x[0];", "for (int i = 0; i < n; i++)\n        y[i] = 2 * x[i];"));
        var after = driver.ReplaceAdditionalText(other, edited).RunGenerators(compilation).GetRunResult().Results.Single();

        // The edited file is parsed again (its text changed) into an equal result; the other is not parsed at all.
        Assert.That(Reasons(after, KernelLauncherGenerator.TrackingNames.ParsedKernelFiles),
            Is.EquivalentTo(new[] { IncrementalStepRunReason.Unchanged, IncrementalStepRunReason.Cached }));
        AssertNotRerun(Reasons(after, KernelLauncherGenerator.TrackingNames.KernelModules), "the modules");
        AssertNotRerun(OutputReasons(after), "source outputs");
    }

    [Test]
    public void Editing_one_signature_reemits_only_that_file_and_the_catalog()
    {
        var compilation = CreateCompilation();
        var files = TwoFiles();
        var driver = CreateDriver(files).RunGenerators(compilation);
        var before = Sources(driver.GetRunResult().Results.Single());
        var other = files[1];
        var edited = new InMemoryAdditionalText(other.Path, other.GetText()!.ToString().Replace("int n)", "long long n)"));
        var after = driver.ReplaceAdditionalText(other, edited).RunGenerators(compilation).GetRunResult().Results.Single();

        var sources = Sources(after);
        Assert.That(sources["CudaSampleKernels.g.cs"], Is.EqualTo(before["CudaSampleKernels.g.cs"]));
        Assert.That(sources["CudaOtherKernels.g.cs"], Does.Contain("long n)").And.Not.EqualTo(before["CudaOtherKernels.g.cs"]));
        // The module output of the edited file re-runs; the sample's is cached; so is the catalog (same symbols).
        var outputs = OutputReasons(after);
        Assert.That(outputs.Count(r => r == IncrementalStepRunReason.Modified), Is.EqualTo(1), string.Join(", ", outputs));
        Assert.That(sources["CudaKernelCatalog.g.cs"], Is.EqualTo(before["CudaKernelCatalog.g.cs"]));
    }

    // ---------------------------------------------------------------- robustness

    [Test]
    public void Truncated_and_damaged_sources_give_diagnostics_never_an_exception()
    {
        string source = File.ReadAllText(Path.Combine(NativeDirectory, "attention.cu"));
        var random = new Random(4);
        for (int trial = 0; trial < 60; trial++)
        {
            string broken = trial % 2 == 0
                ? source[..random.Next(source.Length)]
                : source.Remove(random.Next(source.Length - 20), random.Next(1, 20));
            var (run, _) = Run((SnippetPath("attention.cu"), broken));
            Assert.That(run.Exception, Is.Null, $"trial {trial}");
            Assert.That(run.Diagnostics.Select(d => d.Id), Is.All.StartWith("HZ100"), $"trial {trial}");
        }
    }

    [Test]
    public void A_project_without_kernel_files_gets_no_generated_code()
    {
        // The generator ships in the package beside the spec generator; a consumer's *.model.json must not wake it.
        var (run, _) = Run((SnippetPath("tiny.model.json"), "{}"), (SnippetPath("notes.cuh"), "extern \"C\" __global__ void x(float* p) { }"));
        Assert.That(run.Exception, Is.Null);
        Assert.That(run.Diagnostics, Is.Empty);
        Assert.That(run.GeneratedSources, Is.Empty);
    }

    [Test]
    public void Names_map_to_csharp_as_documented()
    {
        Assert.That(KernelSignatureParser.PascalCase("attention_prefill_d64_bf16"), Is.EqualTo("AttentionPrefillD64Bf16"));
        Assert.That(KernelSignatureParser.PascalCase("3d_conv"), Is.EqualTo("K3dConv"));
        Assert.That(KernelSignatureParser.CamelCase("key_count"), Is.EqualTo("keyCount"));
        Assert.That(KernelSignatureParser.CamelCase("n"), Is.EqualTo("n"));
        Assert.That(KernelSignatureParser.ClassNameOf("gla"), Is.EqualTo("CudaGlaKernels"));
    }
}
