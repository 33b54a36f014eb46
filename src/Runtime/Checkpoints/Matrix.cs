using System.Runtime.InteropServices;

namespace Horizon;

/// <summary>
/// A row-major weight matrix [Rows, Cols] in its stored element type. The bytes usually live in a memory-mapped
/// checkpoint (no copy); the model that owns the mapping keeps it alive. Hugging Face linear weights are
/// stored [out_features, in_features], so a <c>Linear</c> computes y = x · Wᵀ.
/// </summary>
public sealed class Matrix
{
    public Matrix(string name, int rows, int cols, WeightDType dtype, ReadOnlyMemory<byte> data)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        long expected = (long)rows * cols * dtype.ByteSize();
        if (data.Length != expected)
            throw new ModelLoadException($"tensor '{name}': expected {expected} bytes for [{rows}, {cols}] {dtype}, found {data.Length}");
        Name = name;
        Rows = rows;
        Cols = cols;
        DType = dtype;
        Data = data;
    }

    /// <summary>Builds an F32 matrix from managed values (tests, synthetic weights).</summary>
    public static Matrix FromFloats(string name, int rows, int cols, float[] values) =>
        new(name, rows, cols, WeightDType.F32, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    public string Name { get; }
    public int Rows { get; }
    public int Cols { get; }
    public WeightDType DType { get; }
    public ReadOnlyMemory<byte> Data { get; }

    public long ElementCount => (long)Rows * Cols;

    /// <summary>Widens row <paramref name="row"/> to float32 into <paramref name="destination"/> (length Cols).</summary>
    public void ReadRow(int row, Span<float> destination)
    {
        var bytes = Data.Span.Slice(row * Cols * DType.ByteSize(), Cols * DType.ByteSize());
        WeightConversion.ToSingle(bytes, DType, destination[..Cols]);
    }
}
