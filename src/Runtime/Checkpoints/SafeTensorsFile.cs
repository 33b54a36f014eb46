using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Frozen;
using System.Globalization;
using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Horizon;

/// <summary>
/// Element types of the safetensors format. The member names are the exact strings used in a file's header
/// (<c>"dtype": "BF16"</c>), so <see cref="Enum.ToString()"/> gives the on-disk spelling.
/// </summary>
public enum SafeTensorsDType { BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64, F4, F6_E2M3, F6_E3M2 }

/// <summary>One tensor entry of a safetensors header.</summary>
/// <param name="Name">The tensor's name (the header key).</param>
/// <param name="DType">The element type.</param>
/// <param name="Shape">The dimensions; empty for a scalar.</param>
/// <param name="Begin">First byte of the tensor, relative to the start of the data buffer (after the header).</param>
/// <param name="End">One past the last byte of the tensor, relative to the start of the data buffer.</param>
public sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, long[] Shape, long Begin, long End);

/// <summary>The rule of the safetensors format that a file breaks (or the reason it could not be read at all).</summary>
public enum SafeTensorsRule
{
    /// <summary>The file does not exist.</summary>
    FileNotFound,
    /// <summary>The file exists but cannot be opened or read (permissions, a directory, an I/O error).</summary>
    FileUnreadable,
    /// <summary>The file is shorter than the 8-byte header length prefix.</summary>
    HeaderTooSmall,
    /// <summary>The header length prefix is above 100,000,000 bytes.</summary>
    HeaderTooLarge,
    /// <summary>The header length prefix points past the end of the file.</summary>
    InvalidHeaderLength,
    /// <summary>The header bytes are not valid UTF-8.</summary>
    InvalidHeaderUtf8,
    /// <summary>The header does not start with '{', is not valid JSON, or its root is not an object.</summary>
    InvalidHeaderJson,
    /// <summary>A tensor entry is not an object with a string dtype, an integer shape and two integer data offsets.</summary>
    InvalidTensorInfo,
    /// <summary>A tensor's dtype string is not one of <see cref="SafeTensorsDType"/>.</summary>
    UnknownDType,
    /// <summary>A tensor name (or a metadata key) appears twice in the header.</summary>
    DuplicateName,
    /// <summary><c>__metadata__</c> is not an object whose values are all strings.</summary>
    InvalidMetadata,
    /// <summary>The tensors' data offsets, sorted, do not tile the data buffer from 0 without holes or overlaps.</summary>
    InvalidOffset,
    /// <summary>A tensor's element count (or its size in bits) overflows 64 bits.</summary>
    ShapeOverflow,
    /// <summary>A tensor of a sub-byte dtype (F4, F6_*) does not fill a whole number of bytes.</summary>
    MisalignedSlice,
    /// <summary>A tensor's byte range does not match its dtype and shape.</summary>
    TensorSizeMismatch,
    /// <summary>The tensors do not end exactly at the end of the file (missing or trailing bytes).</summary>
    IncompleteBuffer,
    /// <summary><see cref="SafeTensorsFile.GetData"/> was asked for a name the file does not hold.</summary>
    TensorNotFound,
    /// <summary>A tensor is larger than <see cref="int.MaxValue"/> bytes and cannot be exposed as one memory block.</summary>
    TensorTooLarge,
}

/// <summary>
/// A safetensors file that cannot be opened because it breaks a rule of the format. The message is one line,
/// <c>{path}: {rule}: {details}</c>.
/// </summary>
public sealed class SafeTensorsException : HorizonException
{
    /// <summary>Creates the exception for <paramref name="filePath"/> breaking <paramref name="rule"/>.</summary>
    public SafeTensorsException(string filePath, SafeTensorsRule rule, string details)
        : base(FormatMessage(filePath, rule, details))
    {
        FilePath = filePath;
        Rule = rule;
    }

    /// <summary>Creates the exception with the lower-level error that revealed the problem.</summary>
    public SafeTensorsException(string filePath, SafeTensorsRule rule, string details, Exception inner)
        : base(FormatMessage(filePath, rule, details), inner)
    {
        FilePath = filePath;
        Rule = rule;
    }

    /// <summary>The path of the offending file, as it was given to <see cref="SafeTensorsFile.Open"/>.</summary>
    public string FilePath { get; }

    /// <summary>The rule the file breaks.</summary>
    public SafeTensorsRule Rule { get; }

    private static string FormatMessage(string filePath, SafeTensorsRule rule, string details) =>
        SingleLine(string.Create(CultureInfo.InvariantCulture, $"{filePath}: {rule}: {details}"));

    /// <summary>
    /// Tensor names and paths come from the file and the caller and may hold newlines; escaping every line break
    /// keeps the promise that the message is one line (hosts print and grep it as such).
    /// </summary>
    private static string SingleLine(string text)
    {
        static bool BreaksLine(char c) => char.IsControl(c) || c is '\u2028' or '\u2029';
        if (!text.Any(BreaksLine))
            return text;
        var builder = new StringBuilder(text.Length + 16);
        foreach (char c in text)
        {
            if (BreaksLine(c))
                builder.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            else
                builder.Append(c);
        }
        return builder.ToString();
    }
}

/// <summary>Facts about <see cref="SafeTensorsDType"/> shared by the reader and the writer.</summary>
internal static class SafeTensorsDTypes
{
    // Built from the enum names, which are the on-disk spellings. A plain dictionary (ordinal, case-sensitive)
    // rather than Enum.TryParse, which would also accept "14", " F32" or, with ignoreCase, "f32".
    private static readonly FrozenDictionary<string, SafeTensorsDType> ByName =
        Enum.GetValues<SafeTensorsDType>().ToFrozenDictionary(d => d.ToString(), StringComparer.Ordinal);

    public static bool TryParse(string name, out SafeTensorsDType dtype) => ByName.TryGetValue(name, out dtype);

    /// <summary>Bits per element; sub-byte types (F4, F6_*) are packed, so sizes are computed in bits.</summary>
    public static int BitWidth(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.F4 => 4,
        SafeTensorsDType.F6_E2M3 or SafeTensorsDType.F6_E3M2 => 6,
        SafeTensorsDType.BOOL or SafeTensorsDType.U8 or SafeTensorsDType.I8
            or SafeTensorsDType.F8_E5M2 or SafeTensorsDType.F8_E4M3 or SafeTensorsDType.F8_E8M0
            or SafeTensorsDType.F8_E4M3FNUZ or SafeTensorsDType.F8_E5M2FNUZ => 8,
        SafeTensorsDType.I16 or SafeTensorsDType.U16 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 16,
        SafeTensorsDType.I32 or SafeTensorsDType.U32 or SafeTensorsDType.F32 => 32,
        SafeTensorsDType.C64 or SafeTensorsDType.F64 or SafeTensorsDType.I64 or SafeTensorsDType.U64 => 64,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype"),
    };

    /// <summary>
    /// Elements in <paramref name="shape"/> (1 for a scalar) with overflow checks; null on overflow. Like the
    /// reference implementation, the product is checked left to right, so a shape that overflows before a
    /// later 0 dimension is still an overflow.
    /// </summary>
    public static long? ElementCount(IReadOnlyList<long> shape)
    {
        long count = 1;
        foreach (long dimension in shape)
        {
            if (dimension < 0)
                return null;
            try
            {
                count = checked(count * dimension);
            }
            catch (OverflowException)
            {
                return null;
            }
        }
        return count;
    }

    /// <summary>Size in bits of <paramref name="elementCount"/> elements; null on overflow.</summary>
    public static long? BitCount(long elementCount, SafeTensorsDType dtype)
    {
        try
        {
            return checked(elementCount * BitWidth(dtype));
        }
        catch (OverflowException)
        {
            return null;
        }
    }
}

/// <summary>
/// A safetensors file, validated and memory-mapped read-only. Tensor data is exposed as views over the
/// mapping (no copies); they stay valid until <see cref="Dispose"/>. The file must not be truncated or
/// rewritten while it is open: the operating system would fault on access to the missing pages.
/// </summary>
/// <remarks>
/// Format: an unsigned 64-bit little-endian header length N, N bytes of UTF-8 JSON, then the data buffer.
/// <see cref="Open"/> enforces every rule listed in docs/safetensors.md and reports the first one broken as a
/// <see cref="SafeTensorsException"/>. Not disposing leaks the mapping until the process ends (there is
/// deliberately no finalizer: a span handed out earlier may still point into the mapping).
/// </remarks>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>The largest header accepted, as in the reference implementation: 100 MB.</summary>
    public const long MaxHeaderLength = 100_000_000;

    /// <summary>
    /// Integers in the header (dimensions, offsets) above 2^53 are rejected: no real tensor is that large, and
    /// the bound keeps every sum of offsets and the header length far from 64-bit overflow (and matches what a
    /// JSON number can hold exactly in JavaScript).
    /// </summary>
    public const long MaxHeaderInteger = 1L << 53;

    private const string MetadataKey = "__metadata__";
    private const int LengthPrefixBytes = 8;
    private const int MaxNameLengthInMessages = 120;

    private readonly MemoryMappedFile _mapping;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _dataStart;
    private readonly Dictionary<string, SafeTensorInfo> _tensors;
    private int _disposed;

    private SafeTensorsFile(
        string path, MemoryMappedFile mapping, MemoryMappedViewAccessor view, byte* dataStart,
        Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _mapping = mapping;
        _view = view;
        _dataStart = dataStart;
        _tensors = tensors;
        // Read-only wrappers so that a caller cannot cast back and edit what was validated.
        Tensors = tensors.AsReadOnly();
        Metadata = metadata.AsReadOnly();
    }

    /// <summary>The path the file was opened with, unchanged.</summary>
    public string Path { get; }

    /// <summary>The tensors by name, enumerated in data-offset order.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }

    /// <summary>The string pairs of the header's <c>__metadata__</c> entry; empty when there is none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>
    /// Opens, validates and maps <paramref name="path"/>. Throws <see cref="SafeTensorsException"/> naming the
    /// first rule the file breaks; nothing stays open when it throws.
    /// </summary>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        FileStream stream = OpenStream(path);
        MemoryMappedFile? mapping = null;
        MemoryMappedViewAccessor? view = null;
        byte* mappedStart = null;
        bool opened = false;
        try
        {
            long fileLength = stream.Length;
            if (fileLength < LengthPrefixBytes)
                throw Fail(path, SafeTensorsRule.HeaderTooSmall,
                    $"the file is {fileLength} bytes; it must start with an 8-byte header length");

            // The length prefix is checked against the 100 MB cap and the file length before anything is
            // mapped, read or allocated from it.
            Span<byte> prefix = stackalloc byte[LengthPrefixBytes];
            ReadExactly(stream, path, prefix);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (headerLength > MaxHeaderLength)
                throw Fail(path, SafeTensorsRule.HeaderTooLarge,
                    $"the header length is {headerLength} bytes; at most {MaxHeaderLength} are allowed");
            // No overflow: headerLength <= 10^8 here.
            if (LengthPrefixBytes + (long)headerLength > fileLength)
                throw Fail(path, SafeTensorsRule.InvalidHeaderLength,
                    $"the header length is {headerLength} bytes but only {fileLength - LengthPrefixBytes} bytes follow the length prefix");

            mapping = MemoryMappedFile.CreateFromFile(
                stream, mapName: null, capacity: 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = mapping.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref mappedStart);
            // The view starts at a page boundary at or before the requested offset 0; PointerOffset says how far.
            byte* fileStart = mappedStart + view.PointerOffset;

            var header = new ReadOnlySpan<byte>(fileStart + LengthPrefixBytes, (int)headerLength);
            var (tensors, metadata) = ParseHeader(path, header);
            var ordered = ValidateLayout(path, tensors, LengthPrefixBytes + (long)headerLength, fileLength);

            var byName = new Dictionary<string, SafeTensorInfo>(ordered.Count, StringComparer.Ordinal);
            foreach (var tensor in ordered)
                byName.Add(tensor.Name, tensor);
            var file = new SafeTensorsFile(path, mapping, view, fileStart + LengthPrefixBytes + (long)headerLength, byName, metadata);
            opened = true;
            return file;
        }
        catch (Exception e) when (e is IOException or NotSupportedException or UnauthorizedAccessException)
        {
            // Reading the prefix or mapping failed (an I/O error, a file system or file kind that cannot be mapped).
            throw new SafeTensorsException(path, SafeTensorsRule.FileUnreadable, e.Message, e);
        }
        finally
        {
            if (!opened)
            {
                if (mappedStart != null)
                    view!.SafeMemoryMappedViewHandle.ReleasePointer();
                view?.Dispose();
                if (mapping is not null)
                    mapping.Dispose(); // also closes the stream (leaveOpen: false)
                else
                    stream.Dispose();
            }
        }
    }

    /// <summary>
    /// The bytes of tensor <paramref name="name"/>: a view over the mapped file, valid until <see cref="Dispose"/>.
    /// Reading the view after <see cref="Dispose"/> throws <see cref="ObjectDisposedException"/>. Tensors above
    /// <see cref="int.MaxValue"/> bytes cannot be one <see cref="ReadOnlyMemory{T}"/> and throw
    /// <see cref="SafeTensorsException"/> with <see cref="SafeTensorsRule.TensorTooLarge"/>.
    /// </summary>
    public ReadOnlyMemory<byte> GetData(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        ThrowIfDisposed();
        if (!_tensors.TryGetValue(name, out var info))
            throw Fail(Path, SafeTensorsRule.TensorNotFound, $"the file holds no tensor named {Quote(name)}");
        long length = info.End - info.Begin;
        if (length > int.MaxValue)
            throw Fail(Path, SafeTensorsRule.TensorTooLarge,
                $"tensor {Quote(name)} is {length} bytes; GetData can expose at most {int.MaxValue} bytes as one block");
        if (length == 0)
            return ReadOnlyMemory<byte>.Empty;
        return new MappedMemoryManager(this, _dataStart + info.Begin, (int)length).Memory;
    }

    /// <summary>Releases the pointer, the view and the mapping; the file can then be deleted or replaced.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _mapping.Dispose();
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    private static FileStream OpenStream(string path)
    {
        try
        {
            // FileShare.Delete: an open checkpoint must not stop another process from removing or replacing the
            // directory entry (the mapping keeps the old contents alive).
            return new FileStream(path, new FileStreamOptions
            {
                Mode = FileMode.Open,
                Access = FileAccess.Read,
                Share = FileShare.Read | FileShare.Delete,
                BufferSize = 0,
            });
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new SafeTensorsException(path, SafeTensorsRule.FileNotFound, "the file does not exist", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new SafeTensorsException(path, SafeTensorsRule.FileUnreadable, e.Message, e);
        }
    }

    private static void ReadExactly(FileStream stream, string path, Span<byte> destination)
    {
        int total = 0;
        while (total < destination.Length)
        {
            int read = RandomAccess.Read(stream.SafeFileHandle, destination[total..], total);
            if (read == 0) // the file shrank after its length was taken
                throw Fail(path, SafeTensorsRule.HeaderTooSmall, $"the file ended inside the 8-byte header length");
            total += read;
        }
    }

    // ---- Header parsing ---------------------------------------------------------------------------------

    /// <summary>
    /// Walks the header with <see cref="Utf8JsonReader"/> instead of deserializing it, because the serializer
    /// and <see cref="JsonDocument"/> lookups silently keep one of two duplicate keys; here every duplicate is
    /// an error. The reader works on the mapped bytes directly, so the header is never copied.
    /// </summary>
    private static (List<SafeTensorInfo> Tensors, Dictionary<string, string> Metadata) ParseHeader(string path, ReadOnlySpan<byte> header)
    {
        // Validated up front so that every string the reader decodes later is known to be UTF-8.
        if (!Utf8.IsValid(header))
            throw Fail(path, SafeTensorsRule.InvalidHeaderUtf8, $"the {header.Length}-byte header is not valid UTF-8");
        if (header.IsEmpty || header[0] != (byte)'{')
            throw Fail(path, SafeTensorsRule.InvalidHeaderJson, $"the header does not start with '{{'");

        var tensors = new List<SafeTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var seenKeys = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(header, new JsonReaderOptions
        {
            CommentHandling = JsonCommentHandling.Disallow,
            AllowTrailingCommas = false,
        });
        try
        {
            Read(ref reader); // the '{' checked above
            while (true)
            {
                Read(ref reader);
                if (reader.TokenType == JsonTokenType.EndObject)
                    break;
                // Inside an object the reader only yields property names or the end of the object.
                string key = GetString(ref reader, path);
                if (!seenKeys.Add(key))
                    throw Fail(path, SafeTensorsRule.DuplicateName, $"{Quote(key)} appears twice in the header");
                Read(ref reader);
                if (key == MetadataKey)
                    ReadMetadata(ref reader, path, metadata);
                else
                    tensors.Add(ReadTensorInfo(ref reader, path, key));
            }
            // Only whitespace (the writer's space padding) may follow the root object; the reader throws otherwise.
            if (reader.Read())
                throw Fail(path, SafeTensorsRule.InvalidHeaderJson, $"the header has content after its root object");
        }
        catch (JsonException e)
        {
            throw new SafeTensorsException(path, SafeTensorsRule.InvalidHeaderJson,
                string.Create(CultureInfo.InvariantCulture,
                    $"the header is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1} of that line)"), e);
        }
        return (tensors, metadata);
    }

    /// <summary>One entry: {"dtype": string, "shape": [ints], "data_offsets": [begin, end]}; other keys are ignored, as in the reference.</summary>
    private static SafeTensorInfo ReadTensorInfo(ref Utf8JsonReader reader, string path, string name)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Fail(path, SafeTensorsRule.InvalidTensorInfo,
                $"tensor {Quote(name)} is a JSON {Describe(reader.TokenType)}, not an object with dtype, shape and data_offsets");

        string? dtypeName = null;
        List<long>? shape = null;
        List<long>? offsets = null;
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject)
                break;
            string field = GetString(ref reader, path);
            Read(ref reader);
            switch (field)
            {
                case "dtype":
                    RejectRepeatedField(dtypeName is not null, path, name, field);
                    if (reader.TokenType != JsonTokenType.String)
                        throw Fail(path, SafeTensorsRule.InvalidTensorInfo,
                            $"tensor {Quote(name)} has a dtype that is a JSON {Describe(reader.TokenType)}, not a string");
                    dtypeName = GetString(ref reader, path);
                    break;
                case "shape":
                    RejectRepeatedField(shape is not null, path, name, field);
                    shape = ReadIntegerArray(ref reader, path, name, field);
                    break;
                case "data_offsets":
                    RejectRepeatedField(offsets is not null, path, name, field);
                    offsets = ReadIntegerArray(ref reader, path, name, field);
                    if (offsets.Count != 2)
                        throw Fail(path, SafeTensorsRule.InvalidTensorInfo,
                            $"tensor {Quote(name)} has {offsets.Count} data_offsets; exactly 2 (begin, end) are required");
                    break;
                default:
                    reader.Skip();
                    break;
            }
        }

        if (dtypeName is null || shape is null || offsets is null)
        {
            string missing = dtypeName is null ? "dtype" : shape is null ? "shape" : "data_offsets";
            throw Fail(path, SafeTensorsRule.InvalidTensorInfo, $"tensor {Quote(name)} has no '{missing}'");
        }
        if (!SafeTensorsDTypes.TryParse(dtypeName, out var dtype))
            throw Fail(path, SafeTensorsRule.UnknownDType, $"tensor {Quote(name)} has unknown dtype {Quote(dtypeName)}");
        return new SafeTensorInfo(name, dtype, [.. shape], offsets[0], offsets[1]);
    }

    private static void RejectRepeatedField(bool alreadySeen, string path, string name, string field)
    {
        if (alreadySeen)
            throw Fail(path, SafeTensorsRule.InvalidTensorInfo, $"tensor {Quote(name)} has '{field}' twice");
    }

    /// <summary>An array of integers in [0, 2^53]; fractions, exponents, negatives and larger values are errors.</summary>
    private static List<long> ReadIntegerArray(ref Utf8JsonReader reader, string path, string name, string field)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw Fail(path, SafeTensorsRule.InvalidTensorInfo,
                $"tensor {Quote(name)} has a {field} that is a JSON {Describe(reader.TokenType)}, not an array of integers");
        var values = new List<long>();
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndArray)
                return values;
            // TryGetInt64 fails on "1.5", "1e3" and anything beyond 64 bits instead of rounding.
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long value) || value < 0 || value > MaxHeaderInteger)
            {
                string found = reader.TokenType == JsonTokenType.Number
                    ? Encoding.UTF8.GetString(reader.ValueSpan) // one span: the reader reads a span, never a sequence
                    : "a JSON " + Describe(reader.TokenType);
                throw Fail(path, SafeTensorsRule.InvalidTensorInfo,
                    $"tensor {Quote(name)} has {field}[{values.Count}] = {Truncate(found)}; entries must be integers from 0 to 2^53");
            }
            values.Add(value);
        }
    }

    /// <summary>
    /// <c>__metadata__</c>: an object of string values (null is accepted as "no metadata", as in the reference).
    /// </summary>
    private static void ReadMetadata(ref Utf8JsonReader reader, string path, Dictionary<string, string> metadata)
    {
        if (reader.TokenType == JsonTokenType.Null)
            return;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Fail(path, SafeTensorsRule.InvalidMetadata,
                $"__metadata__ is a JSON {Describe(reader.TokenType)}, not an object of strings");
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject)
                return;
            string key = GetString(ref reader, path);
            Read(ref reader);
            if (reader.TokenType != JsonTokenType.String)
                throw Fail(path, SafeTensorsRule.InvalidMetadata,
                    $"__metadata__ value {Quote(key)} is a JSON {Describe(reader.TokenType)}, not a string");
            if (!metadata.TryAdd(key, GetString(ref reader, path)))
                throw Fail(path, SafeTensorsRule.DuplicateName, $"__metadata__ key {Quote(key)} appears twice");
        }
    }

    private static void Read(ref Utf8JsonReader reader)
    {
        // The whole header is one final block, so running out of tokens means the JSON is cut short.
        if (!reader.Read())
            throw new JsonException("the header ends before its root object is closed", null, 0, reader.BytesConsumed);
    }

    private static string GetString(ref Utf8JsonReader reader, string path)
    {
        try
        {
            return reader.GetString()!;
        }
        catch (InvalidOperationException e)
        {
            // A "\uD800" escape decodes to a lone surrogate, which is not a string (serde_json refuses it too).
            throw new SafeTensorsException(path, SafeTensorsRule.InvalidHeaderJson,
                "the header holds a string with an invalid \\u escape (a lone surrogate)", e);
        }
    }

    // ---- Layout validation ------------------------------------------------------------------------------

    /// <summary>
    /// Checks that the tensors, sorted by offsets, tile the data buffer exactly: each begins where the previous
    /// one ends (the first at 0), each is as long as its dtype and shape say, and the last ends at the end of
    /// the file. Returns the tensors in that order.
    /// </summary>
    private static List<SafeTensorInfo> ValidateLayout(string path, List<SafeTensorInfo> tensors, long dataStart, long fileLength)
    {
        // Sorted by (begin, end) like the reference; the name only makes the order (and so the first error
        // reported) deterministic when two zero-byte tensors share an offset.
        var ordered = tensors
            .OrderBy(t => t.Begin)
            .ThenBy(t => t.End)
            .ThenBy(t => t.Name, StringComparer.Ordinal)
            .ToList();

        long expectedBegin = 0;
        bool isFirst = true;
        foreach (var tensor in ordered)
        {
            if (tensor.Begin != expectedBegin)
                throw Fail(path, SafeTensorsRule.InvalidOffset, isFirst
                    ? (FormattableString)$"tensor {Quote(tensor.Name)} begins at {tensor.Begin} but the first tensor must begin at 0"
                    : $"tensor {Quote(tensor.Name)} begins at {tensor.Begin} but the previous tensor ends at {expectedBegin}");
            isFirst = false;
            if (tensor.End < tensor.Begin)
                throw Fail(path, SafeTensorsRule.InvalidOffset,
                    $"tensor {Quote(tensor.Name)} ends at {tensor.End}, before it begins at {tensor.Begin}");

            long? elementCount = SafeTensorsDTypes.ElementCount(tensor.Shape);
            long? bitCount = elementCount is long count ? SafeTensorsDTypes.BitCount(count, tensor.DType) : null;
            if (bitCount is not long bits)
                throw Fail(path, SafeTensorsRule.ShapeOverflow,
                    $"tensor {Quote(tensor.Name)} of shape {FormatShape(tensor.Shape)} and dtype {tensor.DType} has more bits than 64-bit arithmetic can count");
            if (bits % 8 != 0)
                throw Fail(path, SafeTensorsRule.MisalignedSlice,
                    $"tensor {Quote(tensor.Name)} of shape {FormatShape(tensor.Shape)} and dtype {tensor.DType} is {bits} bits, not a whole number of bytes");
            long expectedBytes = bits / 8;
            if (tensor.End - tensor.Begin != expectedBytes)
                throw Fail(path, SafeTensorsRule.TensorSizeMismatch,
                    $"tensor {Quote(tensor.Name)} has data_offsets [{tensor.Begin}, {tensor.End}] ({tensor.End - tensor.Begin} bytes) but shape {FormatShape(tensor.Shape)} of {tensor.DType} needs {expectedBytes} bytes");
            expectedBegin = tensor.End;
        }

        // No overflow: dataStart <= 8 + 10^8 and expectedBegin <= 2^53.
        long expectedFileLength = dataStart + expectedBegin;
        if (expectedFileLength != fileLength)
            throw Fail(path, SafeTensorsRule.IncompleteBuffer, expectedFileLength > fileLength
                ? (FormattableString)$"the header and tensors need {expectedFileLength} bytes but the file has only {fileLength}"
                : $"the tensors end at byte {expectedFileLength} but the file is {fileLength} bytes long (trailing bytes are not allowed)");
        return ordered;
    }

    // ---- Messages ---------------------------------------------------------------------------------------

    /// <summary>
    /// Takes only <see cref="FormattableString"/> (no string overload, which C# would prefer) so that every
    /// number in a message is formatted with the invariant culture.
    /// </summary>
    private static SafeTensorsException Fail(string path, SafeTensorsRule rule, FormattableString details) =>
        new(path, rule, details.ToString(CultureInfo.InvariantCulture));

    /// <summary>A name from the file, quoted and cut short: a hostile header could hold a 100 MB name.</summary>
    private static string Quote(string name) => "'" + Truncate(name) + "'";

    private static string Truncate(string text) =>
        text.Length <= MaxNameLengthInMessages ? text : string.Concat(text.AsSpan(0, MaxNameLengthInMessages), "...");

    private static string FormatShape(long[] shape) =>
        "[" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";

    private static string Describe(JsonTokenType token) => token switch
    {
        JsonTokenType.StartObject => "object",
        JsonTokenType.StartArray => "array",
        JsonTokenType.String => "string",
        JsonTokenType.Number => "number",
        JsonTokenType.True or JsonTokenType.False => "boolean",
        JsonTokenType.Null => "null",
        _ => token.ToString(),
    };

    /// <summary>
    /// Exposes a span of the mapping as <see cref="Memory{T}"/>. It checks the owning file on every access so
    /// that a view kept past <see cref="Dispose"/> throws instead of reading unmapped memory (this is a guard
    /// against mistakes, not against a Dispose racing a read on another thread).
    /// </summary>
    private sealed class MappedMemoryManager : MemoryManager<byte>
    {
        private readonly SafeTensorsFile _owner;
        private readonly byte* _start;
        private readonly int _length;

        public MappedMemoryManager(SafeTensorsFile owner, byte* start, int length)
        {
            _owner = owner;
            _start = start;
            _length = length;
        }

        public override Span<byte> GetSpan()
        {
            _owner.ThrowIfDisposed();
            return new Span<byte>(_start, _length);
        }

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            _owner.ThrowIfDisposed();
            ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, _length);
            // Mapped memory never moves, so there is nothing to pin.
            return new MemoryHandle(_start + elementIndex);
        }

        public override void Unpin()
        {
        }

        // The mapping belongs to the file, not to the slices handed out over it.
        protected override void Dispose(bool disposing)
        {
        }
    }
}
