using System.Text.Json;

namespace Horizon.Tokenization;

/// <summary>
/// A token matched in the text before the model runs (Hugging Face's added tokens): special tokens such as
/// <c>&lt;|im_end|&gt;</c> and plain added words. <paramref name="LeftStrip"/>/<paramref name="RightStrip"/>: the
/// match takes the white space on that side with it; <paramref name="SingleWord"/>: only a match not touching a
/// word character counts; <paramref name="Normalized"/>: matched in the normalized text instead of the raw text.
/// </summary>
public sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord = false, bool LeftStrip = false, bool RightStrip = false, bool Normalized = false)
{
    internal static AddedToken FromJson(JsonElement token, int id, string path)
    {
        if (!token.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(content.GetString()))
            throw new TokenizerLoadException($"{path}: added token {id} has no content");
        return new AddedToken(id, content.GetString()!, Flag(token, "special"), Flag(token, "single_word"), Flag(token, "lstrip"), Flag(token, "rstrip"), Flag(token, "normalized"));
    }

    private static bool Flag(JsonElement token, string key) => token.TryGetProperty(key, out var value) && value.ValueKind == JsonValueKind.True;
}

/// <summary>
/// Finds added tokens in a text, leftmost first and, among those starting at one place, longest first (the
/// rule of Hugging Face tokenizers). The text between matches is returned for the model to encode.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens
            .Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ThenBy(t => t.Id).ToArray());
    }

    public bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>Pieces of <paramref name="text"/> in order: gaps (Token null) and matched tokens.</summary>
    public List<(string Text, AddedToken? Token)> Split(string text, Func<AddedToken, bool> include)
    {
        var pieces = new List<(string, AddedToken?)>();
        if (IsEmpty || text.Length == 0)
        {
            if (text.Length > 0)
                pieces.Add((text, null));
            return pieces;
        }
        int gapStart = 0;
        int i = 0;
        while (i < text.Length)
        {
            AddedToken? match = null;
            if (_byFirstChar.TryGetValue(text[i], out var candidates))
            {
                foreach (var candidate in candidates)
                {
                    if (!include(candidate) || string.CompareOrdinal(text, i, candidate.Content, 0, candidate.Content.Length) != 0)
                        continue;
                    if (candidate.Content.Length > text.Length - i)
                        continue;
                    if (candidate.SingleWord && !IsSingleWord(text, i, i + candidate.Content.Length))
                        continue;
                    match = candidate;
                    break;
                }
            }
            if (match is null)
            {
                i++;
                continue;
            }
            int start = i;
            int end = i + match.Content.Length;
            if (match.LeftStrip)
            {
                while (start > gapStart && char.IsWhiteSpace(text[start - 1]))
                    start--;
            }
            if (match.RightStrip)
            {
                while (end < text.Length && char.IsWhiteSpace(text[end]))
                    end++;
            }
            if (start > gapStart)
                pieces.Add((text[gapStart..start], null));
            pieces.Add((text[start..end], match));
            gapStart = end;
            i = end;
        }
        if (gapStart < text.Length)
            pieces.Add((text[gapStart..], null));
        return pieces;
    }

    private static bool IsSingleWord(string text, int start, int end)
    {
        bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';
        return (start == 0 || !IsWordChar(text[start - 1]) || !IsWordChar(text[start]))
            && (end == text.Length || !IsWordChar(text[end]) || !IsWordChar(text[end - 1]));
    }
}
