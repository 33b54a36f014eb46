using System.Globalization;
using System.Text.Json;

namespace Horizon.Tokenization;

/// <summary>
/// The parts of a Hugging Face <c>tokenizer_config.json</c> that Horizon reads: the chat template, the
/// special tokens' text, whether encoding adds BOS/EOS, and <c>added_tokens_decoder</c>.
/// </summary>
public sealed record TokenizerConfig
{
    /// <summary>No file: no template, no special tokens named.</summary>
    public static TokenizerConfig Empty { get; } = new();

    /// <summary>The file this came from, or null.</summary>
    public string? Path { get; init; }

    /// <summary>The Jinja chat template (the one named <c>default</c> when the file has several), or null.</summary>
    public string? ChatTemplate { get; init; }

    public string? BosToken { get; init; }
    public string? EosToken { get; init; }
    public string? PadToken { get; init; }
    public string? UnknownToken { get; init; }

    /// <summary><c>add_bos_token</c> (null when absent: the tokenizer's own post-processor decides).</summary>
    public bool? AddBosToken { get; init; }

    /// <summary><c>add_eos_token</c> (null when absent).</summary>
    public bool? AddEosToken { get; init; }

    /// <summary><c>model_max_length</c> when it is a sensible number (transformers writes 1e30 for "none").</summary>
    public int? ModelMaxLength { get; init; }

    /// <summary>The <c>added_tokens_decoder</c> entries, by id.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; init; } = [];

    /// <summary>Reads <c>tokenizer_config.json</c> of <paramref name="directory"/>; <see cref="Empty"/> when absent.</summary>
    public static TokenizerConfig Load(string directory)
    {
        string path = System.IO.Path.Combine(directory, "tokenizer_config.json");
        if (!File.Exists(path))
            return Empty;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            return Parse(document.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new TokenizerLoadException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message.ReplaceLineEndings(" ")}");
        }
    }

    /// <summary>Reads the settings from a parsed <c>tokenizer_config.json</c>.</summary>
    public static TokenizerConfig Parse(JsonElement root, string path = "tokenizer_config.json")
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new TokenizerLoadException($"{path}: the root is not a JSON object");
        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens_decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object)
        {
            foreach (var entry in decoder.EnumerateObject())
            {
                if (!int.TryParse(entry.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id) || entry.Value.ValueKind != JsonValueKind.Object)
                    throw new TokenizerLoadException($"{path}: added_tokens_decoder entry '{entry.Name}' is not an id with a token object");
                added.Add(AddedToken.FromJson(entry.Value, id, path));
            }
        }
        int? maxLength = null;
        if (root.TryGetProperty("model_max_length", out var max) && max.ValueKind == JsonValueKind.Number && max.TryGetDouble(out double m) && m is > 0 and < int.MaxValue)
            maxLength = (int)m;
        return new TokenizerConfig
        {
            Path = path,
            ChatTemplate = ReadTemplate(root, path),
            BosToken = TokenText(root, "bos_token"),
            EosToken = TokenText(root, "eos_token"),
            PadToken = TokenText(root, "pad_token"),
            UnknownToken = TokenText(root, "unk_token"),
            AddBosToken = Bool(root, "add_bos_token"),
            AddEosToken = Bool(root, "add_eos_token"),
            ModelMaxLength = maxLength,
            AddedTokens = added.OrderBy(t => t.Id).ToArray(),
        };
    }

    private static string? ReadTemplate(JsonElement root, string path)
    {
        if (!root.TryGetProperty("chat_template", out var template))
            return null;
        switch (template.ValueKind)
        {
            case JsonValueKind.String:
                return template.GetString();
            case JsonValueKind.Null:
                return null;
            case JsonValueKind.Array:
                string? first = null;
                foreach (var item in template.EnumerateArray())
                {
                    if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("template", out var text) || text.ValueKind != JsonValueKind.String)
                        continue;
                    string? name = item.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
                    if (name == "default")
                        return text.GetString();
                    first ??= text.GetString();
                }
                return first;
            default:
                throw new TokenizerLoadException($"{path}: chat_template must be a string or a list of named templates");
        }
    }

    /// <summary>A special token written as a string or as an AddedToken object (<c>{"content": ...}</c>).</summary>
    private static string? TokenText(JsonElement root, string key)
    {
        if (!root.TryGetProperty(key, out var value))
            return null;
        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Object when value.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String => content.GetString(),
            _ => null,
        };
    }

    private static bool? Bool(JsonElement root, string key) =>
        root.TryGetProperty(key, out var value) && value.ValueKind is JsonValueKind.True or JsonValueKind.False ? value.GetBoolean() : null;
}
