using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Horizon.Tokenization;

/// <summary>A <c>normalizer</c> of tokenizer.json: NFC/NFD/NFKC/NFKD, Lowercase, Replace, Prepend, Strip, Sequence.</summary>
internal abstract class TextNormalizer
{
    public abstract string Normalize(string text);

    public static TextNormalizer? FromJson(JsonElement json)
    {
        if (json.ValueKind == JsonValueKind.Null)
            return null;
        string type = TypeOf(json, "normalizer");
        return type switch
        {
            "NFC" => new Unicode(NormalizationForm.FormC),
            "NFD" => new Unicode(NormalizationForm.FormD),
            "NFKC" => new Unicode(NormalizationForm.FormKC),
            "NFKD" => new Unicode(NormalizationForm.FormKD),
            "Lowercase" => new Lowercase(),
            "Replace" => new Replace(PatternOf(json, "Replace normalizer"), json.GetProperty("content").GetString() ?? ""),
            "Prepend" => new Prepend(json.GetProperty("prepend").GetString() ?? ""),
            "Strip" => new Strip(Flag(json, "strip_left"), Flag(json, "strip_right")),
            "Sequence" => new Sequence(json.GetProperty("normalizers").EnumerateArray().Select(FromJson).OfType<TextNormalizer>().ToArray()),
            _ => throw new TokenizerLoadException($"normalizer '{type}' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Strip, Sequence)"),
        };
    }

    internal static string TypeOf(JsonElement json, string what) =>
        json.ValueKind == JsonValueKind.Object && json.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String
            ? type.GetString()!
            : throw new TokenizerLoadException($"a {what} without a 'type'");

    internal static bool Flag(JsonElement json, string key) => json.TryGetProperty(key, out var value) && value.ValueKind == JsonValueKind.True;

    /// <summary>A Split/Replace <c>pattern</c>: <c>{"String": s}</c> (literal) or <c>{"Regex": r}</c>.</summary>
    internal static string PatternOf(JsonElement json, string what)
    {
        if (json.TryGetProperty("pattern", out var pattern) && pattern.ValueKind == JsonValueKind.Object)
        {
            if (pattern.TryGetProperty("String", out var literal) && literal.ValueKind == JsonValueKind.String)
                return Regex.Escape(literal.GetString()!);
            if (pattern.TryGetProperty("Regex", out var regex) && regex.ValueKind == JsonValueKind.String)
                return regex.GetString()!;
        }
        throw new TokenizerLoadException($"a {what} without a String or Regex pattern");
    }

    private sealed class Unicode(NormalizationForm form) : TextNormalizer
    {
        public override string Normalize(string text) => text.IsNormalized(form) ? text : text.Normalize(form);
    }

    private sealed class Lowercase : TextNormalizer
    {
        public override string Normalize(string text) => text.ToLowerInvariant();
    }

    private sealed class Replace(string pattern, string content) : TextNormalizer
    {
        private readonly CodePointRegex _regex = new(pattern);

        public override string Normalize(string text)
        {
            var matches = _regex.Matches(text);
            if (matches.Count == 0)
                return text;
            var result = new StringBuilder(text.Length);
            int last = 0;
            foreach (var (start, length) in matches)
            {
                result.Append(text, last, start - last).Append(content);
                last = start + length;
            }
            return result.Append(text, last, text.Length - last).ToString();
        }
    }

    private sealed class Prepend(string prefix) : TextNormalizer
    {
        public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
    }

    private sealed class Strip(bool left, bool right) : TextNormalizer
    {
        public override string Normalize(string text) => (left, right) switch
        {
            (true, true) => text.Trim(),
            (true, false) => text.TrimStart(),
            (false, true) => text.TrimEnd(),
            _ => text,
        };
    }

    private sealed class Sequence(TextNormalizer[] steps) : TextNormalizer
    {
        public override string Normalize(string text)
        {
            foreach (var step in steps)
                text = step.Normalize(text);
            return text;
        }
    }
}

/// <summary>
/// A <c>pre_tokenizer</c> of tokenizer.json: ByteLevel, Split, Digits, Sequence. Each step splits every piece
/// the previous step produced, as Hugging Face tokenizers does.
/// </summary>
internal abstract class TextPreTokenizer
{
    /// <summary>The GPT-2 pattern that ByteLevel splits with when <c>use_regex</c> is true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Splits one piece, appending the results to <paramref name="output"/>.</summary>
    public abstract void Split(string piece, List<string> output);

    /// <summary>True when this pre-tokenizer (or a step of it) is ByteLevel.</summary>
    public virtual bool IsByteLevel => false;

    public List<string> Run(string text)
    {
        var output = new List<string>();
        Split(text, output);
        return output;
    }

    public static TextPreTokenizer? FromJson(JsonElement json)
    {
        if (json.ValueKind == JsonValueKind.Null)
            return null;
        string type = TextNormalizer.TypeOf(json, "pre_tokenizer");
        return type switch
        {
            "ByteLevel" => new ByteLevel(TextNormalizer.Flag(json, "add_prefix_space"), !json.TryGetProperty("use_regex", out var useRegex) || useRegex.ValueKind != JsonValueKind.False),
            "Split" => new PatternSplit(new CodePointRegex(TextNormalizer.PatternOf(json, "Split pre-tokenizer")), ParseBehavior(json), TextNormalizer.Flag(json, "invert")),
            "Digits" => new PatternSplit(new CodePointRegex(@"\p{Nd}"), TextNormalizer.Flag(json, "individual_digits") ? Behavior.Isolated : Behavior.Contiguous, false),
            "Sequence" => new Sequence(json.GetProperty("pretokenizers").EnumerateArray().Select(FromJson).OfType<TextPreTokenizer>().ToArray()),
            _ => throw new TokenizerLoadException($"pre-tokenizer '{type}' is not supported (supported: ByteLevel, Split, Digits, Sequence)"),
        };
    }

    internal enum Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

    private static Behavior ParseBehavior(JsonElement json)
    {
        string? name = json.TryGetProperty("behavior", out var b) ? b.GetString() : null;
        return name switch
        {
            "Removed" => Behavior.Removed,
            "Isolated" => Behavior.Isolated,
            "MergedWithPrevious" => Behavior.MergedWithPrevious,
            "MergedWithNext" => Behavior.MergedWithNext,
            "Contiguous" => Behavior.Contiguous,
            _ => throw new TokenizerLoadException($"Split pre-tokenizer behavior '{name}' is not supported"),
        };
    }

    private sealed class ByteLevel(bool addPrefixSpace, bool useRegex) : TextPreTokenizer
    {
        private static readonly CodePointRegex Gpt2 = new(Gpt2Pattern);

        public override bool IsByteLevel => true;

        public override void Split(string piece, List<string> output)
        {
            if (addPrefixSpace && !piece.StartsWith(' '))
                piece = " " + piece;
            if (!useRegex)
            {
                output.Add(piece);
                return;
            }
            PatternSplit.SplitWith(Gpt2, Behavior.Isolated, invert: false, piece, output);
        }
    }

    private sealed class PatternSplit(CodePointRegex regex, Behavior behavior, bool invert) : TextPreTokenizer
    {
        public override void Split(string piece, List<string> output) => SplitWith(regex, behavior, invert, piece, output);

        internal static void SplitWith(CodePointRegex regex, Behavior behavior, bool invert, string piece, List<string> output)
        {
            if (piece.Length == 0)
                return;
            // Segments covering the piece, each a match (delimiter) or a gap.
            var segments = new List<(int Start, int Length, bool IsMatch)>();
            int last = 0;
            foreach (var (start, length) in regex.Matches(piece))
            {
                if (start > last)
                    segments.Add((last, start - last, invert));
                segments.Add((start, length, !invert));
                last = start + length;
            }
            if (last < piece.Length)
                segments.Add((last, piece.Length - last, invert));

            switch (behavior)
            {
                case Behavior.Isolated:
                    foreach (var s in segments)
                        output.Add(piece.Substring(s.Start, s.Length));
                    break;
                case Behavior.Removed:
                    foreach (var s in segments)
                    {
                        if (!s.IsMatch)
                            output.Add(piece.Substring(s.Start, s.Length));
                    }
                    break;
                case Behavior.MergedWithPrevious:
                {
                    // "the-final--countdown" split on '-': "the-", "final-", "-", "countdown".
                    int start = 0;
                    foreach (var s in segments)
                    {
                        if (!s.IsMatch)
                            continue;
                        int end = s.Start + s.Length;
                        output.Add(piece[start..end]);
                        start = end;
                    }
                    if (start < piece.Length)
                        output.Add(piece[start..]);
                    break;
                }
                case Behavior.MergedWithNext:
                {
                    // "the-final--countdown" split on '-': "the", "-final", "-", "-countdown".
                    int start = 0;
                    foreach (var s in segments)
                    {
                        if (!s.IsMatch || s.Start == start)
                            continue;
                        output.Add(piece[start..s.Start]);
                        start = s.Start;
                    }
                    if (start < piece.Length)
                        output.Add(piece[start..]);
                    break;
                }
                case Behavior.Contiguous:
                {
                    int i = 0;
                    while (i < segments.Count)
                    {
                        int j = i;
                        while (j + 1 < segments.Count && segments[j + 1].IsMatch == segments[i].IsMatch && segments[i].IsMatch)
                            j++;
                        int end = segments[j].Start + segments[j].Length;
                        output.Add(piece[segments[i].Start..end]);
                        i = j + 1;
                    }
                    break;
                }
            }
        }
    }

    private sealed class Sequence(TextPreTokenizer[] steps) : TextPreTokenizer
    {
        public override bool IsByteLevel => steps.Any(s => s.IsByteLevel);

        public override void Split(string piece, List<string> output)
        {
            var current = new List<string> { piece };
            foreach (var step in steps)
            {
                var next = new List<string>();
                foreach (var p in current)
                    step.Split(p, next);
                current = next;
            }
            output.AddRange(current);
        }
    }
}
