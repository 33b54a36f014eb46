using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Horizon;

/// <summary>Widening of stored weight bits to float32.</summary>
public static class WeightConversion
{
    /// <summary>Converts <paramref name="source"/> (elements of <paramref name="dtype"/>) into float32.</summary>
    public static void ToSingle(ReadOnlySpan<byte> source, WeightDType dtype, Span<float> destination)
    {
        switch (dtype)
        {
            case WeightDType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                break;
            case WeightDType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
                break;
            case WeightDType.BF16:
                BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(source), destination);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null);
        }
    }

    /// <summary>BF16 is the upper 16 bits of an IEEE float32, so widening is a 16-bit shift.</summary>
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        var bits = MemoryMarshal.Cast<float, uint>(destination);
        // Widen ushort -> uint (vectorised by TensorPrimitives), then shift into the high half.
        TensorPrimitives.ConvertChecked<ushort, uint>(source, bits);
        TensorPrimitives.ShiftLeft(bits, 16, bits);
    }

    /// <summary>Reads a whole tensor as a float32 array (norm weights, biases: small vectors kept widened).</summary>
    public static float[] ToSingleArray(ReadOnlySpan<byte> source, WeightDType dtype)
    {
        var result = new float[source.Length / dtype.ByteSize()];
        ToSingle(source, dtype, result);
        return result;
    }
}
