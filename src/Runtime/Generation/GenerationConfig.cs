using System.Text.Json;
using Horizon.Tokenization;

namespace Horizon.Generation;

/// <summary>
/// A model's generation defaults: <c>generation_config.json</c> (sampling settings, <c>eos_token_id</c> as an int
/// or a list), with <c>config.json</c>'s <c>eos_token_id</c> and then the tokenizer's <c>eos_token</c> as fallbacks for
/// the stop ids.
/// </summary>
public sealed record GenerationConfig
{
    public static GenerationConfig Empty { get; } = new();

    /// <summary>Ids that end generation.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public int? BosTokenId { get; init; }
    public bool? DoSample { get; init; }
    public float? Temperature { get; init; }
    public float? TopP { get; init; }
    public int? TopK { get; init; }
    public float? MinP { get; init; }
    public float? RepetitionPenalty { get; init; }
    public int? MaxNewTokens { get; init; }

    /// <summary>
    /// Reads <c>generation_config.json</c> and <c>config.json</c> of <paramref name="directory"/>; EOS ids come from
    /// the first of generation_config.json, config.json and <paramref name="tokenizer"/>'s eos_token that has any.
    /// </summary>
    public static GenerationConfig Load(string directory, HorizonTokenizer? tokenizer = null)
    {
        var config = Empty;
        string generationPath = Path.Combine(directory, "generation_config.json");
        if (File.Exists(generationPath))
            config = Parse(File.ReadAllText(generationPath), generationPath);
        if (config.EosTokenIds.Count == 0)
        {
            string configPath = Path.Combine(directory, "config.json");
            if (File.Exists(configPath))
            {
                var ids = ModelConfig.Load(configPath).GetTokenIds("eos_token_id");
                if (ids.Count > 0)
                    config = config with { EosTokenIds = ids };
            }
        }
        if (config.EosTokenIds.Count == 0 && tokenizer?.EosTokenId is int eos)
            config = config with { EosTokenIds = [eos] };
        return config;
    }

    /// <summary>Parses the text of a <c>generation_config.json</c>.</summary>
    public static GenerationConfig Parse(string json, string path = "generation_config.json")
    {
        try
        {
            using var document = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true });
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new HorizonException($"{path}: the root is not a JSON object");
            return new GenerationConfig
            {
                EosTokenIds = Ids(root, "eos_token_id", path),
                BosTokenId = Ids(root, "bos_token_id", path) is [int bos, ..] ? bos : null,
                DoSample = root.TryGetProperty("do_sample", out var s) && s.ValueKind is JsonValueKind.True or JsonValueKind.False ? s.GetBoolean() : null,
                Temperature = Number(root, "temperature"),
                TopP = Number(root, "top_p"),
                TopK = Number(root, "top_k") is float k ? (int)k : null,
                MinP = Number(root, "min_p"),
                RepetitionPenalty = Number(root, "repetition_penalty"),
                MaxNewTokens = Number(root, "max_new_tokens") is float m ? (int)m : null,
            };
        }
        catch (JsonException e)
        {
            throw new HorizonException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message.ReplaceLineEndings(" ")}");
        }
    }

    private static IReadOnlyList<int> Ids(JsonElement root, string key, string path)
    {
        if (!root.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null)
            return [];
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int id))
            return [id];
        if (value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out _)))
            return value.EnumerateArray().Select(e => e.GetInt32()).ToArray();
        throw new HorizonException($"{path}: '{key}' must be an id or a list of ids");
    }

    private static float? Number(JsonElement root, string key) =>
        root.TryGetProperty(key, out var value) && value.ValueKind == JsonValueKind.Number ? (float)value.GetDouble() : null;

    /// <summary>
    /// Options with this config's sampling defaults (greedy when <c>do_sample</c> is false) and stop ids;
    /// <paramref name="baseOptions"/> supplies everything else.
    /// </summary>
    public GenerationOptions ToOptions(GenerationOptions? baseOptions = null)
    {
        var options = baseOptions ?? new GenerationOptions();
        if (DoSample == false)
            options = options with { Temperature = 0 };
        else
        {
            if (Temperature is float t)
                options = options with { Temperature = t };
            if (TopP is float p && p is > 0 and <= 1)
                options = options with { TopP = p };
            if (TopK is int k && k >= 0)
                options = options with { TopK = k };
            if (MinP is float minP && minP is >= 0 and <= 1)
                options = options with { MinP = minP };
        }
        if (RepetitionPenalty is float r && r > 0)
            options = options with { RepetitionPenalty = r };
        if (MaxNewTokens is int max && max > 0)
            options = options with { MaxTokens = max };
        return options with { StopTokenIds = options.StopTokenIds ?? EosTokenIds };
    }
}
