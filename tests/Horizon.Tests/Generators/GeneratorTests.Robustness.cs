using Microsoft.CodeAnalysis;
using NUnit.Framework;

namespace Horizon.Tests.Generators;

// A generator that throws takes every output of the compilation with it (CS8785) and says little about why.
// Whatever the text of a spec, the generator must answer with diagnostics, never an exception nor HZ9999, and
// whatever it accepts must compile.
public partial class GeneratorTests
{
    private static GeneratorRunResult RunOnText(string text, out Compilation output)
    {
        var (run, compiled) = GeneratorHarness.Run((TinyPath, text));
        output = compiled;
        return run;
    }

    private static void AssertAnsweredWithDiagnostics(GeneratorRunResult run, string text)
    {
        Assert.That(run.Exception, Is.Null, text);
        Assert.That(run.Diagnostics.Select(d => d.Id), Has.None.EqualTo("HZ9999"), $"{string.Join("; ", run.Diagnostics.Select(d => d.GetMessage()))}\n{text}");
        Assert.That(run.Diagnostics.Select(d => d.Id), Is.Not.Empty, text);
        Assert.That(run.Diagnostics.All(d => d.Location.IsInSource || d.Location.Kind == LocationKind.ExternalFile), text);
    }

    [Test]
    public void Every_truncation_of_a_spec_is_a_diagnostic_not_an_exception()
    {
        string spec = File.ReadAllText(Path.Combine(RepositoryPaths.Models, "qwen2.model.json")).TrimEnd();
        for (int length = 0; length < spec.Length; length++)
        {
            string truncated = spec[..length];
            var run = RunOnText(truncated, out _);
            AssertAnsweredWithDiagnostics(run, truncated);
            Assert.That(run.GeneratedSources, Is.Empty);
        }
    }

    [Test]
    public void Truncations_of_the_two_level_spec_are_diagnostics_not_exceptions()
    {
        // Every 5th prefix (the whole file would take thousands of runs): cuts inside "levels", its sections and symbols.
        string spec = File.ReadAllText(Path.Combine(RepositoryPaths.Models, "block_transformer.model.json")).TrimEnd();
        for (int length = 0; length < spec.Length; length += 5)
        {
            string truncated = spec[..length];
            var run = RunOnText(truncated, out _);
            AssertAnsweredWithDiagnostics(run, truncated);
            Assert.That(run.GeneratedSources, Is.Empty);
        }
    }

    [TestCase(nameof(TinySpec))]
    [TestCase(nameof(KindsSpec))]
    [TestCase(nameof(LevelsSpec))]
    public void Random_edits_of_a_spec_yield_diagnostics_or_code_that_compiles(string specName)
    {
        string spec = specName switch
        {
            nameof(KindsSpec) => KindsSpec,
            nameof(LevelsSpec) => LevelsSpec,
            _ => TinySpec,
        };
        // Characters that make JSON and spec mistakes: structure, quotes, escapes, digits, name characters,
        // line breaks (including the ones only C# and Roslyn treat as such) and a lone surrogate.
        const string alphabet = "{}[]:,\"\\/ \t\n\r0123456789-+.eEaxyz_{layer}tfnu\u2028\u0085\uD800é";
        var random = new Random(20251129);
        int compiled = 0;
        for (int trial = 0; trial < 400; trial++)
        {
            var chars = spec.ToCharArray().ToList();
            int edits = random.Next(1, 4);
            for (int e = 0; e < edits; e++)
            {
                int at = random.Next(chars.Count);
                switch (random.Next(3))
                {
                    case 0: chars[at] = alphabet[random.Next(alphabet.Length)]; break;
                    case 1: chars.RemoveAt(at); break;
                    default: chars.Insert(at, alphabet[random.Next(alphabet.Length)]); break;
                }
            }
            string text = new(chars.ToArray());
            var run = RunOnText(text, out var output);
            Assert.That(run.Exception, Is.Null, text);
            Assert.That(run.Diagnostics.Select(d => d.Id), Has.None.EqualTo("HZ9999"), text);
            if (run.Diagnostics.Length == 0)
            {
                compiled++;
                Assert.That(GeneratorHarness.CompileProblems(output), Is.Empty, text);
            }
        }
        TestContext.Out.WriteLine($"{compiled} of 400 edited specs were valid and compiled");
    }

    [TestCase("")]
    [TestCase("   \n ")]
    [TestCase("[]")]
    [TestCase("null")]
    [TestCase("{}")]
    [TestCase("{\"model\": 1}")]
    [TestCase("\uFEFF{")]
    [TestCase("{\"a\":\"\\uZZZZ\"}")]
    [TestCase("{\"symbols\": {\"x\": {\"default\": \"x * x\"}}}")]
    [TestCase("{\"symbols\": {\"x\": {\"default\": 99999999999999999999999}}, \"model\": \"M\"}")]
    [TestCase("{\"symbols\": {\"x\": {\"type\": \"float\", \"default\": 1e999}}}")]
    [TestCase("{\"symbols\": {\"x\": {\"type\": \"float\", \"default\": \"x\"}}}")]
    [TestCase("{\"symbols\": {\"x\": {\"type\": \"float\", \"default\": null}, \"y\": {\"type\": \"float\", \"default\": \"x\"}}}")]
    [TestCase("{\"symbols\": {\"x\": {\"default\": \"2 round_up_to\"}, \"y\": {\"default\": \"3 // // 2\"}, \"z\": {\"default\": null}}}")]
    [TestCase("{\"symbols\": {\"x\": {\"default\": \"2147483647 round_up_to 2\"}}, \"supported_config_values\": {\"a\": [[1]], \"b\": []}}")]
    [TestCase("{\"levels\": 1}")]
    [TestCase("{\"levels\": {}, \"embedding\": {}, \"blocks\": [], \"final_norm\": null}")]
    [TestCase("{\"levels\": {\"block_decoder\": [], \"token_decoder\": {\"embedding\": {\"kind\": \"lookup_concat\"}, \"prefix_projection\": 3}}}")]
    [TestCase("{\"levels\": {\"block_decoder\": {\"embedding\": {\"pad_token\": 1e99, \"block_length\": 0}}}}")]
    [TestCase("{\"symbols\": {\"x\": {\"type\": \"gelu\", \"default\": 3}, \"y\": {\"type\": \"gelu\", \"config\": \".\"}}}")]
    public void Odd_inputs_are_diagnostics(string text)
    {
        AssertAnsweredWithDiagnostics(RunOnText(text, out _), text);
    }

    [Test]
    public void Deep_nesting_is_refused_without_overflowing_the_stack()
    {
        string text = new string('[', 100_000) + new string(']', 100_000);
        var run = RunOnText(text, out _);
        AssertAnsweredWithDiagnostics(run, "deeply nested arrays");
        Assert.That(run.Diagnostics.Single().GetMessage(), Does.Contain("nested more than 64 deep"));
    }
}
