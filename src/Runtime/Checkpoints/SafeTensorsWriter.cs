using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;

namespace Horizon;

/// <summary>
/// Writes safetensors files that <see cref="SafeTensorsFile.Open"/> accepts: used by tests and to make synthetic
/// checkpoints. Everything is held in memory, so it is meant for small files.
/// </summary>
public static class SafeTensorsWriter
{
    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> (replacing any file there). Tensors are laid
    /// out in the order given, back to back from offset 0; the header is padded with spaces to a multiple of
    /// 8 bytes so that the data buffer starts 8-byte aligned in the file.
    /// </summary>
    /// <param name="path">The file to create.</param>
    /// <param name="tensors">Name, dtype, shape and raw little-endian bytes of each tensor; the byte count must match dtype and shape.</param>
    /// <param name="metadata">The <c>__metadata__</c> string pairs; omitted from the header when null.</param>
    /// <exception cref="ArgumentException">A name is repeated or reserved, a dimension is negative, or a tensor's bytes do not match its dtype and shape.</exception>
    public static void Write(
        string path,
        IEnumerable<(string Name, SafeTensorsDType DType, long[] Shape, byte[] Data)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var entries = tensors.ToList();
        Validate(entries);

        byte[] header = BuildHeader(entries, metadata);
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        Span<byte> lengthPrefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(lengthPrefix, (ulong)header.Length);
        stream.Write(lengthPrefix);
        stream.Write(header);
        foreach (var entry in entries)
            stream.Write(entry.Data);
    }

    private static void Validate(List<(string Name, SafeTensorsDType DType, long[] Shape, byte[] Data)> entries)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, dtype, shape, data) in entries)
        {
            ArgumentNullException.ThrowIfNull(name, "tensor name");
            ArgumentNullException.ThrowIfNull(shape, $"shape of '{name}'");
            ArgumentNullException.ThrowIfNull(data, $"data of '{name}'");
            if (name == "__metadata__")
                throw new ArgumentException("'__metadata__' is reserved for the metadata entry and cannot name a tensor", nameof(entries));
            if (!names.Add(name))
                throw new ArgumentException($"tensor '{name}' is given twice", nameof(entries));
            if (shape.Any(d => d < 0 || d > SafeTensorsFile.MaxHeaderInteger))
                throw new ArgumentException($"tensor '{name}' has a dimension outside [0, 2^53]", nameof(entries));
            long? bits = SafeTensorsDTypes.ElementCount(shape) is long count ? SafeTensorsDTypes.BitCount(count, dtype) : null;
            if (bits is not long bitCount || bitCount % 8 != 0)
                throw new ArgumentException($"tensor '{name}' of dtype {dtype} and shape [{string.Join(", ", shape)}] does not fill a whole number of bytes", nameof(entries));
            if (bitCount / 8 != data.Length)
                throw new ArgumentException($"tensor '{name}' has {data.Length} bytes but dtype {dtype} and shape [{string.Join(", ", shape)}] need {bitCount / 8}", nameof(entries));
        }
    }

    private static byte[] BuildHeader(
        List<(string Name, SafeTensorsDType DType, long[] Shape, byte[] Data)> entries,
        IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is not null)
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata)
                    json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, dtype, shape, data) in entries)
            {
                json.WriteStartObject(name);
                json.WriteString("dtype", dtype.ToString()); // the enum names are the on-disk spellings
                json.WriteStartArray("shape");
                foreach (long dimension in shape)
                    json.WriteNumberValue(dimension);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += data.Length;
            }
            json.WriteEndObject();
        }

        // Spaces are JSON whitespace, so padding keeps the header valid while aligning the data buffer.
        int padding = (8 - buffer.WrittenCount % 8) % 8;
        buffer.GetSpan(padding)[..padding].Fill((byte)' ');
        buffer.Advance(padding);
        return buffer.WrittenSpan.ToArray();
    }
}
