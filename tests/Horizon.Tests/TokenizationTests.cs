using System.Text;
using System.Text.Json;
using Horizon.Tokenization;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// Tokenizer ids and decoded text against the Hugging Face tokenizers library (byte-level BPE fixtures) and the
/// sentencepiece library (tokenizer.model fixture), on the strings of tests/golden/tokenizers/cases.json.
/// </summary>
public class TokenizationTests
{
    private static string Fixture(string name) => Path.Combine(RepositoryPaths.Golden, "tokenizers", name);

    public sealed record Case(string Text, int[] Ids, int[]? IdsWithSpecialTokens, string Decoded, string? DecodedSkipSpecial);

    public static Case[] ReadCases(string variant)
    {
        using var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Fixture(variant), "expected.json")));
        return json.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("text").GetString()!,
            c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.TryGetProperty("ids_with_special_tokens", out var w) ? w.EnumerateArray().Select(e => e.GetInt32()).ToArray() : null,
            c.GetProperty("decoded").GetString()!,
            c.TryGetProperty("decoded_skip_special", out var s) ? s.GetString() : null)).ToArray();
    }

    private static string Show(string text) => JsonSerializer.Serialize(text);

    [TestCase("gpt2")]
    [TestCase("prefix")]
    [TestCase("qwen2")]
    [TestCase("llama3")]
    public void Byte_level_bpe_ids_and_text_equal_the_tokenizers_library(string variant)
    {
        var tokenizer = HorizonTokenizer.Load(Fixture(variant));
        Assert.That(tokenizer, Is.TypeOf<ByteLevelBpeTokenizer>());
        var cases = ReadCases(variant);
        Assert.That(cases, Has.Length.GreaterThanOrEqualTo(20));
        var failures = new List<string>();
        foreach (var c in cases)
        {
            var ids = tokenizer.Encode(c.Text);
            if (!ids.SequenceEqual(c.Ids))
                failures.Add($"{Show(c.Text)}: ids [{string.Join(",", ids)}], expected [{string.Join(",", c.Ids)}]");
            var withSpecial = tokenizer.Encode(c.Text, addSpecialTokens: true);
            if (!withSpecial.SequenceEqual(c.IdsWithSpecialTokens!))
                failures.Add($"{Show(c.Text)}: with special tokens [{string.Join(",", withSpecial)}], expected [{string.Join(",", c.IdsWithSpecialTokens!)}]");
            string decoded = tokenizer.Decode(c.Ids);
            if (decoded != c.Decoded)
                failures.Add($"{Show(c.Text)}: decoded {Show(decoded)}, expected {Show(c.Decoded)}");
            string skipped = tokenizer.Decode(c.Ids, skipSpecialTokens: true);
            if (skipped != c.DecodedSkipSpecial)
                failures.Add($"{Show(c.Text)}: decoded without special tokens {Show(skipped)}, expected {Show(c.DecodedSkipSpecial!)}");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
    }

    [Test]
    public void SentencePiece_ids_and_text_equal_the_sentencepiece_library()
    {
        var tokenizer = HorizonTokenizer.Load(Fixture("sentencepiece"));
        Assert.That(tokenizer, Is.TypeOf<SentencePieceModelTokenizer>());
        var failures = new List<string>();
        foreach (var c in ReadCases("sentencepiece"))
        {
            var ids = tokenizer.Encode(c.Text);
            if (!ids.SequenceEqual(c.Ids))
                failures.Add($"{Show(c.Text)}: ids [{string.Join(",", ids)}], expected [{string.Join(",", c.Ids)}]");
            string decoded = tokenizer.Decode(c.Ids);
            if (decoded != c.Decoded)
                failures.Add($"{Show(c.Text)}: decoded {Show(decoded)}, expected {Show(c.Decoded)}");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
    }

    [TestCase("qwen2")]
    [TestCase("sentencepiece")]
    public void Streaming_decoding_one_token_at_a_time_equals_decoding_at_once(string variant)
    {
        var tokenizer = HorizonTokenizer.Load(Fixture(variant));
        foreach (var c in ReadCases(variant))
        {
            var decoder = tokenizer.CreateDecoder(atSequenceStart: true);
            var text = new StringBuilder();
            foreach (int id in c.Ids)
                text.Append(decoder.Append(id));
            text.Append(decoder.Flush());
            Assert.That(text.ToString(), Is.EqualTo(tokenizer.Decode(c.Ids)), Show(c.Text));
        }
    }

    [Test]
    public void A_character_split_over_byte_tokens_comes_out_whole_with_its_last_byte()
    {
        var tokenizer = HorizonTokenizer.Load(Fixture("qwen2"));
        // 👋 is four bytes; the small vocabulary spells it with several byte tokens.
        var ids = tokenizer.Encode("👋");
        Assert.That(ids.Count, Is.GreaterThan(1));
        var decoder = tokenizer.CreateDecoder();
        var outputs = ids.Select(decoder.Append).ToArray();
        Assert.That(outputs[..^1], Is.All.Empty);
        Assert.That(outputs[^1], Is.EqualTo("👋"));
        Assert.That(decoder.Flush(), Is.Empty);
    }

    [Test]
    public void Special_tokens_in_text_are_parsed_unless_told_not_to()
    {
        var tokenizer = HorizonTokenizer.Load(Fixture("qwen2"));
        int imEnd = tokenizer.TokenToId("<|im_end|>")!.Value;
        Assert.That(tokenizer.Encode("a<|im_end|>b"), Does.Contain(imEnd));
        var plain = tokenizer.Encode("a<|im_end|>b", parseSpecialTokens: false);
        Assert.That(plain, Does.Not.Contain(imEnd));
        Assert.That(tokenizer.Decode(plain), Is.EqualTo("a<|im_end|>b"));
        Assert.That(tokenizer.IsSpecial(imEnd), Is.True);
        Assert.That(tokenizer.IsSpecial(tokenizer.TokenToId("<tool_call>")!.Value), Is.False);
        // A non-special added token is still matched when special tokens are not parsed, as in Hugging Face.
        Assert.That(tokenizer.Encode("<tool_call>", parseSpecialTokens: false), Is.EqualTo(new[] { tokenizer.TokenToId("<tool_call>")!.Value }));
    }

    [Test]
    public void Ids_out_of_range_are_refused_with_the_range()
    {
        var tokenizer = HorizonTokenizer.Load(Fixture("gpt2"));
        var e = Assert.Throws<HorizonException>(() => tokenizer.Decode([5, tokenizer.VocabSize]));
        Assert.That(e!.Message, Does.Contain($"[0, {tokenizer.VocabSize})"));
    }

    [Test]
    public void Tokenizer_config_is_read_for_special_tokens_and_template()
    {
        var tokenizer = HorizonTokenizer.Load(Fixture("small"));
        Assert.That(tokenizer.VocabSize, Is.EqualTo(300));
        Assert.That(tokenizer.Config.EosToken, Is.EqualTo("<|im_end|>"));
        Assert.That(tokenizer.EosTokenId, Is.EqualTo(2));
        Assert.That(tokenizer.BosTokenId, Is.Null);
        Assert.That(tokenizer.Config.ChatTemplate, Does.Contain("<|im_start|>"));
        Assert.That(tokenizer.Decode(tokenizer.Encode("In the beginning God created")), Is.EqualTo("In the beginning God created"));
    }

    [Test]
    public void Unsupported_and_missing_tokenizers_fail_with_one_line_naming_the_file()
    {
        string temp = Directory.CreateTempSubdirectory("horizon-tok-").FullName;
        try
        {
            var e = Assert.Throws<TokenizerLoadException>(() => HorizonTokenizer.Load(temp));
            Assert.That(e!.Message, Does.Contain("no tokenizer.json or tokenizer.model"));

            File.WriteAllText(Path.Combine(temp, "tokenizer.json"), """{"model": {"type": "WordPiece", "vocab": {}}}""");
            e = Assert.Throws<TokenizerLoadException>(() => HorizonTokenizer.Load(temp));
            Assert.That(e!.Message, Does.Contain("tokenizer.json").And.Contain("WordPiece"));

            File.WriteAllText(Path.Combine(temp, "tokenizer.json"), """{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}}""");
            e = Assert.Throws<TokenizerLoadException>(() => HorizonTokenizer.Load(temp));
            Assert.That(e!.Message, Does.Contain("Metaspace"));

            File.WriteAllText(Path.Combine(temp, "tokenizer.json"), """{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": null, "decoder": {"type": "Fuse"}}""");
            e = Assert.Throws<TokenizerLoadException>(() => HorizonTokenizer.Load(temp));
            Assert.That(e!.Message, Does.Contain("not byte-level"));

            File.WriteAllText(Path.Combine(temp, "tokenizer.json"), "{ not json");
            e = Assert.Throws<TokenizerLoadException>(() => HorizonTokenizer.Load(temp));
            Assert.That(e!.Message, Does.Contain("invalid JSON"));
            foreach (var message in new[] { e.Message })
                Assert.That(message, Does.Not.Contain("\n"));
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    [Test]
    public void Pattern_classes_match_code_points_outside_the_BMP_as_Rust_does()
    {
        // .NET alone sees 𝔘 (U+1D518, a letter) as two surrogates that \p{L} does not match.
        Assert.That(System.Text.RegularExpressions.Regex.Matches("a𝔘b c", @"\p{L}+").Select(m => m.Value), Is.EqualTo(new[] { "a", "b", "c" }));
        var regex = new CodePointRegex(@"\p{L}+|\p{N}{1,3}");
        Assert.That(regex.Matches("a𝔘b c"), Is.EqualTo(new[] { (0, 4), (5, 1) }));
        // 𝟙𝟚𝟛𝟜 are four digits (Nd) of two UTF-16 units each: {1,3} counts code points.
        Assert.That(regex.Matches("𝟙𝟚𝟛𝟜"), Is.EqualTo(new[] { (0, 6), (6, 2) }));
        // An emoji is a symbol, matched by neither class.
        Assert.That(regex.Matches("👋x"), Is.EqualTo(new[] { (2, 1) }));
    }

    [Test]
    public void SentencePiece_control_tokens_in_text_and_bos()
    {
        var tokenizer = HorizonTokenizer.Load(Fixture("sentencepiece"));
        Assert.That(tokenizer.BosTokenId, Is.Null, "no tokenizer_config.json names it");
        int bos = tokenizer.TokenToId("<s>")!.Value;
        Assert.That(bos, Is.EqualTo(1));
        Assert.That(tokenizer.IsSpecial(bos), Is.True);
        var plain = tokenizer.Encode("In the beginning");
        Assert.That(tokenizer.Encode("In the beginning", addSpecialTokens: true), Is.EqualTo(new[] { bos }.Concat(plain)));
        Assert.That(tokenizer.Encode("<s>In the beginning"), Is.EqualTo(new[] { bos }.Concat(plain)));
        Assert.That(tokenizer.Encode("<s>In the beginning", parseSpecialTokens: false), Does.Not.Contain(bos));
        Assert.That(tokenizer.Decode([bos, .. plain], skipSpecialTokens: true), Is.EqualTo("In the beginning"));
        Assert.That(tokenizer.Decode([bos, .. plain]), Is.EqualTo("<s> In the beginning"));
    }
}
