using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Horizon.Tokenization;

/// <summary>
/// A regular expression run over code points, as Rust's regex engines (Hugging Face tokenizers) run it. .NET
/// matches UTF-16 units, so a character outside the BMP (𝔘, 𠀀, an emoji) is two surrogates of category Cs and
/// <c>\p{L}</c> would not match it. Before matching, each such character is replaced by one BMP stand-in of the
/// same Unicode general category (𝔘 → À, an emoji → ©), and match positions are mapped back: the pre-tokenizer
/// patterns of GPT-2, Qwen2 and Llama 3 (written with <c>\p{L}</c>, <c>\p{N}</c>, <c>\s</c>, counted repeats) then
/// split exactly as they do in Rust. (A pattern naming astral characters literally is outside this rule.)
/// </summary>
internal sealed class CodePointRegex
{
    private readonly Regex _regex;

    public CodePointRegex(string pattern)
    {
        Pattern = pattern;
        try
        {
            _regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled, TimeSpan.FromSeconds(10));
        }
        catch (ArgumentException e)
        {
            throw new TokenizerLoadException($"pre-tokenizer pattern '{pattern}' is not a regular expression .NET reads: {e.Message.ReplaceLineEndings(" ")}");
        }
    }

    public string Pattern { get; }

    /// <summary>The matches of the pattern in <paramref name="text"/> as (start, length) in UTF-16 units of the original text.</summary>
    public List<(int Start, int Length)> Matches(string text)
    {
        var result = new List<(int, int)>();
        if (!HasSurrogatePair(text))
        {
            for (var m = _regex.Match(text); m.Success; m = m.NextMatch())
            {
                if (m.Length > 0)
                    result.Add((m.Index, m.Length));
            }
            return result;
        }
        // One stand-in char per code point; offsets[i] is where stand-in i starts in the original.
        var mapped = new StringBuilder(text.Length);
        var offsets = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length; i++)
        {
            offsets.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                mapped.Append(StandIn(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]))));
                i++;
            }
            else
            {
                mapped.Append(text[i]);
            }
        }
        offsets.Add(text.Length);
        for (var m = _regex.Match(mapped.ToString()); m.Success; m = m.NextMatch())
        {
            if (m.Length > 0)
                result.Add((offsets[m.Index], offsets[m.Index + m.Length] - offsets[m.Index]));
        }
        return result;
    }

    private static bool HasSurrogatePair(string text)
    {
        for (int i = 0; i + 1 < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && char.IsLowSurrogate(text[i + 1]))
                return true;
        }
        return false;
    }

    /// <summary>A BMP character of the same general category (and not an ASCII letter, which a pattern might name).</summary>
    private static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\u00C0',
        UnicodeCategory.LowercaseLetter => '\u00E0',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\u05D0',
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u00B2',
        UnicodeCategory.ConnectorPunctuation => '\u203F',
        UnicodeCategory.DashPunctuation => '\u2010',
        UnicodeCategory.OpenPunctuation => '\u2045',
        UnicodeCategory.ClosePunctuation => '\u2046',
        UnicodeCategory.InitialQuotePunctuation => '\u00AB',
        UnicodeCategory.FinalQuotePunctuation => '\u00BB',
        UnicodeCategory.OtherPunctuation => '\u00B7',
        UnicodeCategory.MathSymbol => '\u00AC',
        UnicodeCategory.CurrencySymbol => '\u00A2',
        UnicodeCategory.ModifierSymbol => '\u00B4',
        UnicodeCategory.OtherSymbol => '\u00A9',
        UnicodeCategory.Format => '\u00AD',
        UnicodeCategory.PrivateUse => '\uE000',
        _ => '\u0378', // unassigned
    };
}
