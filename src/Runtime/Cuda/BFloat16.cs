using System.Runtime.InteropServices;

namespace Horizon.Cuda;

/// <summary>
/// A bfloat16 value as stored on the device: the upper 16 bits of an IEEE float32 (8 exponent bits, 7 mantissa
/// bits). Only conversions are offered; arithmetic happens in float32. Narrowing rounds to nearest even, as the
/// kernels' <c>cvt.rn.bf16.f32</c> and torch do.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 2)]
public readonly struct BFloat16 : IEquatable<BFloat16>
{
    private readonly ushort _bits;

    public BFloat16(ushort bits) => _bits = bits;

    public ushort Bits => _bits;

    /// <summary>Rounds to the nearest bfloat16, ties to even; NaN stays NaN.</summary>
    public static BFloat16 FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
            return new BFloat16((ushort)((bits >> 16) | 0x0040)); // keep the sign, force a quiet NaN
        uint rounding = 0x7FFFu + ((bits >> 16) & 1u);
        return new BFloat16((ushort)((bits + rounding) >> 16));
    }

    /// <summary>Exact: bfloat16 is the upper half of a float32.</summary>
    public float ToSingle() => BitConverter.UInt32BitsToSingle((uint)_bits << 16);

    public static explicit operator float(BFloat16 value) => value.ToSingle();

    public static explicit operator BFloat16(float value) => FromSingle(value);

    /// <summary>Rounds every element of <paramref name="source"/> into <paramref name="destination"/> (same length).</summary>
    public static void FromSingle(ReadOnlySpan<float> source, Span<BFloat16> destination)
    {
        if (destination.Length != source.Length)
            throw new ArgumentException($"BFloat16.FromSingle: destination has {destination.Length} elements, source {source.Length}", nameof(destination));
        for (int i = 0; i < source.Length; i++)
            destination[i] = FromSingle(source[i]);
    }

    /// <summary>Widens every element of <paramref name="source"/> into <paramref name="destination"/> (same length).</summary>
    public static void ToSingle(ReadOnlySpan<BFloat16> source, Span<float> destination)
    {
        if (destination.Length != source.Length)
            throw new ArgumentException($"BFloat16.ToSingle: destination has {destination.Length} elements, source {source.Length}", nameof(destination));
        WeightConversion.BFloat16ToSingle(MemoryMarshal.Cast<BFloat16, ushort>(source), destination);
    }

    public bool Equals(BFloat16 other) => _bits == other._bits;

    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);

    public override int GetHashCode() => _bits;

    public static bool operator ==(BFloat16 left, BFloat16 right) => left.Equals(right);

    public static bool operator !=(BFloat16 left, BFloat16 right) => !left.Equals(right);

    public override string ToString() => ToSingle().ToString(System.Globalization.CultureInfo.InvariantCulture);
}
