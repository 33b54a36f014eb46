using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Horizon.Cpu;

/// <summary>
/// Register-blocked SIMD inner loops shared by <see cref="CpuKernels.Linear"/> and the attention core: many
/// dot products between two sets of rows (x·Wᵀ, q·kᵀ), and probability-weighted sums of rows (p·v).
/// </summary>
/// <remarks>
/// <para>
/// A single <c>TensorPrimitives.Dot</c> per output loads two vectors per multiply-add and, for the short rows of
/// attention (head_dim 64–128), spends as long in call overhead as in arithmetic. Here one pass computes a tile of
/// 2 × 4 outputs: each step loads 2 + 4 vectors for 8 multiply-adds held in registers.
/// </para>
/// <para>
/// Every output element is computed by the same sequence of operations whichever tile shape (2 × 4, 1 × 4,
/// 1 × 1) it falls in: one SIMD accumulator over the vector-width part, <see cref="Vector.Sum{T}(Vector{T})"/>,
/// then the scalar remainder in order. Results therefore do not depend on how callers cut rows into blocks or
/// threads.
/// </para>
/// <para>
/// The methods skip tiered compilation (<see cref="MethodImplOptions.AggressiveOptimization"/>): the first
/// prefill of a model would otherwise run these loops as unoptimised tier-0 code.
/// </para>
/// </remarks>
internal static class TileKernels
{
    /// <summary>
    /// c[i, j] = Σ_k a[i, k] · b[j, k] for i &lt; aRows, j &lt; bRows, k &lt; length: a (aRows, length) with row stride
    /// aStride, b (bRows, length) with row stride bStride, c (aRows, bRows) with row stride cStride.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(
        ReadOnlySpan<float> a, int aRows, int aStride,
        ReadOnlySpan<float> b, int bRows, int bStride,
        int length, Span<float> c, int cStride)
    {
        if (aRows <= 0 || bRows <= 0)
            return;
        CheckExtent(a.Length, aRows, aStride, length, nameof(a));
        CheckExtent(b.Length, bRows, bStride, length, nameof(b));
        CheckExtent(c.Length, aRows, cStride, bRows, nameof(c));

        ref float aStart = ref MemoryMarshal.GetReference(a);
        ref float bStart = ref MemoryMarshal.GetReference(b);
        ref float cStart = ref MemoryMarshal.GetReference(c);
        int i = 0;
        for (; i + 2 <= aRows; i += 2)
        {
            ref float a0 = ref Unsafe.Add(ref aStart, (nint)i * aStride);
            ref float a1 = ref Unsafe.Add(ref a0, aStride);
            ref float c0 = ref Unsafe.Add(ref cStart, (nint)i * cStride);
            ref float c1 = ref Unsafe.Add(ref c0, cStride);
            int j = 0;
            for (; j + 4 <= bRows; j += 4)
                Dot2x4(ref a0, ref a1, ref Unsafe.Add(ref bStart, (nint)j * bStride), bStride, length, ref Unsafe.Add(ref c0, j), ref Unsafe.Add(ref c1, j));
            for (; j < bRows; j++)
            {
                ref float bj = ref Unsafe.Add(ref bStart, (nint)j * bStride);
                Unsafe.Add(ref c0, j) = Dot1x1(ref a0, ref bj, length);
                Unsafe.Add(ref c1, j) = Dot1x1(ref a1, ref bj, length);
            }
        }
        for (; i < aRows; i++)
        {
            ref float a0 = ref Unsafe.Add(ref aStart, (nint)i * aStride);
            ref float c0 = ref Unsafe.Add(ref cStart, (nint)i * cStride);
            int j = 0;
            for (; j + 4 <= bRows; j += 4)
                Dot1x4(ref a0, ref Unsafe.Add(ref bStart, (nint)j * bStride), bStride, length, ref Unsafe.Add(ref c0, j));
            for (; j < bRows; j++)
                Unsafe.Add(ref c0, j) = Dot1x1(ref a0, ref Unsafe.Add(ref bStart, (nint)j * bStride), length);
        }
    }

    /// <summary>
    /// o[i, e] += Σ_j p[i, j] · v[j, e] for i &lt; rows, j &lt; count, e &lt; width: p (rows, count) with row stride
    /// pStride, v (count, width) with row stride vStride, o (rows, width) with row stride oStride. The sum over j
    /// runs in order, one multiply-add per term, so a zero weight leaves o exactly as it was.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AccumulateWeightedRows(
        ReadOnlySpan<float> p, int rows, int pStride,
        ReadOnlySpan<float> v, int count, int vStride,
        int width, Span<float> o, int oStride)
    {
        if (rows <= 0 || count <= 0)
            return;
        CheckExtent(p.Length, rows, pStride, count, nameof(p));
        CheckExtent(v.Length, count, vStride, width, nameof(v));
        CheckExtent(o.Length, rows, oStride, width, nameof(o));

        ref float pStart = ref MemoryMarshal.GetReference(p);
        ref float vStart = ref MemoryMarshal.GetReference(v);
        ref float oStart = ref MemoryMarshal.GetReference(o);
        int i = 0;
        for (; i + 2 <= rows; i += 2)
        {
            ref float p0 = ref Unsafe.Add(ref pStart, (nint)i * pStride);
            ref float o0 = ref Unsafe.Add(ref oStart, (nint)i * oStride);
            AccumulateTwoRows(ref p0, ref Unsafe.Add(ref p0, pStride), ref vStart, count, vStride, width, ref o0, ref Unsafe.Add(ref o0, oStride));
        }
        if (i < rows)
            AccumulateOneRow(ref Unsafe.Add(ref pStart, (nint)i * pStride), ref vStart, count, vStride, width, ref Unsafe.Add(ref oStart, (nint)i * oStride));
    }

    /// <summary>
    /// c[i, j] = Σ_k a[i, k] · w[j, k] for i &lt; aRows, j &lt; wRows, k &lt; length, with W stored as bf16 (the upper 16
    /// bits of a float32): a (aRows, length) contiguous, w (wRows, length) contiguous, c (aRows, wRows) with row stride
    /// cStride. For decode (a few rows), where every weight is read once per token: widening W to float32 first would
    /// write and re-read it, three times the bytes of reading the bf16 directly; here a bf16 lane becomes a float by a
    /// 16-bit shift in registers. Each output: two SIMD accumulators, their sum, then the scalar tail in order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRowsBf16(ReadOnlySpan<float> a, int aRows, ReadOnlySpan<ushort> w, int wRows, int length, Span<float> c, int cStride)
    {
        if (aRows <= 0 || wRows <= 0)
            return;
        CheckExtent(a.Length, aRows, length, length, nameof(a));
        if ((long)wRows * length > w.Length)
            throw new ArgumentException($"{nameof(w)}: {wRows} rows of {length} do not fit in {w.Length} values", nameof(w));
        CheckExtent(c.Length, aRows, cStride, wRows, nameof(c));
        ref float aStart = ref MemoryMarshal.GetReference(a);
        ref ushort wStart = ref MemoryMarshal.GetReference(w);
        ref float cStart = ref MemoryMarshal.GetReference(c);
        int j = 0;
        // Two W rows at a time: two independent streams from memory per thread (one alone leaves DRAM bandwidth unused:
        // 6.8 against 10.3 GB/s for a 67 MB W on this machine's two cores), the a row loaded once for both.
        for (; j + 2 <= wRows; j += 2)
        {
            ref ushort w0 = ref Unsafe.Add(ref wStart, (nint)j * length);
            for (int i = 0; i < aRows; i++)
            {
                ref float c0 = ref Unsafe.Add(ref cStart, (nint)i * cStride + j);
                DotBf16Pair(ref Unsafe.Add(ref aStart, (nint)i * length), ref w0, ref Unsafe.Add(ref w0, length), length, out c0, out Unsafe.Add(ref c0, 1));
            }
        }
        if (j < wRows)
        {
            // The odd last row goes through the same pair kernel with itself as the partner (one row's extra work).
            ref ushort wRow = ref Unsafe.Add(ref wStart, (nint)j * length);
            for (int i = 0; i < aRows; i++)
                DotBf16Pair(ref Unsafe.Add(ref aStart, (nint)i * length), ref wRow, ref wRow, length, out Unsafe.Add(ref cStart, (nint)i * cStride + j), out _);
        }
    }

    /// <summary>
    /// c0 = a · w0 and c1 = a · w1 over <paramref name="length"/> values, w as bf16 bits: two SIMD accumulators per
    /// output, their sum, then the scalar tail in order; each output by exactly the same operations, whatever its partner.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DotBf16Pair(ref float a, ref ushort w0, ref ushort w1, int length, out float c0, out float c1)
    {
        int k = 0;
        float sum0 = 0, sum1 = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> p0 = Vector256<float>.Zero, p1 = Vector256<float>.Zero, q0 = Vector256<float>.Zero, q1 = Vector256<float>.Zero;
            for (; k + 16 <= length; k += 16)
            {
                var x0 = Vector256.LoadUnsafe(ref a, (nuint)k);
                var x1 = Vector256.LoadUnsafe(ref a, (nuint)(k + 8));
                var (low0, high0) = Vector256.Widen(Vector256.LoadUnsafe(ref w0, (nuint)k));
                var (low1, high1) = Vector256.Widen(Vector256.LoadUnsafe(ref w1, (nuint)k));
                p0 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(low0, 16).AsSingle(), x0, p0);
                p1 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(high0, 16).AsSingle(), x1, p1);
                q0 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(low1, 16).AsSingle(), x0, q0);
                q1 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(high1, 16).AsSingle(), x1, q1);
            }
            sum0 = Vector256.Sum(p0 + p1);
            sum1 = Vector256.Sum(q0 + q1);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            Vector128<float> p0 = Vector128<float>.Zero, p1 = Vector128<float>.Zero, q0 = Vector128<float>.Zero, q1 = Vector128<float>.Zero;
            for (; k + 8 <= length; k += 8)
            {
                var x0 = Vector128.LoadUnsafe(ref a, (nuint)k);
                var x1 = Vector128.LoadUnsafe(ref a, (nuint)(k + 4));
                var (low0, high0) = Vector128.Widen(Vector128.LoadUnsafe(ref w0, (nuint)k));
                var (low1, high1) = Vector128.Widen(Vector128.LoadUnsafe(ref w1, (nuint)k));
                p0 = Vector128.FusedMultiplyAdd(Vector128.ShiftLeft(low0, 16).AsSingle(), x0, p0);
                p1 = Vector128.FusedMultiplyAdd(Vector128.ShiftLeft(high0, 16).AsSingle(), x1, p1);
                q0 = Vector128.FusedMultiplyAdd(Vector128.ShiftLeft(low1, 16).AsSingle(), x0, q0);
                q1 = Vector128.FusedMultiplyAdd(Vector128.ShiftLeft(high1, 16).AsSingle(), x1, q1);
            }
            sum0 = Vector128.Sum(p0 + p1);
            sum1 = Vector128.Sum(q0 + q1);
        }
        for (; k < length; k++)
        {
            float x = Unsafe.Add(ref a, k);
            sum0 += BitConverter.UInt32BitsToSingle((uint)Unsafe.Add(ref w0, k) << 16) * x;
            sum1 += BitConverter.UInt32BitsToSingle((uint)Unsafe.Add(ref w1, k) << 16) * x;
        }
        c0 = sum0;
        c1 = sum1;
    }

    /// <summary>Rows (count, width) at the given stride must lie inside a buffer of <paramref name="bufferLength"/> floats.</summary>
    private static void CheckExtent(int bufferLength, int count, int stride, int width, string name)
    {
        if (width < 0 || stride < width || (long)(count - 1) * stride + width > bufferLength)
            throw new ArgumentException($"{name}: {count} rows of {width} at stride {stride} do not fit in {bufferLength} floats", name);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot2x4(ref float a0, ref float a1, ref float b0, int bStride, int length, ref float c0, ref float c1)
    {
        ref float b1 = ref Unsafe.Add(ref b0, bStride);
        ref float b2 = ref Unsafe.Add(ref b1, bStride);
        ref float b3 = ref Unsafe.Add(ref b2, bStride);
        Vector<float> s00 = default, s01 = default, s02 = default, s03 = default;
        Vector<float> s10 = default, s11 = default, s12 = default, s13 = default;
        int k = 0;
        for (; k <= length - Vector<float>.Count; k += Vector<float>.Count)
        {
            var x0 = Vector.LoadUnsafe(ref a0, (nuint)k);
            var x1 = Vector.LoadUnsafe(ref a1, (nuint)k);
            var y = Vector.LoadUnsafe(ref b0, (nuint)k);
            s00 = Vector.MultiplyAddEstimate(x0, y, s00);
            s10 = Vector.MultiplyAddEstimate(x1, y, s10);
            y = Vector.LoadUnsafe(ref b1, (nuint)k);
            s01 = Vector.MultiplyAddEstimate(x0, y, s01);
            s11 = Vector.MultiplyAddEstimate(x1, y, s11);
            y = Vector.LoadUnsafe(ref b2, (nuint)k);
            s02 = Vector.MultiplyAddEstimate(x0, y, s02);
            s12 = Vector.MultiplyAddEstimate(x1, y, s12);
            y = Vector.LoadUnsafe(ref b3, (nuint)k);
            s03 = Vector.MultiplyAddEstimate(x0, y, s03);
            s13 = Vector.MultiplyAddEstimate(x1, y, s13);
        }
        float r00 = Vector.Sum(s00), r01 = Vector.Sum(s01), r02 = Vector.Sum(s02), r03 = Vector.Sum(s03);
        float r10 = Vector.Sum(s10), r11 = Vector.Sum(s11), r12 = Vector.Sum(s12), r13 = Vector.Sum(s13);
        for (; k < length; k++)
        {
            float x0 = Unsafe.Add(ref a0, k), x1 = Unsafe.Add(ref a1, k);
            float y0 = Unsafe.Add(ref b0, k), y1 = Unsafe.Add(ref b1, k), y2 = Unsafe.Add(ref b2, k), y3 = Unsafe.Add(ref b3, k);
            r00 += x0 * y0; r01 += x0 * y1; r02 += x0 * y2; r03 += x0 * y3;
            r10 += x1 * y0; r11 += x1 * y1; r12 += x1 * y2; r13 += x1 * y3;
        }
        c0 = r00; Unsafe.Add(ref c0, 1) = r01; Unsafe.Add(ref c0, 2) = r02; Unsafe.Add(ref c0, 3) = r03;
        c1 = r10; Unsafe.Add(ref c1, 1) = r11; Unsafe.Add(ref c1, 2) = r12; Unsafe.Add(ref c1, 3) = r13;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot1x4(ref float a0, ref float b0, int bStride, int length, ref float c0)
    {
        ref float b1 = ref Unsafe.Add(ref b0, bStride);
        ref float b2 = ref Unsafe.Add(ref b1, bStride);
        ref float b3 = ref Unsafe.Add(ref b2, bStride);
        Vector<float> s0 = default, s1 = default, s2 = default, s3 = default;
        int k = 0;
        for (; k <= length - Vector<float>.Count; k += Vector<float>.Count)
        {
            var x = Vector.LoadUnsafe(ref a0, (nuint)k);
            s0 = Vector.MultiplyAddEstimate(x, Vector.LoadUnsafe(ref b0, (nuint)k), s0);
            s1 = Vector.MultiplyAddEstimate(x, Vector.LoadUnsafe(ref b1, (nuint)k), s1);
            s2 = Vector.MultiplyAddEstimate(x, Vector.LoadUnsafe(ref b2, (nuint)k), s2);
            s3 = Vector.MultiplyAddEstimate(x, Vector.LoadUnsafe(ref b3, (nuint)k), s3);
        }
        float r0 = Vector.Sum(s0), r1 = Vector.Sum(s1), r2 = Vector.Sum(s2), r3 = Vector.Sum(s3);
        for (; k < length; k++)
        {
            float x = Unsafe.Add(ref a0, k);
            r0 += x * Unsafe.Add(ref b0, k); r1 += x * Unsafe.Add(ref b1, k);
            r2 += x * Unsafe.Add(ref b2, k); r3 += x * Unsafe.Add(ref b3, k);
        }
        c0 = r0; Unsafe.Add(ref c0, 1) = r1; Unsafe.Add(ref c0, 2) = r2; Unsafe.Add(ref c0, 3) = r3;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot1x1(ref float a0, ref float b0, int length)
    {
        Vector<float> s = default;
        int k = 0;
        for (; k <= length - Vector<float>.Count; k += Vector<float>.Count)
            s = Vector.MultiplyAddEstimate(Vector.LoadUnsafe(ref a0, (nuint)k), Vector.LoadUnsafe(ref b0, (nuint)k), s);
        float r = Vector.Sum(s);
        for (; k < length; k++)
            r += Unsafe.Add(ref a0, k) * Unsafe.Add(ref b0, k);
        return r;
    }

    /// <summary>Two output rows; columns in blocks of four SIMD vectors, then single vectors, then scalars.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateTwoRows(ref float p0, ref float p1, ref float v, int count, int vStride, int width, ref float o0, ref float o1)
    {
        int w = Vector<float>.Count;
        int e = 0;
        for (; e + 4 * w <= width; e += 4 * w)
        {
            ref float o0e = ref Unsafe.Add(ref o0, e);
            ref float o1e = ref Unsafe.Add(ref o1, e);
            var a0 = Vector.LoadUnsafe(ref o0e); var a1 = Vector.LoadUnsafe(ref o0e, (nuint)w);
            var a2 = Vector.LoadUnsafe(ref o0e, (nuint)(2 * w)); var a3 = Vector.LoadUnsafe(ref o0e, (nuint)(3 * w));
            var b0 = Vector.LoadUnsafe(ref o1e); var b1 = Vector.LoadUnsafe(ref o1e, (nuint)w);
            var b2 = Vector.LoadUnsafe(ref o1e, (nuint)(2 * w)); var b3 = Vector.LoadUnsafe(ref o1e, (nuint)(3 * w));
            for (int j = 0; j < count; j++)
            {
                // Indexed rather than stepped, so no reference is ever formed past the last row.
                ref float vj = ref Unsafe.Add(ref v, (nint)j * vStride + e);
                var weight0 = new Vector<float>(Unsafe.Add(ref p0, j));
                var weight1 = new Vector<float>(Unsafe.Add(ref p1, j));
                var y0 = Vector.LoadUnsafe(ref vj); var y1 = Vector.LoadUnsafe(ref vj, (nuint)w);
                var y2 = Vector.LoadUnsafe(ref vj, (nuint)(2 * w)); var y3 = Vector.LoadUnsafe(ref vj, (nuint)(3 * w));
                a0 = Vector.MultiplyAddEstimate(y0, weight0, a0); a1 = Vector.MultiplyAddEstimate(y1, weight0, a1);
                a2 = Vector.MultiplyAddEstimate(y2, weight0, a2); a3 = Vector.MultiplyAddEstimate(y3, weight0, a3);
                b0 = Vector.MultiplyAddEstimate(y0, weight1, b0); b1 = Vector.MultiplyAddEstimate(y1, weight1, b1);
                b2 = Vector.MultiplyAddEstimate(y2, weight1, b2); b3 = Vector.MultiplyAddEstimate(y3, weight1, b3);
            }
            a0.StoreUnsafe(ref o0e); a1.StoreUnsafe(ref o0e, (nuint)w); a2.StoreUnsafe(ref o0e, (nuint)(2 * w)); a3.StoreUnsafe(ref o0e, (nuint)(3 * w));
            b0.StoreUnsafe(ref o1e); b1.StoreUnsafe(ref o1e, (nuint)w); b2.StoreUnsafe(ref o1e, (nuint)(2 * w)); b3.StoreUnsafe(ref o1e, (nuint)(3 * w));
        }
        for (; e + w <= width; e += w)
        {
            ref float o0e = ref Unsafe.Add(ref o0, e);
            ref float o1e = ref Unsafe.Add(ref o1, e);
            var a = Vector.LoadUnsafe(ref o0e);
            var b = Vector.LoadUnsafe(ref o1e);
            for (int j = 0; j < count; j++)
            {
                ref float vj = ref Unsafe.Add(ref v, (nint)j * vStride + e);
                var y = Vector.LoadUnsafe(ref vj);
                a = Vector.MultiplyAddEstimate(y, new Vector<float>(Unsafe.Add(ref p0, j)), a);
                b = Vector.MultiplyAddEstimate(y, new Vector<float>(Unsafe.Add(ref p1, j)), b);
            }
            a.StoreUnsafe(ref o0e);
            b.StoreUnsafe(ref o1e);
        }
        for (; e < width; e++)
        {
            float a = Unsafe.Add(ref o0, e), b = Unsafe.Add(ref o1, e);
            for (int j = 0; j < count; j++)
            {
                float y = Unsafe.Add(ref v, (nint)j * vStride + e);
                a += Unsafe.Add(ref p0, j) * y;
                b += Unsafe.Add(ref p1, j) * y;
            }
            Unsafe.Add(ref o0, e) = a;
            Unsafe.Add(ref o1, e) = b;
        }
    }

    /// <summary>One output row, with the same per-element arithmetic as <see cref="AccumulateTwoRows"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateOneRow(ref float p0, ref float v, int count, int vStride, int width, ref float o0)
    {
        int w = Vector<float>.Count;
        int e = 0;
        for (; e + 4 * w <= width; e += 4 * w)
        {
            ref float o0e = ref Unsafe.Add(ref o0, e);
            var a0 = Vector.LoadUnsafe(ref o0e); var a1 = Vector.LoadUnsafe(ref o0e, (nuint)w);
            var a2 = Vector.LoadUnsafe(ref o0e, (nuint)(2 * w)); var a3 = Vector.LoadUnsafe(ref o0e, (nuint)(3 * w));
            for (int j = 0; j < count; j++)
            {
                ref float vj = ref Unsafe.Add(ref v, (nint)j * vStride + e);
                var weight0 = new Vector<float>(Unsafe.Add(ref p0, j));
                a0 = Vector.MultiplyAddEstimate(Vector.LoadUnsafe(ref vj), weight0, a0);
                a1 = Vector.MultiplyAddEstimate(Vector.LoadUnsafe(ref vj, (nuint)w), weight0, a1);
                a2 = Vector.MultiplyAddEstimate(Vector.LoadUnsafe(ref vj, (nuint)(2 * w)), weight0, a2);
                a3 = Vector.MultiplyAddEstimate(Vector.LoadUnsafe(ref vj, (nuint)(3 * w)), weight0, a3);
            }
            a0.StoreUnsafe(ref o0e); a1.StoreUnsafe(ref o0e, (nuint)w); a2.StoreUnsafe(ref o0e, (nuint)(2 * w)); a3.StoreUnsafe(ref o0e, (nuint)(3 * w));
        }
        for (; e + w <= width; e += w)
        {
            ref float o0e = ref Unsafe.Add(ref o0, e);
            var a = Vector.LoadUnsafe(ref o0e);
            for (int j = 0; j < count; j++)
                a = Vector.MultiplyAddEstimate(Vector.LoadUnsafe(ref v, (nuint)((nint)j * vStride + e)), new Vector<float>(Unsafe.Add(ref p0, j)), a);
            a.StoreUnsafe(ref o0e);
        }
        for (; e < width; e++)
        {
            float a = Unsafe.Add(ref o0, e);
            for (int j = 0; j < count; j++)
                a += Unsafe.Add(ref p0, j) * Unsafe.Add(ref v, (nint)j * vStride + e);
            Unsafe.Add(ref o0, e) = a;
        }
    }
}
