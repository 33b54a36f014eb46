using System.Collections.Concurrent;

namespace Horizon;

/// <summary>
/// Maps config.json <c>architectures</c> names to generated model loaders. Generated models register themselves
/// from a module initializer, so loading by directory works for every spec compiled into the process.
/// </summary>
public static class ModelRegistry
{
    private static readonly ConcurrentDictionary<string, Func<ModelDirectory, ICausalLanguageModel>> Loaders = new(StringComparer.Ordinal);

    public static void Register(string architecture, Func<ModelDirectory, ICausalLanguageModel> load) => Loaders[architecture] = load;

    public static IReadOnlyCollection<string> Architectures => Loaders.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();

    /// <summary>Loads a Hugging Face model directory with the generated model of its architecture.</summary>
    public static ICausalLanguageModel Load(string directory)
    {
        var model = ModelDirectory.Open(directory);
        try
        {
            var architectures = model.Config.Architectures;
            if (architectures.Count == 0)
                throw new ModelLoadException($"{model.Config.Path}: no 'architectures' entry, so the model kind is unknown");
            foreach (var architecture in architectures)
            {
                if (Loaders.TryGetValue(architecture, out var load))
                    return load(model);
            }
            throw new ModelLoadException($"{model.Config.Path}: unsupported architecture '{string.Join(", ", architectures)}' (supported: {string.Join(", ", Architectures)})");
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
