using System.Text;
using Microsoft.ML.Tokenizers;

namespace Horizon.Tokenization;

/// <summary>
/// A SentencePiece <c>tokenizer.model</c> (Llama 2 style: BPE with byte fallback), encoded by
/// Microsoft.ML.Tokenizers' <see cref="LlamaTokenizer"/>. The piece table (types: normal, control, byte, ...)
/// and the normalizer flags are read from the file here, for decoding and for matching special tokens.
/// Control pieces (<c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>) and user-defined pieces written in the text are matched
/// before encoding; the text between them is encoded as SentencePiece encodes a text on its own (each part gets
/// the dummy-prefix space, as Hugging Face's legacy Llama tokenizer does).
/// </summary>
public sealed class SentencePieceModelTokenizer : HorizonTokenizer
{
    private readonly SentencePieceTokenizer _sp;
    private readonly SentencePieceModelFile _file;
    private readonly byte[][] _bytes;
    private readonly bool[] _special;
    private readonly Dictionary<string, int> _byPiece;
    private readonly AddedTokenMatcher _matcher;

    private SentencePieceModelTokenizer(TokenizerConfig config, SentencePieceTokenizer sp, SentencePieceModelFile file) : base(config)
    {
        _sp = sp;
        _file = file;
        var pieces = file.Pieces;
        var extra = config.AddedTokens.Where(t => t.Id >= pieces.Count).ToArray();
        int size = Math.Max(pieces.Count, extra.Length == 0 ? 0 : extra.Max(t => t.Id) + 1);
        _bytes = new byte[size][];
        _special = new bool[size];
        _byPiece = new Dictionary<string, int>(StringComparer.Ordinal);
        var added = new List<AddedToken>();
        for (int id = 0; id < pieces.Count; id++)
        {
            var (piece, type) = pieces[id];
            _byPiece.TryAdd(piece, id);
            _special[id] = type is SentencePieceType.Control or SentencePieceType.Unknown;
            _bytes[id] = type switch
            {
                SentencePieceType.Byte => [ParseByte(piece)],
                SentencePieceType.Unknown => Encoding.UTF8.GetBytes(file.UnknownSurface),
                SentencePieceType.Control => Encoding.UTF8.GetBytes(piece),
                _ => Encoding.UTF8.GetBytes(file.EscapeWhitespaces ? piece.Replace('\u2581', ' ') : piece),
            };
            if (type is SentencePieceType.Control or SentencePieceType.UserDefined && piece.Length > 0)
                added.Add(new AddedToken(id, piece, type == SentencePieceType.Control));
        }
        foreach (var token in extra)
        {
            _bytes[token.Id] = Encoding.UTF8.GetBytes(token.Content);
            _special[token.Id] = token.Special;
            _byPiece.TryAdd(token.Content, token.Id);
            added.Add(token);
        }
        for (int id = 0; id < size; id++)
            _bytes[id] ??= [];
        _matcher = new AddedTokenMatcher(added);
    }

    public override int VocabSize => _bytes.Length;

    public override Tokenizer Inner => _sp;

    public override string Kind => "SentencePiece";

    public override bool StripsLeadingSpace => _file.AddDummyPrefix && _file.EscapeWhitespaces;

    /// <summary>Loads <paramref name="path"/> with the settings <paramref name="config"/> (tokenizer_config.json) gives.</summary>
    public static SentencePieceModelTokenizer LoadFile(string path, TokenizerConfig? config = null)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            throw new TokenizerLoadException($"{path}: file not found");
        }
        var file = SentencePieceModelFile.Parse(data, path);
        if (file.ModelType != 2)
            throw new TokenizerLoadException($"{path}: SentencePiece model type {file.ModelTypeName} is not supported (Llama 2 style BPE only)");
        SentencePieceTokenizer sp;
        try
        {
            using var stream = new MemoryStream(data, writable: false);
            sp = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or FormatException or Google.Protobuf.InvalidProtocolBufferException)
        {
            throw new TokenizerLoadException($"{path}: not a SentencePiece model Microsoft.ML.Tokenizers reads: {e.Message.ReplaceLineEndings(" ")}", e);
        }
        return new SentencePieceModelTokenizer(config ?? TokenizerConfig.Load(Path.GetDirectoryName(Path.GetFullPath(path))!), sp, file);
    }

    public override IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false, bool parseSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens && (Config.AddBosToken ?? true) && _file.BosId >= 0)
            ids.Add(_file.BosId);
        Func<AddedToken, bool> include = parseSpecialTokens ? static _ => true : static t => !t.Special;
        foreach (var (piece, token) in _matcher.Split(text, include))
        {
            if (token is not null)
                ids.Add(token.Id);
            else
                ids.AddRange(_sp.EncodeToIds(piece, addBeginningOfSentence: false, addEndOfSentence: false, considerPreTokenization: false, considerNormalization: true));
        }
        if (addSpecialTokens && (Config.AddEosToken ?? false) && _file.EosId >= 0)
            ids.Add(_file.EosId);
        return ids;
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
        return _byPiece.TryGetValue(token, out int id) ? id : null;
    }

    public override string? IdToToken(int id)
    {
        if ((uint)id >= (uint)VocabSize)
            return null;
        return id < _file.Pieces.Count ? _file.Pieces[id].Piece : Encoding.UTF8.GetString(_bytes[id]);
    }

    private static byte ParseByte(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            ? Convert.ToByte(piece.Substring(3, 2), 16)
            : throw new TokenizerLoadException($"byte piece '{piece}' is not of the form <0xXX>");
}

internal enum SentencePieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>The parts of a SentencePiece ModelProto Horizon needs, read straight from the protobuf wire format.</summary>
internal sealed class SentencePieceModelFile
{
    public List<(string Piece, SentencePieceType Type)> Pieces { get; } = [];
    public int ModelType { get; private set; } = 1;
    public int BosId { get; private set; } = 1;
    public int EosId { get; private set; } = 2;
    public string UnknownSurface { get; private set; } = " \u2047 ";
    public bool AddDummyPrefix { get; private set; } = true;
    public bool EscapeWhitespaces { get; private set; } = true;

    public string ModelTypeName => ModelType switch { 1 => "UNIGRAM", 2 => "BPE", 3 => "WORD", 4 => "CHAR", _ => ModelType.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    public static SentencePieceModelFile Parse(byte[] data, string path)
    {
        var file = new SentencePieceModelFile();
        try
        {
            var reader = new Reader(data);
            while (!reader.End)
            {
                var (field, wire) = reader.Tag();
                switch (field)
                {
                    case 1 when wire == 2:
                        file.Pieces.Add(ParsePiece(reader.Bytes()));
                        break;
                    case 2 when wire == 2:
                        file.ParseTrainer(reader.Bytes());
                        break;
                    case 3 when wire == 2:
                        file.ParseNormalizer(reader.Bytes());
                        break;
                    default:
                        reader.Skip(wire);
                        break;
                }
            }
        }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentOutOfRangeException or InvalidDataException or OverflowException)
        {
            throw new TokenizerLoadException($"{path}: not a SentencePiece model (malformed protobuf)", e);
        }
        if (file.Pieces.Count == 0)
            throw new TokenizerLoadException($"{path}: not a SentencePiece model (no pieces)");
        return file;
    }

    private static (string, SentencePieceType) ParsePiece(ReadOnlyMemory<byte> data)
    {
        var reader = new Reader(data);
        string piece = "";
        var type = SentencePieceType.Normal;
        while (!reader.End)
        {
            var (field, wire) = reader.Tag();
            if (field == 1 && wire == 2)
                piece = Encoding.UTF8.GetString(reader.Bytes().Span);
            else if (field == 3 && wire == 0)
                type = (SentencePieceType)reader.Varint();
            else
                reader.Skip(wire);
        }
        return (piece, type);
    }

    private void ParseTrainer(ReadOnlyMemory<byte> data)
    {
        var reader = new Reader(data);
        while (!reader.End)
        {
            var (field, wire) = reader.Tag();
            if (field == 3 && wire == 0)
                ModelType = (int)reader.Varint();
            else if (field == 41 && wire == 0)
                BosId = (int)reader.Varint();
            else if (field == 42 && wire == 0)
                EosId = (int)reader.Varint();
            else if (field == 44 && wire == 2)
                UnknownSurface = Encoding.UTF8.GetString(reader.Bytes().Span);
            else
                reader.Skip(wire);
        }
    }

    private void ParseNormalizer(ReadOnlyMemory<byte> data)
    {
        var reader = new Reader(data);
        while (!reader.End)
        {
            var (field, wire) = reader.Tag();
            if (field == 3 && wire == 0)
                AddDummyPrefix = reader.Varint() != 0;
            else if (field == 5 && wire == 0)
                EscapeWhitespaces = reader.Varint() != 0;
            else
                reader.Skip(wire);
        }
    }

    private sealed class Reader(ReadOnlyMemory<byte> data)
    {
        private int _position;

        public bool End => _position >= data.Length;

        public (int Field, int Wire) Tag()
        {
            ulong tag = Varint();
            return ((int)(tag >> 3), (int)(tag & 7));
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                byte b = data.Span[_position++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                    return value;
            }
            throw new InvalidDataException("varint too long");
        }

        public ReadOnlyMemory<byte> Bytes()
        {
            int length = checked((int)Varint());
            var slice = data.Slice(_position, length);
            _position += length;
            return slice;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: _position += 8; break;
                case 2: Bytes(); break;
                case 5: _position += 4; break;
                default: throw new InvalidDataException($"wire type {wire}");
            }
            if (_position > data.Length)
                throw new InvalidDataException("truncated");
        }
    }
}
