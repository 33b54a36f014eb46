namespace Horizon.Tests;

/// <summary>
/// A model directory for generation tests: the random-weight qwen2-bias-tied checkpoint (320 ids) with the
/// 300-id byte-level tokenizer of tests/golden/tokenizers/small (ChatML template, generation_config.json).
/// Random weights: only mechanics can be tested with it, not the quality of the text.
/// </summary>
public static class GenerationTestModel
{
    private static readonly Lazy<string> Dir = new(Build);

    /// <summary>The directory (built once per test run under the temp folder).</summary>
    public static string Directory => Dir.Value;

    public static HorizonModel Load() => HorizonModel.Load(Directory);

    private static string Build()
    {
        string target = Path.Combine(Path.GetTempPath(), "horizon-generation-" + Environment.ProcessId);
        System.IO.Directory.CreateDirectory(target);
        foreach (var source in new[] { Path.Combine(RepositoryPaths.Golden, "qwen2-bias-tied"), Path.Combine(RepositoryPaths.Golden, "tokenizers", "small") })
        {
            foreach (var file in System.IO.Directory.GetFiles(source))
            {
                if (Path.GetFileName(file) != "expected.json")
                    File.Copy(file, Path.Combine(target, Path.GetFileName(file)), overwrite: true);
            }
        }
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { System.IO.Directory.Delete(target, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        return target;
    }
}
