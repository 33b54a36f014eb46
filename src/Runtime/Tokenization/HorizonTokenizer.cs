using System.Text;

namespace Horizon.Tokenization;

/// <summary>
/// Text ↔ token ids for a model directory: byte-level BPE from <c>tokenizer.json</c> (GPT-2, Qwen2, Llama 3
/// style) or SentencePiece from <c>tokenizer.model</c> (Llama 2 style), both on Microsoft.ML.Tokenizers, plus
/// the added/special tokens and the settings of <c>tokenizer_config.json</c>. Instances are immutable and
/// thread-safe. See docs/tokenizers.md.
/// </summary>
public abstract class HorizonTokenizer
{
    private protected HorizonTokenizer(TokenizerConfig config) => Config = config;

    /// <summary>The settings of <c>tokenizer_config.json</c> (empty when the file is absent).</summary>
    public TokenizerConfig Config { get; }

    /// <summary>One more than the largest id (vocabulary and added tokens).</summary>
    public abstract int VocabSize { get; }

    /// <summary>The Microsoft.ML.Tokenizers tokenizer that runs the BPE or SentencePiece model.</summary>
    public abstract Microsoft.ML.Tokenizers.Tokenizer Inner { get; }

    /// <summary>What kind of tokenizer this is: <c>byte-level BPE</c> or <c>SentencePiece</c>.</summary>
    public abstract string Kind { get; }

    /// <summary>
    /// Encodes <paramref name="text"/>. With <paramref name="parseSpecialTokens"/> (the default, as in Hugging Face
    /// tokenizers) special tokens written in the text (<c>&lt;|im_end|&gt;</c>) become their ids; without it they are
    /// encoded as plain text. <paramref name="addSpecialTokens"/> adds what the tokenizer's post-processor adds
    /// (e.g. Llama 3's <c>&lt;|begin_of_text|&gt;</c>, Llama 2's BOS).
    /// </summary>
    public abstract IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false, bool parseSpecialTokens = true);

    /// <summary>The UTF-8 bytes token <paramref name="id"/> stands for (a special token: its text).</summary>
    public abstract ReadOnlySpan<byte> TokenBytes(int id);

    /// <summary>True for special tokens (control tokens, <c>&lt;|endoftext|&gt;</c>, ...): skipped by decoding when asked.</summary>
    public abstract bool IsSpecial(int id);

    /// <summary>The id of a vocabulary entry or added token written as it is stored (e.g. <c>&lt;|im_end|&gt;</c>), or null.</summary>
    public abstract int? TokenToId(string token);

    /// <summary>The vocabulary entry or added token of <paramref name="id"/> as stored, or null when out of range.</summary>
    public abstract string? IdToToken(int id);

    /// <summary>True when decoding a sequence from its start drops one leading space (SentencePiece's dummy prefix).</summary>
    public virtual bool StripsLeadingSpace => false;

    /// <summary>The id of tokenizer_config.json's <c>bos_token</c>, if it has one in the vocabulary.</summary>
    public int? BosTokenId => Config.BosToken is { } token ? TokenToId(token) : null;

    /// <summary>The id of tokenizer_config.json's <c>eos_token</c>, if it has one in the vocabulary.</summary>
    public int? EosTokenId => Config.EosToken is { } token ? TokenToId(token) : null;

    /// <summary>Decodes ids to text; byte sequences that are not valid UTF-8 become U+FFFD.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var decoder = CreateDecoder(skipSpecialTokens, atSequenceStart: true);
        var text = new StringBuilder();
        foreach (int id in ids)
            text.Append(decoder.Append(id));
        text.Append(decoder.Flush());
        return text.ToString();
    }

    /// <summary>
    /// A decoder for streaming: tokens in, text out as soon as it is complete UTF-8 (a character split over two
    /// byte tokens comes out with the second). <paramref name="atSequenceStart"/>: the first token starts the
    /// sequence (SentencePiece then drops the dummy-prefix space); false when continuing after a prompt.
    /// </summary>
    public StreamingDecoder CreateDecoder(bool skipSpecialTokens = false, bool atSequenceStart = false) =>
        new(this, skipSpecialTokens, atSequenceStart && StripsLeadingSpace);

    /// <summary>Refuses an id outside [0, <see cref="VocabSize"/>).</summary>
    protected void CheckId(int id)
    {
        if ((uint)id >= (uint)VocabSize)
            throw new HorizonException($"token id {id} is out of range [0, {VocabSize})");
    }

    /// <summary>
    /// Loads the tokenizer of a Hugging Face model directory: <c>tokenizer.json</c> when it is byte-level BPE,
    /// else <c>tokenizer.model</c> (SentencePiece); <c>tokenizer_config.json</c> when present.
    /// </summary>
    /// <exception cref="TokenizerLoadException">No tokenizer file, or one of a kind Horizon does not read.</exception>
    public static HorizonTokenizer Load(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory))
            throw new TokenizerLoadException($"{directory}: directory not found");
        var config = TokenizerConfig.Load(directory);
        string json = Path.Combine(directory, "tokenizer.json");
        string model = Path.Combine(directory, "tokenizer.model");
        string? jsonProblem = null;
        if (File.Exists(json))
        {
            if (ByteLevelBpeTokenizer.TryLoad(json, config, out var tokenizer, out jsonProblem))
                return tokenizer!;
        }
        if (File.Exists(model))
            return SentencePieceModelTokenizer.LoadFile(model, config);
        if (jsonProblem is not null)
            throw new TokenizerLoadException($"{json}: {jsonProblem}");
        throw new TokenizerLoadException($"{directory}: no tokenizer.json or tokenizer.model");
    }
}

/// <summary>A tokenizer file that is missing, malformed or of a kind Horizon does not read.</summary>
public sealed class TokenizerLoadException : HorizonException
{
    public TokenizerLoadException(string message) : base(message) { }
    public TokenizerLoadException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// Turns tokens into text one at a time. Bytes of an unfinished UTF-8 character wait for the next token;
/// <see cref="Flush"/> ends the stream (an unfinished character becomes U+FFFD).
/// </summary>
public sealed class StreamingDecoder
{
    private readonly HorizonTokenizer _tokenizer;
    private readonly bool _skipSpecial;
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private bool _stripLeadingSpace;
    private char[] _chars = new char[64];

    internal StreamingDecoder(HorizonTokenizer tokenizer, bool skipSpecial, bool stripLeadingSpace)
    {
        _tokenizer = tokenizer;
        _skipSpecial = skipSpecial;
        _stripLeadingSpace = stripLeadingSpace;
    }

    /// <summary>Adds one token; returns the text it completes (often empty mid-character).</summary>
    public string Append(int id)
    {
        if (_skipSpecial && _tokenizer.IsSpecial(id))
            return "";
        var bytes = _tokenizer.TokenBytes(id);
        if (bytes.IsEmpty)
            return "";
        if (_stripLeadingSpace)
        {
            _stripLeadingSpace = false;
            if (bytes[0] == (byte)' ')
                bytes = bytes[1..];
        }
        int needed = _utf8.GetCharCount(bytes, flush: false);
        if (needed > _chars.Length)
            _chars = new char[Math.Max(needed, _chars.Length * 2)];
        int written = _utf8.GetChars(bytes, _chars, flush: false);
        return new string(_chars, 0, written);
    }

    /// <summary>Ends the stream: bytes of an unfinished character come out as U+FFFD.</summary>
    public string Flush()
    {
        int written = _utf8.GetChars(ReadOnlySpan<byte>.Empty, _chars, flush: true);
        return new string(_chars, 0, written);
    }
}
