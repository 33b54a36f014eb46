using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Horizon.Tokenization;

/// <summary>
/// GPT-2's map between bytes and printable characters (byte-level BPE vocabularies store tokens in it: a space
/// is 'Ġ', a newline 'Ċ'). Printable Latin-1 bytes stand for themselves; the other 68 bytes map to U+0100 onward.
/// </summary>
public static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = Build();
    private static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, (byte)b)).ToDictionary(p => p.c, p => p.Item2);

    private static char[] Build()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    /// <summary>The character that stands for byte <paramref name="b"/>.</summary>
    public static char Encode(byte b) => ByteToChar[b];

    /// <summary>The text's UTF-8 bytes written in the byte-level alphabet.</summary>
    public static string Encode(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
            chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>
    /// The bytes a token stands for: through the alphabet when every character is in it, else the token's own
    /// UTF-8 (the rule of Hugging Face's ByteLevel decoder, which special tokens such as <c>&lt;|im_end|&gt;</c> meet).
    /// </summary>
    public static byte[] Decode(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out bytes[i]))
                return Encoding.UTF8.GetBytes(token);
        }
        return bytes;
    }
}

/// <summary>
/// A byte-level BPE <c>tokenizer.json</c> (GPT-2, Qwen2, Llama 3 and their kin). Microsoft.ML.Tokenizers 2.0.1
/// reads no tokenizer.json, so this reads the file and builds its <see cref="BpeTokenizer"/> from the vocab and
/// merges; added tokens, the normalizer, the pre-tokenizer (with its regex run over code points, see
/// <see cref="CodePointRegex"/>), <c>ignore_merges</c> and the post-processor's template are applied here, in
/// Hugging Face's order: added tokens in the raw text, normalizer, added tokens marked <c>normalized</c>,
/// pre-tokenizer, then the BPE model on each piece.
/// </summary>
public sealed class ByteLevelBpeTokenizer : HorizonTokenizer
{
    private readonly BpeTokenizer _bpe;
    private readonly Dictionary<string, int> _vocab;
    private readonly string?[] _idToToken;
    private readonly byte[][] _bytes;
    private readonly bool[] _special;
    private readonly AddedTokenMatcher _rawAdded;
    private readonly AddedTokenMatcher _normalizedAdded;
    private readonly Dictionary<string, int> _addedByContent;
    private readonly TextNormalizer? _normalizer;
    private readonly TextPreTokenizer? _preTokenizer;
    private readonly bool _ignoreMerges;
    private readonly int[] _prefix;
    private readonly int[] _suffix;

    private ByteLevelBpeTokenizer(TokenizerConfig config, BpeTokenizer bpe, Dictionary<string, int> vocab, IReadOnlyList<AddedToken> added,
        TextNormalizer? normalizer, TextPreTokenizer? preTokenizer, bool ignoreMerges, int[] prefix, int[] suffix) : base(config)
    {
        _bpe = bpe;
        _vocab = vocab;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _ignoreMerges = ignoreMerges;
        _prefix = prefix;
        _suffix = suffix;
        AddedTokens = added;
        int size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(t => t.Id) + 1);
        _idToToken = new string?[size];
        _bytes = new byte[size][];
        _special = new bool[size];
        foreach (var (token, id) in vocab)
        {
            _idToToken[id] = token;
            _bytes[id] = ByteLevelAlphabet.Decode(token);
        }
        _addedByContent = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var token in added)
        {
            _idToToken[token.Id] = token.Content;
            _bytes[token.Id] = ByteLevelAlphabet.Decode(token.Content);
            _special[token.Id] = token.Special;
            _addedByContent[token.Content] = token.Id;
        }
        for (int id = 0; id < size; id++)
            _bytes[id] ??= [];
        _rawAdded = new AddedTokenMatcher(added.Where(t => !t.Normalized));
        _normalizedAdded = new AddedTokenMatcher(added.Where(t => t.Normalized));
    }

    /// <summary>The added tokens of the file (<c>added_tokens</c>), special or not.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    public override int VocabSize => _idToToken.Length;

    public override Tokenizer Inner => _bpe;

    public override string Kind => "byte-level BPE";

    /// <summary>Loads a byte-level BPE tokenizer.json (and <c>tokenizer_config.json</c> beside it).</summary>
    public static ByteLevelBpeTokenizer LoadFile(string path)
    {
        var config = TokenizerConfig.Load(Path.GetDirectoryName(Path.GetFullPath(path))!);
        if (!TryLoad(path, config, out var tokenizer, out string? problem))
            throw new TokenizerLoadException($"{path}: {problem}");
        return tokenizer!;
    }

    /// <summary>
    /// Loads <paramref name="path"/> when it is byte-level BPE; false with the reason when it is another kind (so
    /// the caller can fall back to tokenizer.model). A malformed byte-level file throws.
    /// </summary>
    internal static bool TryLoad(string path, TokenizerConfig config, out ByteLevelBpeTokenizer? tokenizer, out string? problem)
    {
        tokenizer = null;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerLoadException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message.ReplaceLineEndings(" ")}");
        }
        using (document)
        {
            var root = document.RootElement;
            if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw new TokenizerLoadException($"{path}: no 'model' object");
            string modelType = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "BPE";
            if (modelType != "BPE")
            {
                problem = $"model type '{modelType}' is not supported (Horizon reads byte-level BPE tokenizer.json files and SentencePiece tokenizer.model files)";
                return false;
            }
            try
            {
                var preTokenizer = TextPreTokenizer.FromJson(Get(root, "pre_tokenizer"));
                bool byteLevelDecoder = Get(root, "decoder") is { ValueKind: JsonValueKind.Object } decoder && DecoderIsByteLevel(decoder);
                if (preTokenizer?.IsByteLevel != true && !byteLevelDecoder)
                {
                    problem = "a BPE tokenizer that is not byte-level (no ByteLevel pre-tokenizer or decoder), as SentencePiece conversions are; Horizon reads those from tokenizer.model";
                    return false;
                }
                foreach (var key in new[] { "continuing_subword_prefix", "end_of_word_suffix", "dropout" })
                {
                    if (Get(model, key) is { ValueKind: not JsonValueKind.Null } value && !(value.ValueKind == JsonValueKind.String && value.GetString() == ""))
                        throw new TokenizerLoadException($"{path}: BPE option '{key}' is not supported in a byte-level tokenizer");
                }
                if (Get(model, "byte_fallback").ValueKind == JsonValueKind.True)
                    throw new TokenizerLoadException($"{path}: BPE option 'byte_fallback' is not supported in a byte-level tokenizer");

                var vocab = ReadVocab(model, path);
                var merges = ReadMerges(model, path);
                var added = Get(root, "added_tokens") is { ValueKind: JsonValueKind.Array } list
                    ? list.EnumerateArray().Select(e => AddedToken.FromJson(e, e.GetProperty("id").GetInt32(), path)).ToList()
                    : new List<AddedToken>();
                // tokenizer_config.json's added_tokens_decoder may name tokens tokenizer.json lacks.
                foreach (var token in config.AddedTokens)
                {
                    if (added.All(a => a.Id != token.Id))
                        added.Add(token);
                }
                var (prefix, suffix) = ReadPostProcessor(Get(root, "post_processor"), path);
                var options = new BpeOptions(vocab) { Merges = merges, ByteLevel = true };
                var bpe = BpeTokenizer.Create(options);
                tokenizer = new ByteLevelBpeTokenizer(config, bpe, new Dictionary<string, int>(vocab, StringComparer.Ordinal), added,
                    TextNormalizer.FromJson(Get(root, "normalizer")), preTokenizer, Get(model, "ignore_merges").ValueKind == JsonValueKind.True, prefix, suffix);
                problem = null;
                return true;
            }
            catch (TokenizerLoadException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
            {
                throw new TokenizerLoadException($"{path}: {e.Message}", e);
            }
            catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException or ArgumentException)
            {
                throw new TokenizerLoadException($"{path}: malformed tokenizer.json: {e.Message.ReplaceLineEndings(" ")}", e);
            }
        }
    }

    private static JsonElement Get(JsonElement obj, string key) => obj.TryGetProperty(key, out var value) ? value : default;

    private static bool DecoderIsByteLevel(JsonElement decoder)
    {
        string? type = decoder.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (type == "ByteLevel")
            return true;
        return type == "Sequence" && decoder.TryGetProperty("decoders", out var steps) && steps.EnumerateArray().Any(DecoderIsByteLevel);
    }

    private static Dictionary<string, int> ReadVocab(JsonElement model, string path)
    {
        if (Get(model, "vocab") is not { ValueKind: JsonValueKind.Object } vocab)
            throw new TokenizerLoadException($"{path}: model.vocab is not an object of token → id");
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in vocab.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                throw new TokenizerLoadException($"{path}: vocab entry '{entry.Name}' has no valid id");
            result[entry.Name] = id;
        }
        return result;
    }

    /// <summary>Merges as "left right" strings; the file has them as such strings or (tokenizers ≥ 0.20) as pairs.</summary>
    private static List<string> ReadMerges(JsonElement model, string path)
    {
        var result = new List<string>();
        if (Get(model, "merges") is not { ValueKind: JsonValueKind.Array } merges)
            return result;
        foreach (var merge in merges.EnumerateArray())
        {
            if (merge.ValueKind == JsonValueKind.String)
                result.Add(merge.GetString()!);
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2)
                result.Add(merge[0].GetString() + " " + merge[1].GetString());
            else
                throw new TokenizerLoadException($"{path}: merge {result.Count} is neither \"a b\" nor [\"a\", \"b\"]");
        }
        return result;
    }

    /// <summary>The ids a TemplateProcessing post-processor puts before and after a single sequence.</summary>
    private static (int[] Prefix, int[] Suffix) ReadPostProcessor(JsonElement json, string path)
    {
        if (json.ValueKind != JsonValueKind.Object)
            return ([], []);
        string type = TextNormalizer.TypeOf(json, "post_processor");
        switch (type)
        {
            case "ByteLevel":
                return ([], []);
            case "Sequence":
            {
                var parts = json.GetProperty("processors").EnumerateArray().Select(p => ReadPostProcessor(p, path)).Where(p => p.Prefix.Length + p.Suffix.Length > 0).ToArray();
                if (parts.Length > 1)
                    throw new TokenizerLoadException($"{path}: a post_processor Sequence with more than one template is not supported");
                return parts.Length == 1 ? parts[0] : ([], []);
            }
            case "TemplateProcessing":
            {
                var specials = json.GetProperty("special_tokens");
                var prefix = new List<int>();
                var suffix = new List<int>();
                bool seenSequence = false;
                foreach (var item in json.GetProperty("single").EnumerateArray())
                {
                    if (item.TryGetProperty("Sequence", out _))
                    {
                        seenSequence = true;
                        continue;
                    }
                    string name = item.GetProperty("SpecialToken").GetProperty("id").GetString()!;
                    var ids = specials.GetProperty(name).GetProperty("ids").EnumerateArray().Select(e => e.GetInt32());
                    (seenSequence ? suffix : prefix).AddRange(ids);
                }
                return (prefix.ToArray(), suffix.ToArray());
            }
            default:
                throw new TokenizerLoadException($"{path}: post_processor '{type}' is not supported (supported: TemplateProcessing, ByteLevel, Sequence)");
        }
    }

    public override IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false, bool parseSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens)
            ids.AddRange(_prefix);
        Func<AddedToken, bool> include = parseSpecialTokens ? static _ => true : static t => !t.Special;
        foreach (var (piece, token) in _rawAdded.Split(text, include))
        {
            if (token is not null)
            {
                ids.Add(token.Id);
                continue;
            }
            string normalized = _normalizer?.Normalize(piece) ?? piece;
            foreach (var (inner, innerToken) in _normalizedAdded.Split(normalized, include))
            {
                if (innerToken is not null)
                    ids.Add(innerToken.Id);
                else
                    EncodeModel(inner, ids);
            }
        }
        if (addSpecialTokens)
            ids.AddRange(_suffix);
        return ids;
    }

    private void EncodeModel(string text, List<int> ids)
    {
        var pieces = _preTokenizer is null ? [text] : _preTokenizer.Run(text);
        foreach (var piece in pieces)
        {
            if (piece.Length == 0)
                continue;
            if (_ignoreMerges && _vocab.TryGetValue(ByteLevelAlphabet.Encode(piece), out int whole))
            {
                ids.Add(whole);
                continue;
            }
            ids.AddRange(_bpe.EncodeToIds(piece, considerPreTokenization: false, considerNormalization: false));
        }
    }

    public override ReadOnlySpan<byte> TokenBytes(int id)
    {
        CheckId(id);
        return _bytes[id];
    }

    public override bool IsSpecial(int id) => (uint)id < (uint)_special.Length && _special[id];

    public override int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedByContent.TryGetValue(token, out int added))
            return added;
        return _vocab.TryGetValue(token, out int id) ? id : null;
    }

    public override string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;
}
