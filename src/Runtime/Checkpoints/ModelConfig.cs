using System.Globalization;
using System.Text.Json;

namespace Horizon;

/// <summary>
/// A Hugging Face <c>config.json</c>. Generated models bind their spec's symbols through it; every missing or
/// mistyped key is a <see cref="ModelLoadException"/> naming the file and the key.
/// </summary>
public sealed class ModelConfig
{
    private readonly JsonElement _root;

    private ModelConfig(string path, JsonElement root)
    {
        Path = path;
        _root = root;
    }

    public string Path { get; }

    public JsonElement Root => _root;

    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path))
            throw new ModelLoadException($"{path}: file not found");
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"{path}: the root is not a JSON object");
            return new ModelConfig(path, document.RootElement.Clone());
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{path}: invalid JSON at line {e.LineNumber + 1}: {FirstLine(e.Message)}");
        }
    }

    public static ModelConfig Parse(string json, string path = "config.json")
    {
        using var document = JsonDocument.Parse(json);
        return new ModelConfig(path, document.RootElement.Clone());
    }

    /// <summary>The <c>architectures</c> list (e.g. <c>LlamaForCausalLM</c>); empty when absent.</summary>
    public IReadOnlyList<string> Architectures
    {
        get
        {
            if (!_root.TryGetProperty("architectures", out var list) || list.ValueKind != JsonValueKind.Array)
                return [];
            return list.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => e.GetString()!).ToArray();
        }
    }

    public string? ModelType => TryGetString("model_type");

    /// <summary>True when the key is present and not null.</summary>
    public bool Has(string key) => Lookup(key, out var value) && value.ValueKind != JsonValueKind.Null;

    /// <summary>
    /// The value of <paramref name="key"/> when present and not null. A key that the root object does not hold and
    /// that contains dots is a path into nested objects: <c>block_decoder.config.hidden_size</c> is
    /// <c>hidden_size</c> of the <c>config</c> object of the <c>block_decoder</c> object (a Block Transformer's
    /// config nests one config per decoder). A key the root holds verbatim always wins.
    /// </summary>
    public bool TryGet(string key, out JsonElement value)
    {
        if (Lookup(key, out value) && value.ValueKind != JsonValueKind.Null)
            return true;
        value = default;
        return false;
    }

    /// <summary>
    /// The value of <paramref name="key"/> as config.json holds it, <c>null</c> included (false only when absent);
    /// dotted keys are paths as in <see cref="TryGet"/>.
    /// </summary>
    public bool TryGetValue(string key, out JsonElement value) => Lookup(key, out value);

    private bool Lookup(string key, out JsonElement value)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (_root.TryGetProperty(key, out value))
            return true;
        if (key.IndexOf('.', StringComparison.Ordinal) < 0)
            return false;
        JsonElement current = _root;
        foreach (string segment in key.Split('.'))
        {
            if (current.ValueKind != JsonValueKind.Object || !current.TryGetProperty(segment, out current))
            {
                value = default;
                return false;
            }
        }
        value = current;
        return true;
    }

    public int GetInt(string key) => TryGetInt(key) ?? throw Missing(key);

    public int? TryGetInt(string key)
    {
        if (!TryGet(key, out var value))
            return null;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int result))
            return result;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out double d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue)
            return (int)d;
        throw new ModelLoadException($"{Path}: key '{key}' must be an integer, found {Describe(value)}");
    }

    public double GetDouble(string key) => TryGetDouble(key) ?? throw Missing(key);

    public double? TryGetDouble(string key)
    {
        if (!TryGet(key, out var value))
            return null;
        if (value.ValueKind == JsonValueKind.Number)
            return value.GetDouble();
        throw new ModelLoadException($"{Path}: key '{key}' must be a number, found {Describe(value)}");
    }

    public bool GetBool(string key) => TryGetBool(key) ?? throw Missing(key);

    public bool? TryGetBool(string key)
    {
        if (!TryGet(key, out var value))
            return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ModelLoadException($"{Path}: key '{key}' must be true or false, found {Describe(value)}"),
        };
    }

    public string? TryGetString(string key) =>
        TryGet(key, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    /// <summary>Token ids that end generation: <c>eos_token_id</c> may be an int or a list.</summary>
    public IReadOnlyList<int> GetTokenIds(string key)
    {
        if (!TryGet(key, out var value))
            return [];
        if (value.ValueKind == JsonValueKind.Number)
            return [value.GetInt32()];
        if (value.ValueKind == JsonValueKind.Array)
            return value.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Number).Select(e => e.GetInt32()).ToArray();
        return [];
    }

    /// <summary>Integer division used by size defaults such as head_dim = hidden_size / num_heads; it must be exact.</summary>
    public int DivideExactly(int dividend, string dividendName, int divisor, string divisorName)
    {
        if (divisor <= 0)
            throw new ModelLoadException($"{Path}: {divisorName} = {divisor} must be positive");
        if (dividend % divisor != 0)
            throw new ModelLoadException($"{Path}: {dividendName} = {dividend} is not divisible by {divisorName} = {divisor}");
        return dividend / divisor;
    }

    /// <summary>Checks a bound size is positive (a zero or negative size in config.json is malformed).</summary>
    public int Positive(int value, string name)
    {
        if (value <= 0)
            throw new ModelLoadException($"{Path}: {name} = {value} must be positive");
        return value;
    }

    private ModelLoadException Missing(string key) => new($"{Path}: required key '{key}' is missing");

    private static string Describe(JsonElement value) =>
        value.ValueKind == JsonValueKind.String ? $"\"{value.GetString()}\"" : value.GetRawText();

    private static string FirstLine(string message)
    {
        int newline = message.IndexOfAny(['\r', '\n']);
        return (newline < 0 ? message : message[..newline]).ToString(CultureInfo.InvariantCulture);
    }
}
